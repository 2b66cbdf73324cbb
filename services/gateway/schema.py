"""The strawberry schema: contract types, queries from read models, mutations via services."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Sequence
from datetime import date, datetime
from typing import Annotated, Any, TypeAlias

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from services.common.application import CommandContext, Outcome
from services.common.errors import BadInput, NotFound, Unavailable
from services.common.ports import AnyOf, Contains, Eq, Filter, Prefix, encode_cursor
from services.common.ports import Query as ReadQuery
from services.common.regions import Region as RegionRecord
from services.common.regions import RegionLevel as RegionLevelEnum
from services.gateway.context import GatewayContext
from services.gateway.errors import ErrorCodes, input_fields
from services.gateway.scalars import SCALARS, Date, DateTime
from services.registry.domain.commands import (
    ApproveInstitution,
    ConvertToNonProfit,
    ExitInstitution,
    IssueWarningCard,
    ReclassifyInstitution,
    RegisterInstitution,
    RegistryCommand,
    ResumeInstitution,
    RevokeInstitution,
    SetListMark,
    SuspendInstitution,
)
from services.registry.domain.rules import Category, NonSubjectKind, Status, TeachingMode
from services.registry.domain.rules import ListMark as ListMarkEnum
from services.registry.domain.rules import WarningColor as WarningColorEnum
from services.registry.projections import (
    INSTITUTION_EVENTS,
    INSTITUTIONS,
    REGION_MONTHS,
    stats_fields,
)

# The domain's enums are the GraphQL enums, under the contract's names.
strawberry.enum(RegionLevelEnum, name="RegionLevel")
strawberry.enum(Category, name="InstitutionCategory")
strawberry.enum(NonSubjectKind, name="NonSubjectKind")
strawberry.enum(TeachingMode, name="TeachingMode")
strawberry.enum(Status, name="InstitutionStatus")
RegionLevel: TypeAlias = RegionLevelEnum
InstitutionCategory: TypeAlias = Category
NonSubjectKindType: TypeAlias = NonSubjectKind
TeachingModeType: TypeAlias = TeachingMode
InstitutionStatus: TypeAlias = Status


strawberry.enum(ListMarkEnum, name="ListMark")
strawberry.enum(WarningColorEnum, name="WarningColor")
ListMark: TypeAlias = ListMarkEnum
WarningColor: TypeAlias = WarningColorEnum


MAX_PAGE = 100
MAX_DEPTH = 10
MAX_TOKENS = 2_000
MAX_ALIASES = 20
_REGION_CODE = re.compile(r"^\d{2}(\d{2}(\d{2})?)?$")


def ctx(info: Info[GatewayContext, None]) -> GatewayContext:
    return info.context


def page_size(first: int | None, field: str = "first") -> int:
    """The contract's ``first: Int = 20``: an explicit null means the default."""
    if first is None:
        return 20
    if not 0 <= first <= MAX_PAGE:
        raise BadInput(f"first must be between 0 and {MAX_PAGE}", field=field)
    return first


# --- regions and roll-ups -------------------------------------------------------------


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
        if not self.subject_baseline:
            return None
        return (self.subject_baseline - self.subject) / self.subject_baseline

    @classmethod
    def from_counters(cls, counters: dict[str, int]) -> InstitutionStats:
        names = [f for f in cls.__annotations__ if f != "subject_compression_rate"]
        return cls(**{name: counters.get(name, 0) for name in names})


MAX_MONTHS = 240


