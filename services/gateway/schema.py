"""The strawberry schema: contract types, queries from read models, mutations via services."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeAlias

import strawberry
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
from services.gateway.scalars import SCALARS, DateTime
from services.registry.domain.commands import ApproveInstitution, RegisterInstitution
from services.registry.domain.rules import Category, NonSubjectKind, Status, TeachingMode
from services.registry.projections import INSTITUTIONS, stats_fields

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


@strawberry.enum
class ListMark(enum.Enum):
    NONE = "NONE"
    WHITELIST = "WHITELIST"
    BLACKLIST = "BLACKLIST"


@strawberry.enum
class WarningColor(enum.Enum):
    YELLOW = "YELLOW"
    RED = "RED"


MAX_PAGE = 100
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


@strawberry.type
class RegionStats:
    code: strawberry.Private[str]

    @strawberry.field
    async def institutions(self, info: Info[GatewayContext, None]) -> InstitutionStats:
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
    region_code: strawberry.Private[str]

    @strawberry.field
    def region(self, info: Info[GatewayContext, None]) -> Region:
        return Region.of(ctx(info).backend.regions.require(self.region_code))

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
            region_code=doc["region"],
        )


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


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


def region_prefix(info: Info[GatewayContext, None], code: str, field: str) -> str:
    regions = ctx(info).backend.regions
    return regions.subtree_prefix(regions.canonical(code, field))


async def list_institutions(
    info: Info[GatewayContext, None],
    flt: InstitutionFilter | None,
    first: int | None,
    after: str | None,
) -> InstitutionConnection:
    filters: list[Filter | AnyOf] = []
    if flt is not None:
        if flt.region is not None:
            filters.append(Prefix("region", region_prefix(info, flt.region, "filter.region")))
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
    return Institution.from_doc(doc) if doc else None


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
        return [Region.of(r) for r in regions.by_level(level, parent)]

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
    if not await context.backend.applied(outcome.events):
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
        with input_fields("input"):
            outcome = await ctx(info).backend.registry.handle(cmd, ctx(info).command())
        return await institution_after(info, outcome)

    @strawberry.mutation
    async def approve_institution(
        self,
        info: Info[GatewayContext, None],
        id: strawberry.ID,
        license_no: str,
        occurred_at: DateTime | None = None,
    ) -> Institution:
        cmd = ApproveInstitution(id=id, license_no=license_no, occurred_at=occurred_at)
        with input_fields(None):
            outcome = await ctx(info).backend.registry.handle(cmd, ctx(info).command())
        return await institution_after(info, outcome)


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        """Bad input is the caller's business; ``ErrorCodes`` logs internal errors."""


def build_schema(extensions: Sequence[Any] = ()) -> strawberry.Schema:
    return Schema(
        query=Query,
        mutation=Mutation,
        extensions=[ErrorCodes, *extensions],
        config=StrawberryConfig(scalar_map=dict(SCALARS)),
    )


__all__ = ["CommandContext", "build_schema"]
