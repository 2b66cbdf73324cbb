"""The gateway's kit: what every GraphQL slice shares, and how a slice adds to it.

Shared here: the caller's context (``ctx``), page sizes, ``PageInfo``, ``DomainEvent`` and
the audit trail's ``EventConnection``, and the region types every service reports on:
``Region``, ``RegionStats`` and ``MonthlyStats``. Those carry the kit's own fields only;
each service's slice adds its fields to them (``RegionStats.institutions`` from the
registry, later ``RegionStats.inspections`` from inspections) with ``Extensions.field``,
and a slice may add fields to another slice's type by its GraphQL name
(``Institution.riskLevel`` from finance) without importing it. The composer
(``schema.py``) puts the slices together.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Generic, TypeAlias, TypeVar

import strawberry
from strawberry.types import Info
from strawberry.types.field import StrawberryField

from services.common.application import Outcome
from services.common.audit import institution_events
from services.common.commands import Command
from services.common.config import BACKDATE_WINDOW_DAYS
from services.common.errors import BadInput, Forbidden, NotFound, Unavailable
from services.common.ports import Page, encode_cursor
from services.common.regions import Region as RegionRecord
from services.common.regions import RegionLevel as RegionLevelEnum
from services.common.regions import RegionTree
from services.common.rollups import (
    REGION_STATS,
    all_months,
    month_range,
    region_months,
    totals_through,
)
from services.gateway.context import GatewayContext
from services.gateway.errors import input_fields
from services.gateway.scalars import Date, DateTime

strawberry.enum(RegionLevelEnum, name="RegionLevel")
RegionLevel: TypeAlias = RegionLevelEnum

MAX_PAGE = 100
Resolver = TypeVar("Resolver", bound=Callable[..., Any])


def ctx(info: Info[GatewayContext, None]) -> GatewayContext:
    return info.context


def page_size(first: int | None, field: str = "first", default: int = 20) -> int:
    """The contract's ``first: Int = 20``: an explicit null means the default."""
    if first is None:
        return default
    if not 0 <= first <= MAX_PAGE:
        raise BadInput(f"first must be between 0 and {MAX_PAGE}", field=field)
    return first


LIST_SIZE = "shuangjian.cost.list_size"
ListSize: TypeAlias = int | Callable[[Mapping[str, Any]], int]


def list_size(size: ListSize) -> dict[str, ListSize]:
    """``strawberry.field`` metadata: at most how many items this list field answers.

    A number, or a function of the field's arguments; the query cost estimate
    (``cost.py``) multiplies the items' selections by it.
    """
    return {LIST_SIZE: size}


# --- how slices add fields to types they do not own -----------------------------------


@dataclass(frozen=True)
class Extension:
    """A field a slice adds to a type: a kit class, or another slice's type by name."""

    target: type | str
    field: StrawberryField


@dataclass
class Extensions:
    """The fields one slice adds to types it does not own."""

    fields: list[Extension] = field(default_factory=list)

    def field(self, target: type | str, **options: Any) -> Callable[[Resolver], Resolver]:
        """Add the decorated resolver to ``target`` as a field (``root`` is the object)."""

        def add(resolver: Resolver) -> Resolver:
            self.fields.append(Extension(target, strawberry.field(resolver=resolver, **options)))
            return resolver

        return add


@dataclass(frozen=True)
class Slice:
    """One service's GraphQL surface: its root fields, its types, what it adds to others."""

    name: str
    query: type | None = None
    mutation: type | None = None
    subscription: type | None = None
    types: Sequence[type] = ()  # types other slices may extend by their GraphQL name
    extensions: Extensions = field(default_factory=Extensions)


# --- mutations: send, wait for the read model, read back in scope ----------------------


