"""The registry's GraphQL surface: institutions, their roll-ups and every registry mutation.

It reads through ``services.registry.views`` and sends commands through the backend; it
adds ``RegionStats.institutions``, the registry's ``MonthlyStats`` figures and
``Region.institutions`` to the kit's types.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

import strawberry
from strawberry.types import Info

from services.common.application import Outcome
from services.common.errors import NotFound, Unavailable
from services.finance import views as finance_views
from services.finance.module import RiskLevel as RiskLevelEnum
from services.gateway.context import GatewayContext
from services.gateway.errors import input_fields
from services.gateway.kit import (
    Connection,
    EventConnection,
    Extensions,
    MonthEndStats,
    MonthlyStats,
    Region,
    RegionStats,
    Slice,
    audit_trail,
    ctx,
    cursors,
    page_size,
)
from services.gateway.scalars import DateTime
from services.registry import views
from services.registry.module import (
    MODULE,
    ApproveInstitution,
    Category,
    ConvertToNonProfit,
    ExitInstitution,
    IssueWarningCard,
    ReclassifyInstitution,
    RegisterInstitution,
    RegistryCommand,
    ResumeInstitution,
    RevokeInstitution,
    SetListMark,
    Status,
    SuspendInstitution,
    TeachingMode,
)
from services.registry.module import ListMark as ListMarkEnum
from services.registry.module import NonSubjectKind as NonSubjectKindEnum
from services.registry.module import WarningColor as WarningColorEnum

# The domain's enums are the GraphQL enums, under the contract's names.
strawberry.enum(Category, name="InstitutionCategory")
strawberry.enum(NonSubjectKindEnum, name="NonSubjectKind")
strawberry.enum(TeachingMode, name="TeachingMode")
strawberry.enum(Status, name="InstitutionStatus")
strawberry.enum(ListMarkEnum, name="ListMark")
strawberry.enum(WarningColorEnum, name="WarningColor")
# The finance service's risk levels, filtered on here and shown by its slice.
strawberry.enum(RiskLevelEnum, name="RiskLevel")
RiskLevel: TypeAlias = RiskLevelEnum
InstitutionCategory: TypeAlias = Category
NonSubjectKind: TypeAlias = NonSubjectKindEnum
InstitutionStatus: TypeAlias = Status
ListMark: TypeAlias = ListMarkEnum
WarningColor: TypeAlias = WarningColorEnum

extensions = Extensions()


# --- roll-ups -------------------------------------------------------------------------


@strawberry.type(description="Roll-up of the register over a region's subtree.")
class InstitutionStats:
    active: int = strawberry.field(description="Institutions not REVOKED or EXITED.")
    subject: int = strawberry.field(description="Active with category SUBJECT.")
    non_subject: int = strawberry.field(description="Active with category NON_SUBJECT.")
    online: int
    offline: int
    approved: int
    pending: int
    suspended: int
    revoked: int
    exited: int
    converted_to_non_profit: int
    blacklisted: int
    whitelisted: int
    subject_baseline: int = strawberry.field(
        description="SUBJECT institutions that were active on the baseline date "
        "(default 2021-07-24, judged by occurredAt business time)."
    )

    @strawberry.field(
        description="(subjectBaseline - subject) / subjectBaseline, null when the baseline "
        "is 0. 压减率."
    )
    def subject_compression_rate(self) -> float | None:
        return views.compression_rate(self.subject_baseline, self.subject)

    @classmethod
    def from_counters(cls, counters: dict[str, int]) -> InstitutionStats:
        names = [f for f in cls.__annotations__ if f != "subject_compression_rate"]
        return cls(**{name: counters.get(name, 0) for name in names})


@extensions.field(RegionStats)
async def institutions(root: RegionStats, info: Info[GatewayContext, None]) -> InstitutionStats:
    counters = views.institution_counts(await root.counters(info))
    return InstitutionStats.from_counters(counters)


@extensions.field(MonthlyStats)
def institutions_registered(root: MonthlyStats) -> int:
    return views.month_counts(root.counters)["institutions_registered"]


@extensions.field(MonthlyStats)
def institutions_closed(root: MonthlyStats) -> int:
    return views.month_counts(root.counters)["institutions_closed"]


async def _register_at(root: MonthEndStats, info: Info[GatewayContext, None]) -> dict[str, int]:
    today = views.institution_counts(await root.stats(info))
    if root.now(info):
        return today
    # The baseline is a fixed day's count: the same at every month's end.
    return {
        **views.month_end_counts(await root.totals(info)),
        "subject_baseline": today.get("subject_baseline", 0),
    }


@extensions.field(MonthEndStats, description="Institutions not REVOKED or EXITED.")
async def institutions_active(root: MonthEndStats, info: Info[GatewayContext, None]) -> int:
    return (await _register_at(root, info)).get("active", 0)


@extensions.field(MonthEndStats, description="Active with category SUBJECT.")
async def subject(root: MonthEndStats, info: Info[GatewayContext, None]) -> int:
    return (await _register_at(root, info)).get("subject", 0)


@extensions.field(MonthEndStats, description="As RegionStats.institutions.subjectBaseline.")
async def subject_baseline(root: MonthEndStats, info: Info[GatewayContext, None]) -> int:
    return (await _register_at(root, info)).get("subject_baseline", 0)


@extensions.field(
    MonthEndStats,
    description="(subjectBaseline - subject) / subjectBaseline at the month's end. 压减率.",
)
async def subject_compression_rate(
    root: MonthEndStats, info: Info[GatewayContext, None]
) -> float | None:
    counts = await _register_at(root, info)
    return views.compression_rate(counts.get("subject_baseline", 0), counts.get("subject", 0))


# --- institutions ---------------------------------------------------------------------


@strawberry.type
class WarningCard:
    color: WarningColor
    reason: str
    issued_at: DateTime


@strawberry.type
class Institution:
    id: strawberry.ID
    name: str
    credit_code: str = strawberry.field(
        description="统一社会信用代码, 18 characters, checksum validated (GB 32100)."
    )
    address: str | None
    category: InstitutionCategory
    non_subject_kind: NonSubjectKind | None
    mode: TeachingMode
    status: InstitutionStatus
    non_profit: bool
    authority: str = strawberry.field(
        description="主管单位, e.g. EDUCATION, SPORTS, CULTURE_TOURISM, SCIENCE_TECH; "
        "configurable per jurisdiction."
    )
    license_no: str | None
    list_mark: ListMark
    warnings: list[WarningCard]
    registered_at: DateTime
    closed_at: DateTime | None
    status_reason: str | None = strawberry.field(
        description="Why it was suspended, revoked or exited."
    )
    suspension_recommended: str | None = strawberry.field(
        description="Why the warning rules recommend 停业整顿, if they do (an officer decides)."
    )
    region_code: strawberry.Private[str]

    @strawberry.field
    def region(self, info: Info[GatewayContext, None]) -> Region:
        return Region.of(ctx(info).backend.regions.require(self.region_code))

    @strawberry.field(
        description="Compliance flags as of today, e.g. FOR_PROFIT_SUBJECT: an active "
        "for-profit SUBJECT institution after the 营转非 deadline."
    )
    def compliance_flags(self, info: Info[GatewayContext, None]) -> list[str]:
        policy = MODULE.settings_in(ctx(info).backend.config).policy()
        return policy.compliance_flags(
            self.category, self.non_profit, self.status, ctx(info).today()
        )

    @strawberry.field(
        description="Audit trail: every event of this institution across services, oldest first."
    )
    async def events(
        self, info: Info[GatewayContext, None], first: int | None = 50, after: str | None = None
    ) -> EventConnection:
        return await audit_trail(info, str(self.id), first, after)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Institution:
        return cls(
            id=strawberry.ID(doc["id"]),
            name=doc["name"],
            credit_code=doc["credit_code"],
            address=doc["address"],
            category=Category(doc["category"]),
            non_subject_kind=NonSubjectKind(k) if (k := doc["non_subject_kind"]) else None,
            mode=TeachingMode(doc["mode"]),
            status=Status(doc["status"]),
            non_profit=doc["non_profit"] or doc["converted_to_non_profit"],
            authority=doc["authority"],
            license_no=doc["license_no"],
            list_mark=ListMark(doc["list_mark"]),
            warnings=[
                WarningCard(
                    color=WarningColor(w["color"]),
                    reason=w["reason"],
                    issued_at=DateTime(datetime.fromisoformat(w["issued_at"])),
                )
                for w in doc["warnings"]
            ],
            registered_at=DateTime(datetime.fromisoformat(doc["registered_at"])),
            closed_at=DateTime(datetime.fromisoformat(c)) if (c := doc["closed_at"]) else None,
            status_reason=doc["status_reason"],
            suspension_recommended=(doc["suspension_recommended"] or {}).get("reason"),
            region_code=doc["region"],
        )


InstitutionConnection: TypeAlias = Connection[Institution]


@strawberry.input(description="Every filter's region means the whole subtree under that code.")
class InstitutionFilter:
    region: str | None = None
    category: InstitutionCategory | None = None
    status: InstitutionStatus | None = None
    mode: TeachingMode | None = None
    list_mark: ListMark | None = None
    risk_level: RiskLevel | None = None
    search: str | None = strawberry.field(
        default=None, description="Substring of name or exact credit code."
    )


async def list_institutions(
    info: Info[GatewayContext, None],
    flt: InstitutionFilter | None,
    first: int | None,
    after: str | None,
    region: str | None = None,
) -> InstitutionConnection:
    # Only what the caller's region scope covers: its whole subtree, or a part of it.
    scope = ctx(info).principal.scope
    prefixes = [scope] if scope else []
    flt = flt or InstitutionFilter()
    chosen = region if region is not None else flt.region
    if chosen is not None:
        prefixes.append(ctx(info).readable(chosen, "filter.region"))
    ids = None
    if flt.risk_level is not None:
        store = ctx(info).backend.read_store
        flagged = [
            *await finance_views.ids_at_risk(store, "YELLOW", prefixes),
            *await finance_views.ids_at_risk(store, "RED", prefixes),
        ]
        at_level = (
            []
            if flt.risk_level is RiskLevel.GREEN
            else (await finance_views.ids_at_risk(store, flt.risk_level.value, prefixes))
        )
        ids = finance_views.risk_filter(flt.risk_level.value, flagged, at_level)
    where = views.InstitutionFilter(
        ids=ids,
        region_prefixes=prefixes,
        category=flt.category.value if flt.category else None,
        status=flt.status.value if flt.status else None,
        mode=flt.mode.value if flt.mode else None,
        list_mark=flt.list_mark.value if flt.list_mark else None,
        search=flt.search,
    )
    page = await views.institutions(ctx(info).backend.read_store, where, page_size(first), after)
    # Listing is ordered by id, so an edge's cursor is its id: resume from any edge.
    nodes = [Institution.from_doc(doc) for doc in page.items]
    return Connection.of(page, nodes, cursors(page, "id"))


@extensions.field(Region, name="institutions")
async def institutions_in(
    root: Region,
    info: Info[GatewayContext, None],
    filter: InstitutionFilter | None = None,
    first: int | None = 20,
    after: str | None = None,
) -> InstitutionConnection:
    return await list_institutions(info, filter, first, after, region=root.code)


@strawberry.type
class Query:
    @strawberry.field
    async def institution(
        self, info: Info[GatewayContext, None], id: strawberry.ID
    ) -> Institution | None:
        doc = await ctx(info).loader(views.INSTITUTIONS.name).load(id)
        if doc is None or not ctx(info).principal.covers(doc["region"]):
            return None  # outside the caller's scope is as good as absent: nothing leaks
        return Institution.from_doc(doc)

    @strawberry.field
    async def institutions(
        self,
        info: Info[GatewayContext, None],
        filter: InstitutionFilter | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> InstitutionConnection:
        return await list_institutions(info, filter, first, after)


# --- mutations ------------------------------------------------------------------------


@strawberry.input
class RegisterInstitutionInput:
    id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Optional client-chosen id; re-sending the same input with the same id "
        "is a no-op.",
    )
    name: str
    credit_code: str
    region: str = strawberry.field(description="6-digit district code.")
    address: str | None = None
    category: InstitutionCategory
    non_subject_kind: NonSubjectKind | None = None
    mode: TeachingMode
    non_profit: bool | None = False
    occurred_at: DateTime | None = None


async def institution_after(info: Info[GatewayContext, None], outcome: Outcome[Any]) -> Institution:
    """Read-your-writes: answer from the read model once it reflects the command."""
    context = ctx(info)
    if not await context.backend.reflects(outcome):
        raise Unavailable(
            "the command was accepted, but the read model has not caught up yet; "
            "query the institution again shortly"
        )
    doc = await views.institution(context.backend.read_store, outcome.aggregate.id)
    if doc is None:
        raise NotFound(f"no institution with id {outcome.aggregate.id}", field="id")
    return Institution.from_doc(doc)


async def registry_command(
    info: Info[GatewayContext, None], cmd: RegistryCommand, input_name: str | None = None
) -> Institution:
    """Send a command to the registry and answer with the institution as queries see it."""
    caller = ctx(info).command()  # its errors name headers, not the mutation's input
    with input_fields(input_name):
        outcome = await ctx(info).backend.execute(cmd, caller)
    return await institution_after(info, outcome)


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def register_institution(
        self, info: Info[GatewayContext, None], input: RegisterInstitutionInput
    ) -> Institution:
        cmd = RegisterInstitution(
            id=input.id,
            name=input.name,
            credit_code=input.credit_code,
            region=input.region,
            address=input.address,
            category=input.category.value,
            non_subject_kind=input.non_subject_kind.value if input.non_subject_kind else None,
            mode=input.mode.value,
            non_profit=bool(input.non_profit),
            occurred_at=input.occurred_at,
        )
        return await registry_command(info, cmd, "input")

    @strawberry.mutation
    async def approve_institution(
        self,
        info: Info[GatewayContext, None],
        id: strawberry.ID,
        license_no: str,
        occurred_at: DateTime | None = None,
    ) -> Institution:
        return await registry_command(
            info, ApproveInstitution(id=id, license_no=license_no, occurred_at=occurred_at)
        )

    @strawberry.mutation(description="营转非: the institution becomes non-profit.")
    async def convert_to_non_profit(
        self,
        info: Info[GatewayContext, None],
        id: strawberry.ID,
        occurred_at: DateTime | None = None,
    ) -> Institution:
        return await registry_command(info, ConvertToNonProfit(id=id, occurred_at=occurred_at))

    @strawberry.mutation(
        description="转型: change category, e.g. a subject institution becoming a sports one."
    )
    async def reclassify_institution(
        self,
        info: Info[GatewayContext, None],
        id: strawberry.ID,
        category: InstitutionCategory,
        non_subject_kind: NonSubjectKind | None = None,
        occurred_at: DateTime | None = None,
    ) -> Institution:
        cmd = ReclassifyInstitution(
            id=id,
            category=category.value,
            non_subject_kind=non_subject_kind.value if non_subject_kind else None,
            occurred_at=occurred_at,
        )
        return await registry_command(info, cmd)

    @strawberry.mutation(description="停业整顿")
    async def suspend_institution(
        self,
        info: Info[GatewayContext, None],
        id: strawberry.ID,
        reason: str,
        occurred_at: DateTime | None = None,
    ) -> Institution:
        cmd = SuspendInstitution(id=id, reason=reason, occurred_at=occurred_at)
        return await registry_command(info, cmd)

    @strawberry.mutation
    async def resume_institution(
        self,
        info: Info[GatewayContext, None],
        id: strawberry.ID,
        occurred_at: DateTime | None = None,
    ) -> Institution:
        return await registry_command(info, ResumeInstitution(id=id, occurred_at=occurred_at))

    @strawberry.mutation(description="取缔 — terminal.")
    async def revoke_institution(
        self,
        info: Info[GatewayContext, None],
        id: strawberry.ID,
        reason: str,
        occurred_at: DateTime | None = None,
    ) -> Institution:
        cmd = RevokeInstitution(id=id, reason=reason, occurred_at=occurred_at)
        return await registry_command(info, cmd)

    @strawberry.mutation(description="有序退出 / 注销 — terminal.")
    async def exit_institution(
        self,
        info: Info[GatewayContext, None],
        id: strawberry.ID,
        reason: str,
        occurred_at: DateTime | None = None,
    ) -> Institution:
        cmd = ExitInstitution(id=id, reason=reason, occurred_at=occurred_at)
        return await registry_command(info, cmd)

    @strawberry.mutation
    async def set_list_mark(
        self,
        info: Info[GatewayContext, None],
        id: strawberry.ID,
        mark: ListMark,
        reason: str,
        occurred_at: DateTime | None = None,
    ) -> Institution:
        cmd = SetListMark(id=id, mark=mark.value, reason=reason, occurred_at=occurred_at)
        return await registry_command(info, cmd)

    @strawberry.mutation
    async def issue_warning_card(
        self,
        info: Info[GatewayContext, None],
        id: strawberry.ID,
        color: WarningColor,
        reason: str,
        occurred_at: DateTime | None = None,
    ) -> Institution:
        cmd = IssueWarningCard(id=id, color=color.value, reason=reason, occurred_at=occurred_at)
        return await registry_command(info, cmd)


SLICE = Slice(
    MODULE.name,
    query=Query,
    mutation=Mutation,
    types=(Institution, InstitutionStats),
    extensions=extensions,
)