def month_range(start: date, end: date) -> list[date]:
    """First days of the months from ``start``'s to ``end``'s, inclusive."""
    if end < start:
        raise BadInput("to is before from", field="to")
    first, last = start.replace(day=1), end.replace(day=1)
    count = (last.year - first.year) * 12 + last.month - first.month + 1
    if count > MAX_MONTHS:
        raise BadInput(f"at most {MAX_MONTHS} months at a time", field="to")
    return [
        date(first.year + (first.month - 1 + n) // 12, (first.month - 1 + n) % 12 + 1, 1)
        for n in range(count)
    ]


@strawberry.type(description="One month of a region's subtree, by business time.")
class MonthlyStats:
    month: Date
    institutions_registered: int
    institutions_closed: int

    @classmethod
    def of(cls, month: date, doc: dict[str, Any]) -> MonthlyStats:
        return cls(
            month=Date(month),
            institutions_registered=doc.get("institutions_registered", 0),
            institutions_closed=doc.get("institutions_closed", 0),
        )


@strawberry.type
class RegionStats:
    code: strawberry.Private[str]

    @strawberry.field
    async def institutions(self, info: Info[GatewayContext, None]) -> InstitutionStats:
        ctx(info).principal.require_read(self.code)
        doc = await ctx(info).region_stats.load(self.code)
        return InstitutionStats.from_counters(stats_fields(doc, "institutions_"))


@strawberry.type
class Region:
    code: str
    name: str
    level: RegionLevel

    @classmethod
    def of(cls, region: RegionRecord) -> Region:
        return cls(code=region.code, name=region.name, level=region.level)

    @strawberry.field
    def full_name(self, info: Info[GatewayContext, None]) -> str:
        return ctx(info).backend.regions.require(self.code).full_name

    @strawberry.field
    def parent(self, info: Info[GatewayContext, None]) -> Region | None:
        parent = ctx(info).backend.regions.parent(self.code)
        return Region.of(parent) if parent else None

    @strawberry.field
    def children(self, info: Info[GatewayContext, None]) -> list[Region]:
        return [Region.of(r) for r in ctx(info).backend.regions.children(self.code)]

    @strawberry.field(description="Roll-up over the whole subtree, as of now.")
    def stats(self) -> RegionStats:
        return RegionStats(code=self.code)

    @strawberry.field(
        description="Month buckets (first day of each month) from..to inclusive, for trends "
        "and monthly reports."
    )
    async def history(
        self,
        info: Info[GatewayContext, None],
        from_: Annotated[Date, strawberry.argument(name="from")],
        to: Date,
    ) -> list[MonthlyStats]:
        ctx(info).principal.require_read(self.code)
        months = month_range(from_, to)
        keys = [f"{self.code}:{month.isoformat()[:7]}" for month in months]
        found = await ctx(info).backend.read_store.get_many(REGION_MONTHS.name, keys)
        return [
            MonthlyStats.of(month, found.get(key) or {})
            for month, key in zip(months, keys, strict=True)
        ]

    @strawberry.field
    async def institutions(
        self,
        info: Info[GatewayContext, None],
        filter: InstitutionFilter | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> InstitutionConnection:
        scoped = InstitutionFilter(**{**vars(filter or InstitutionFilter()), "region": self.code})
        return await list_institutions(info, scoped, first, after)


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
    non_subject_kind: NonSubjectKindType | None
    mode: TeachingModeType
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
        policy = ctx(info).backend.policy
        return policy.compliance_flags(
            self.category, self.non_profit, self.status, ctx(info).today()
        )

    @strawberry.field(
        description="Audit trail: every event of this institution across services, oldest first."
    )
    async def events(
        self, info: Info[GatewayContext, None], first: int | None = 50, after: str | None = None
    ) -> EventConnection:
        page = await ctx(info).backend.read_store.find(
            ReadQuery(
                INSTITUTION_EVENTS.name,
                (Eq("institution", str(self.id)),),
                order_by="order",
                first=page_size(50 if first is None else first),
                after=after,
            )
        )
        edges = [
            EventEdge(
                node=DomainEvent.from_body(doc["event"]),
                cursor=encode_cursor(doc["order"], doc["id"]),
            )
            for doc in page.items
        ]
        return EventConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=page.has_next, end_cursor=page.end_cursor),
            total_count=page.total,
        )

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


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class DomainEvent:
    id: strawberry.ID
    type: str
    stream: strawberry.ID
    version: int
    region: str
    occurred_at: DateTime
    recorded_at: DateTime
    actor: str | None
    data: str = strawberry.field(description="The event's data as a JSON string.")

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> DomainEvent:
        return cls(
            id=strawberry.ID(body["id"]),
            type=body["type"],
            stream=strawberry.ID(body["stream"]),
            version=body["version"],
            region=body["region"],
            occurred_at=DateTime(datetime.fromisoformat(body["occurred_at"])),
            recorded_at=DateTime(datetime.fromisoformat(body["recorded_at"])),
            actor=body.get("actor"),
            data=json.dumps(body["data"], ensure_ascii=False),
        )


@strawberry.type
class EventEdge:
    node: DomainEvent
    cursor: str