async def send_command(
    info: Info[GatewayContext, None], cmd: Command, input_name: str | None = None
) -> Outcome[Any]:
    """Send a command as the caller and wait until the read models show it
    (read-your-writes); a domain error's field is named as the argument (``input.x``)."""
    caller = ctx(info).command()  # its errors name headers, not the mutation's input
    with input_fields(input_name):
        outcome = await ctx(info).backend.execute(cmd, caller)
    if not await ctx(info).backend.reflects(outcome):
        raise Unavailable(
            "the command was accepted, but the read model has not caught up yet; "
            "query it again shortly"
        )
    return outcome


async def read_in_scope(
    info: Info[GatewayContext, None], collection: str, id: str
) -> dict[str, Any]:
    """A document the caller's region scope covers (by its ``region``), or an error."""
    doc = await ctx(info).backend.read_store.get(collection, id)
    if doc is None:
        raise NotFound(f"nothing has the id {id}", field="id")
    if not ctx(info).principal.covers(doc["region"]):
        raise Forbidden(f"{id} lies outside your region scope", field="id")
    return doc


# --- pagination and the audit trail ---------------------------------------------------


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None

    @classmethod
    def of(cls, page: Page) -> PageInfo:
        return cls(has_next_page=page.has_next, end_cursor=page.end_cursor)


NodeT = TypeVar("NodeT")


@strawberry.type
class Edge(Generic[NodeT]):
    """``Edge[Inspection]`` is the contract's ``InspectionEdge``."""

    node: NodeT
    cursor: str


@strawberry.type
class Connection(Generic[NodeT]):
    """``Connection[Inspection]`` is the contract's ``InspectionConnection``."""

    edges: list[Edge[NodeT]]
    page_info: PageInfo
    total_count: int

    @classmethod
    def of(cls, page: Page, nodes: Sequence[NodeT], cursors: Sequence[str]) -> Connection[NodeT]:
        """A page of the read store as a connection: its nodes, each with its cursor."""
        edges = [
            Edge(node=node, cursor=cursor) for node, cursor in zip(nodes, cursors, strict=True)
        ]
        return cls(edges=edges, page_info=PageInfo.of(page), total_count=page.total)


def cursors(page: Page, order: str) -> list[str]:
    """The cursor of each item of a page ordered by ``order`` (then id)."""
    return [encode_cursor(doc.get(order), doc["id"]) for doc in page.items]


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

    @strawberry.field(
        description="occurredAt is more than the back-dating window "
        "(SHUANGJIAN_BACKDATE_WINDOW_DAYS, default 3 days) before recordedAt: a fact only "
        "the admin or importer role (or the platform itself) may record."
    )
    def backdated(self, info: Info[GatewayContext, None]) -> bool:
        service = self.type.split(".", 1)[0]
        try:
            days = ctx(info).backend.config(service).backdate_window_days
        except KeyError:  # a service this gateway no longer runs
            days = BACKDATE_WINDOW_DAYS
        return self.recorded_at - self.occurred_at > timedelta(days=days)

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


async def audit_trail(
    info: Info[GatewayContext, None], institution: str, first: int | None, after: str | None
) -> EventConnection:
    """An institution's events across services, oldest first (the caller checked scope)."""
    store = ctx(info).backend.read_store
    page = await institution_events(store, institution, page_size(first, default=50), after)
    edges = [
        EventEdge(
            node=DomainEvent.from_body(doc["event"]),
            cursor=encode_cursor(doc["order"], doc["id"]),
        )
        for doc in page.items
    ]
    return EventConnection(edges=edges, page_info=PageInfo.of(page), total_count=page.total)


# --- regions and their roll-ups (slices add the services' figures) --------------------


@strawberry.type(description="Roll-ups over a region's whole subtree, as of now.")
class RegionStats:
    code: strawberry.Private[str]

    async def counters(self, info: Info[GatewayContext, None]) -> dict[str, Any]:
        """Every service's counters of this region (one batched read per request)."""
        ctx(info).principal.require_read(self.code)
        return await ctx(info).loader(REGION_STATS.name).load(self.code) or {}


@strawberry.type(
    description="A region's standing at the end of a month (月末), by business time; for "
    "the current month (and any later one), as of now, so it equals Region.stats."
)
class MonthEndStats:
    code: strawberry.Private[str]
    month: strawberry.Private[date]

    def now(self, info: Info[GatewayContext, None]) -> bool:
        """Has the month not ended yet? Then the standing is today's (``RegionStats``)."""
        return self.month >= ctx(info).today().replace(day=1)

    async def stats(self, info: Info[GatewayContext, None]) -> dict[str, Any]:
        """Today's roll-up document (``RegionStats.counters``): for a month not ended."""
        return await ctx(info).loader(REGION_STATS.name).load(self.code) or {}

    async def totals(self, info: Info[GatewayContext, None]) -> dict[str, int]:
        """The month buckets summed up to this month: for a month that has ended."""
        store = ctx(info).backend.read_store
        months = await ctx(info).once(
            ("all_months", self.code), lambda: all_months(store, self.code)
        )
        return totals_through(months, self.month)


@strawberry.type(description="One month of a region's subtree, by business time.")
class MonthlyStats:
    month: Date
    counters: strawberry.Private[dict[str, Any]]
    code: strawberry.Private[str]

    @strawberry.field(description="The region's standing at the end of this month (月末).")
    def at_month_end(self) -> MonthEndStats:
        return MonthEndStats(code=self.code, month=self.month)


# What the region lists answer at most, for the query cost estimate (the shipped tree).
_MOST_CHILDREN = max(len(RegionTree.load().children(r.code)) for r in RegionTree.load())


def _regions_listed(arguments: Mapping[str, Any]) -> int:
    try:
        return len(RegionTree.load().by_level(arguments["level"], arguments.get("parent")))
    except BadInput:
        return 0  # the resolver refuses the parent before listing anything


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

    @strawberry.field(metadata=list_size(_MOST_CHILDREN))
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
        found = await region_months(ctx(info).backend.read_store, self.code, months)
        return [
            MonthlyStats(month=Date(month), counters=counters, code=self.code)
            for month, counters in zip(months, found, strict=True)
        ]


@strawberry.type(description="Who the token is for, and where it may look.")
class Viewer:
    subject: str
    role: str
    scope_code: strawberry.Private[str | None]

    @strawberry.field(description="The region the token is limited to; null: the whole country.")
    def scope(self, info: Info[GatewayContext, None]) -> Region | None:
        if self.scope_code is None:
            return None
        return Region.of(ctx(info).backend.regions.require(self.scope_code))

    @strawberry.field(
        description="The regions to start from: the scope region, or every province for a "
        "national token."
    )
    def regions(self, info: Info[GatewayContext, None]) -> list[Region]:
        if self.scope_code is not None:
            return [Region.of(ctx(info).backend.regions.require(self.scope_code))]
        return [Region.of(r) for r in ctx(info).backend.regions.by_level(RegionLevel.PROVINCE)]


@strawberry.type
class KitQuery:
    @strawberry.field(description="The caller: the token's subject, role and scope.")
    def viewer(self, info: Info[GatewayContext, None]) -> Viewer:
        principal = ctx(info).principal
        return Viewer(
            subject=principal.subject, role=principal.role.value, scope_code=principal.region
        )

    @strawberry.field(
        description="Region by GB/T 2260 code. Canonical codes are 6 digits (340000 province, "
        "340100 city, 340103 district); 2- and 4-digit prefixes are accepted."
    )
    def region(self, info: Info[GatewayContext, None], code: str) -> Region | None:
        # A code that is not in the shipped list is BAD_INPUT, as in every other argument
        # that names a region (filters, subscriptions, inputs), not a silent null.
        regions = ctx(info).backend.regions
        return Region.of(regions.require(regions.canonical(code, "code")))

    @strawberry.field(metadata=list_size(_regions_listed))
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


@strawberry.type
class KitSubscription:
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


KIT = Slice(
    "kit",
    query=KitQuery,
    subscription=KitSubscription,
    types=(Region, RegionStats, MonthlyStats, MonthEndStats),
)