@strawberry.type
class EventConnection:
    edges: list[EventEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type
class InstitutionEdge:
    node: Institution
    cursor: str


@strawberry.type
class InstitutionConnection:
    edges: list[InstitutionEdge]
    page_info: PageInfo
    total_count: int


@strawberry.input(description="Every filter's region means the whole subtree under that code.")
class InstitutionFilter:
    region: str | None = None
    category: InstitutionCategory | None = None
    status: InstitutionStatus | None = None
    mode: TeachingModeType | None = None
    list_mark: ListMark | None = None
    search: str | None = strawberry.field(
        default=None, description="Substring of name or exact credit code."
    )


async def list_institutions(
    info: Info[GatewayContext, None],
    flt: InstitutionFilter | None,
    first: int | None,
    after: str | None,
) -> InstitutionConnection:
    # Only what the caller's region scope covers: its whole subtree, or a part of it.
    scope = ctx(info).principal.scope
    filters: list[Filter | AnyOf] = [Prefix("region", scope)] if scope else []
    if flt is not None:
        if flt.region is not None:
            filters.append(Prefix("region", ctx(info).readable(flt.region, "filter.region")))
        for name in ("category", "status", "mode", "list_mark"):
            if (value := getattr(flt, name)) is not None:
                filters.append(Eq(name, value.value))
        if flt.search:
            text = flt.search.strip()
            if len(text) > 100:
                raise BadInput("search is at most 100 characters", field="filter.search")
            filters.append(AnyOf((Contains("name", text), Eq("credit_code", text.upper()))))
    page = await ctx(info).backend.read_store.find(
        ReadQuery(INSTITUTIONS.name, tuple(filters), first=page_size(first), after=after)
    )
    # Listing is ordered by id, so an edge's cursor is its id: resume from any edge.
    edges = [
        InstitutionEdge(node=Institution.from_doc(doc), cursor=encode_cursor(doc["id"], doc["id"]))
        for doc in page.items
    ]
    return InstitutionConnection(
        edges=edges,
        page_info=PageInfo(has_next_page=page.has_next, end_cursor=page.end_cursor),
        total_count=page.total,
    )


async def institution_by_id(info: Info[GatewayContext, None], id: str) -> Institution | None:
    doc = await ctx(info).institutions.load(id)
    if doc is None or not ctx(info).principal.covers(doc["region"]):
        return None  # outside the caller's scope is as good as absent: nothing leaks
    return Institution.from_doc(doc)


# --- queries --------------------------------------------------------------------------


@strawberry.type
class Query:
    @strawberry.field(
        description="Region by GB/T 2260 code. Canonical codes are 6 digits (340000 province, "
        "340100 city, 340103 district); 2- and 4-digit prefixes are accepted."
    )
    def region(self, info: Info[GatewayContext, None], code: str) -> Region | None:
        if not _REGION_CODE.match(code):
            raise BadInput("a region code is 2, 4 or 6 digits", field="code")
        found = ctx(info).backend.regions.get(code)
        return Region.of(found) if found else None

    @strawberry.field
    def regions(
        self,
        info: Info[GatewayContext, None],
        level: RegionLevel,
        parent: str | None = None,
    ) -> list[Region]:
        regions = ctx(info).backend.regions
        if parent is not None:
            regions.canonical(parent, "parent")
        principal = ctx(info).principal
        return [
            Region.of(r)
            for r in regions.by_level(level, parent)
            if principal.sees_into(regions.subtree_prefix(r.code))
        ]

    @strawberry.field
    async def institution(
        self, info: Info[GatewayContext, None], id: strawberry.ID
    ) -> Institution | None:
        return await institution_by_id(info, id)

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
    non_subject_kind: NonSubjectKindType | None = None
    mode: TeachingModeType
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
    doc = await context.backend.read_store.get(INSTITUTIONS.name, outcome.aggregate.id)
    if doc is None:
        raise NotFound(f"no institution with id {outcome.aggregate.id}", field="id")
    return Institution.from_doc(doc)


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
        non_subject_kind: NonSubjectKindType | None = None,
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


async def registry_command(
    info: Info[GatewayContext, None], cmd: RegistryCommand, input_name: str | None = None
) -> Institution:
    """Send a command to the registry and answer with the institution as queries see it."""
    with input_fields(input_name):
        outcome = await ctx(info).backend.registry.handle(cmd, ctx(info).command())
    return await institution_after(info, outcome)


# Built once: the validation cache is keyed by the rule classes, and strawberry's limiters
# make new classes per instance, which would make every request miss the cache.
_LIMIT_RULES = [
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
]


class QueryLimits(AddValidationRules):
    def __init__(self) -> None:
        super().__init__(_LIMIT_RULES)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Live domain events in the subtree of a region, optionally filtered by type."
    )
    async def events(
        self, info: Info[GatewayContext, None], region: str, types: list[str] | None = None
    ) -> AsyncGenerator[DomainEvent, None]:
        # The subscriber's scope bounds the stream: asking above it is FORBIDDEN.
        prefix = ctx(info).readable(region, "region")
        wanted = set(types or ())
        if len(wanted) > 50:
            raise BadInput("at most 50 event types", field="types")
        async for event in ctx(info).backend.live_events():
            if event.region.startswith(prefix) and (not wanted or event.type in wanted):
                yield DomainEvent.from_body(event.to_dict())


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        """Bad input is the caller's business; ``ErrorCodes`` logs internal errors."""


def build_schema(extensions: Sequence[Any] = ()) -> strawberry.Schema:
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Parsing and validating the same query text again costs ~2 ms a request (bench/).
        extensions=[
            ErrorCodes,
            # Hostile queries: nesting, size and alias fan-out are bounded before execution.
            QueryLimits,
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            lambda: ParserCache(maxsize=512),  # the LRU cache itself is shared per process
            lambda: ValidationCache(maxsize=512),
            *extensions,
        ],
        config=StrawberryConfig(scalar_map=dict(SCALARS)),
    )


__all__ = ["CommandContext", "build_schema"]
