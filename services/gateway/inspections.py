"""The inspections GraphQL surface: batches, rectification orders, complaints, law talks,
penalties, the schedule checker, and the inspection figures of every region.

It reads through ``services.inspections.views`` and sends commands through the backend.
It adds ``RegionStats.inspections`` and the inspection figures of ``MonthlyStats`` to the
kit's types, and ``inspections`` / ``rectifications`` / ``complaints`` to the registry's
``Institution``, whose type it uses for the institution a visit, order or complaint names
(the registry's slice is the platform's hub). Overdue is judged by the backend's clock.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeAlias

import strawberry
from strawberry.types import Info

from services.common.errors import BadInput
from services.gateway import registry
from services.gateway.context import GatewayContext
from services.gateway.kit import (
    Connection,
    Extensions,
    MonthEndStats,
    MonthlyStats,
    Region,
    RegionStats,
    Slice,
    ctx,
    cursors,
    list_size,
    page_size,
    read_in_scope,
    send_command,
)
from services.gateway.scalars import Date, DateTime, Money
from services.inspections import views
from services.inspections.module import (
    MODULE,
    SCHEDULE_RULES,
    Circumstance,
    ComplaintChannel,
    ComplaintStatus,
    FileComplaint,
    FindingInput,
    FindingType,
    InspectionKind,
    Lesson,
    PenaltyArticle,
    PenaltyKind,
    RecordInspection,
    RecordLawTalk,
    RecordPenalty,
    RectificationStatus,
    ResolveComplaint,
    SubmitRectification,
    VerifyRectification,
    VisitInput,
    check_schedule,
)
from services.registry.module import Category, TeachingMode

strawberry.enum(InspectionKind, name="InspectionKind")
strawberry.enum(FindingType, name="FindingType")
strawberry.enum(RectificationStatus, name="RectificationStatus")
strawberry.enum(ComplaintChannel, name="ComplaintChannel")
strawberry.enum(ComplaintStatus, name="ComplaintStatus")
strawberry.enum(PenaltyArticle, name="PenaltyArticle", description="教育部令第53号")
strawberry.enum(PenaltyKind, name="PenaltyKind")
strawberry.enum(Circumstance, name="PenaltyCircumstance", description="情节")
InspectionKindT: TypeAlias = InspectionKind
FindingTypeT: TypeAlias = FindingType
RectificationStatusT: TypeAlias = RectificationStatus
ComplaintChannelT: TypeAlias = ComplaintChannel
ComplaintStatusT: TypeAlias = ComplaintStatus
PenaltyArticleT: TypeAlias = PenaltyArticle
PenaltyKindT: TypeAlias = PenaltyKind
CircumstanceT: TypeAlias = Circumstance

Institution = registry.Institution
extensions = Extensions()
Doc = dict[str, Any]


def _at(text: str | None) -> DateTime | None:
    return DateTime(datetime.fromisoformat(text)) if text else None


async def _institution(info: Info[GatewayContext, None], id: str | None) -> Institution | None:
    """The registered institution a record names, if the caller may see it."""
    if id is None:
        return None
    doc = await ctx(info).loader(registry.views.INSTITUTIONS.name).load(id)
    if doc is None or not ctx(info).principal.covers(doc["region"]):
        return None
    return Institution.from_doc(doc)


def _region(info: Info[GatewayContext, None], code: str) -> Region:
    return Region.of(ctx(info).backend.regions.require(code))


# --- roll-ups -------------------------------------------------------------------------


@strawberry.type
class FindingTypeCount:
    type: FindingTypeT
    count: int


@strawberry.type
class ComplaintChannelCount:
    channel: ComplaintChannelT
    count: int


@strawberry.type(description="Roll-up of inspection work over a region's subtree, as of now.")
class InspectionStats:
    inspections: int = strawberry.field(description="Inspection batches (检查批次).")
    personnel_dispatched: int = strawberry.field(
        description="Sum of personnel over batches (出动人次)."
    )
    institutions_inspected: int = strawberry.field(
        description="Distinct institutions visited (排查机构): registered institutions, and "
        "venues by their name within a district; a second visit is not counted again."
    )
    visits: int
    findings: int
    findings_by_type: list[FindingTypeCount]
    rectifications_opened: int = strawberry.field(
        description="One rectification order is opened per visit that has findings."
    )
    rectifications_closed: int
    rectifications_overdue: int = strawberry.field(
        description="Open or submitted past their deadline, as of now."
    )
    complaints: int
    complaints_resolved: int
    complaints_substantiated: int
    complaints_by_channel: list[ComplaintChannelCount]
    law_talks: int = strawberry.field(description="Persons talked to (法治谈话人数).")
    law_talk_sessions: int = strawberry.field(description="Law talks held.")
    joint_actions: int = strawberry.field(description="Batches of kind JOINT (联合执法行动).")
    penalties: int = strawberry.field(description="Administrative penalties (教育部令第53号).")
    fines: Money = strawberry.field(description="Sum of the fines imposed.")

    @strawberry.field(
        description="rectificationsClosed / rectificationsOpened, null when none opened. 整改率."
    )
    def rectification_rate(self) -> float | None:
        return views.rectification_rate(self.rectifications_opened, self.rectifications_closed)

    @classmethod
    def from_counts(cls, counts: dict[str, int]) -> InspectionStats:
        plain = {
            name: counts.get(name, 0)
            for name in (
                "inspections",
                "personnel_dispatched",
                "institutions_inspected",
                "visits",
                "findings",
                "rectifications_opened",
                "rectifications_closed",
                "rectifications_overdue",
                "complaints",
                "complaints_resolved",
                "complaints_substantiated",
                "law_talks",
                "law_talk_sessions",
                "joint_actions",
                "penalties",
            )
        }
        return cls(
            **plain,
            findings_by_type=findings_by_type(counts),
            complaints_by_channel=complaints_by_channel(counts),
            fines=Money(Decimal(counts.get("fines_fen", 0)) / 100),
        )


@extensions.field(RegionStats)
async def inspections(root: RegionStats, info: Info[GatewayContext, None]) -> InspectionStats:
    counters = await root.counters(info)
    subtree = ctx(info).backend.regions.subtree_prefix(root.code)
    counts = await views.inspection_counts(
        ctx(info).backend.read_store, root.code, subtree, counters, ctx(info).today()
    )
    return InspectionStats.from_counts(counts)


def findings_by_type(counts: dict[str, int]) -> list[FindingTypeCount]:
    """The types with findings, in the contract's order."""
    return [
        FindingTypeCount(type=t, count=n)
        for t in FindingType
        if (n := counts.get(f"finding_{t.value.lower()}", 0))
    ]


def complaints_by_channel(counts: dict[str, int]) -> list[ComplaintChannelCount]:
    """The channels with complaints, in the contract's order."""
    return [
        ComplaintChannelCount(channel=c, count=n)
        for c in ComplaintChannel
        if (n := counts.get(f"complaints_channel_{c.value.lower()}", 0))
    ]


@extensions.field(MonthlyStats, name="inspections")
def month_inspections(root: MonthlyStats) -> int:
    return views.month_counts(root.counters)["inspections"]


@extensions.field(MonthlyStats)
def findings(root: MonthlyStats) -> int:
    return views.month_counts(root.counters)["findings"]


@extensions.field(MonthlyStats)
def rectifications_closed(root: MonthlyStats) -> int:
    return views.month_counts(root.counters)["rectifications_closed"]


@extensions.field(MonthlyStats)
def complaints(root: MonthlyStats) -> int:
    return views.month_counts(root.counters)["complaints"]


@extensions.field(MonthlyStats, description="出动人次 in the month.")
def personnel_dispatched(root: MonthlyStats) -> int:
    return views.month_counts(root.counters)["personnel_dispatched"]


@extensions.field(
    MonthlyStats,
    description="Distinct institutions and venues inspected in the month (排查机构); one "
    "visited in two months counts in both.",
)
async def institutions_inspected(root: MonthlyStats, info: Info[GatewayContext, None]) -> int:
    subtree = ctx(info).backend.regions.subtree_prefix(root.code)
    return await views.places_inspected_in(ctx(info).backend.read_store, subtree, root.month)


@extensions.field(MonthlyStats, description="Rectification orders opened in the month.")
def rectifications_opened(root: MonthlyStats) -> int:
    return views.month_counts(root.counters)["rectifications_opened"]


@extensions.field(MonthlyStats, description="Persons talked to in the month (法治谈话人数).")
def law_talks(root: MonthlyStats) -> int:
    return views.month_counts(root.counters)["law_talks"]


@extensions.field(MonthlyStats, description="JOINT batches in the month (联合执法行动).")
def joint_actions(root: MonthlyStats) -> int:
    return views.month_counts(root.counters)["joint_actions"]


@extensions.field(MonthlyStats, description="Administrative penalties decided in the month.")
def penalties(root: MonthlyStats) -> int:
    return views.month_counts(root.counters)["penalties"]


@extensions.field(MonthlyStats, name="findingsByType")
def month_findings_by_type(root: MonthlyStats) -> list[FindingTypeCount]:
    return findings_by_type(views.month_counts(root.counters))


@extensions.field(MonthlyStats, name="complaintsByChannel")
def month_complaints_by_channel(root: MonthlyStats) -> list[ComplaintChannelCount]:
    return complaints_by_channel(views.month_counts(root.counters))


async def _orders_at(root: MonthEndStats, info: Info[GatewayContext, None]) -> dict[str, int]:
    if root.now(info):
        subtree = ctx(info).backend.regions.subtree_prefix(root.code)
        store = ctx(info).backend.read_store
        stats = await root.stats(info)
        counts = await views.inspection_counts(store, root.code, subtree, stats, ctx(info).today())
    else:
        counts = views.month_end_counts(await root.totals(info))
    names = ("rectifications_opened", "rectifications_closed", "rectifications_overdue")
    return {name: counts.get(name, 0) for name in names}


@extensions.field(MonthEndStats, name="rectificationsOpened", description="Opened by then.")
async def opened_by(root: MonthEndStats, info: Info[GatewayContext, None]) -> int:
    return (await _orders_at(root, info))["rectifications_opened"]


@extensions.field(MonthEndStats, name="rectificationsClosed", description="Closed by then.")
async def closed_by(root: MonthEndStats, info: Info[GatewayContext, None]) -> int:
    return (await _orders_at(root, info))["rectifications_closed"]


@extensions.field(
    MonthEndStats,
    name="rectificationRate",
    description="rectificationsClosed / rectificationsOpened by then, null when none. 整改率.",
)
async def rate_by(root: MonthEndStats, info: Info[GatewayContext, None]) -> float | None:
    counts = await _orders_at(root, info)
    return views.rectification_rate(
        counts["rectifications_opened"], counts["rectifications_closed"]
    )


@extensions.field(
    MonthEndStats,
    name="rectificationsOverdue",
    description="Due in the month or before and not closed by its end (逾期未整改).",
)
async def overdue_by(root: MonthEndStats, info: Info[GatewayContext, None]) -> int:
    return (await _orders_at(root, info))["rectifications_overdue"]


# --- records --------------------------------------------------------------------------


@strawberry.type
class Finding:
    type: FindingTypeT
    description: str


def _findings(docs: list[Doc]) -> list[Finding]:
    return [Finding(type=FindingType(f["type"]), description=f["description"]) for f in docs]


@strawberry.type
class Rectification:
    id: strawberry.ID
    findings: list[Finding]
    deadline: Date
    status: RectificationStatusT
    overdue: bool = strawberry.field(description="Not CLOSED and past its deadline, as of now.")
    opened_at: DateTime
    submitted_at: DateTime | None
    closed_at: DateTime | None
    failed_verifications: int
    venue: str | None
    note: str | None = strawberry.field(description="The last report or verification note.")
    region_code: strawberry.Private[str]
    institution_id: strawberry.Private[str | None]
    inspection_id: strawberry.Private[str]

    @strawberry.field
    def region(self, info: Info[GatewayContext, None]) -> Region:
        return _region(info, self.region_code)

    @strawberry.field
    async def institution(self, info: Info[GatewayContext, None]) -> Institution | None:
        return await _institution(info, self.institution_id)

    @strawberry.field(description="The batch whose findings opened this order.")
    async def inspection(self, info: Info[GatewayContext, None]) -> Inspection | None:
        doc = await ctx(info).loader(views.INSPECTIONS.name).load(self.inspection_id)
        return Inspection.from_doc(doc) if doc else None

    @classmethod
    def from_doc(cls, doc: Doc, today: date) -> Rectification:
        return cls(
            id=strawberry.ID(doc["id"]),
            findings=_findings(doc["findings"]),
            deadline=Date(date.fromisoformat(doc["deadline"])),
            status=RectificationStatus(doc["status"]),
            overdue=views.is_overdue(doc, today),
            opened_at=DateTime(datetime.fromisoformat(doc["opened_at"])),
            submitted_at=_at(doc["submitted_at"]),
            closed_at=_at(doc["closed_at"]),
            failed_verifications=doc["failures"],
            venue=doc["venue"],
            note=doc["note"],
            region_code=doc["region"],
            institution_id=doc["institution_id"],
            inspection_id=doc["inspection_id"],
        )


@strawberry.type
class Visit:
    venue: str | None = strawberry.field(
        description="Free-text venue when no registered institution is involved (e.g. hidden "
        "training in a flat)."
    )
    findings: list[Finding]
    institution_id: strawberry.Private[str | None]
    rectification_id: strawberry.Private[str | None]

    @strawberry.field
    async def institution(self, info: Info[GatewayContext, None]) -> Institution | None:
        return await _institution(info, self.institution_id)

    @strawberry.field
    async def rectification(self, info: Info[GatewayContext, None]) -> Rectification | None:
        if self.rectification_id is None:
            return None
        doc = await ctx(info).loader(views.RECTIFICATIONS.name).load(self.rectification_id)
        return Rectification.from_doc(doc, ctx(info).today()) if doc else None


@strawberry.type
class Inspection:
    id: strawberry.ID
    kind: InspectionKindT
    started_at: DateTime
    personnel: int
    departments: list[str]
    visits: list[Visit]
    deadline: Date = strawberry.field(description="When the orders this batch opened fall due.")
    region_code: strawberry.Private[str]

    @strawberry.field
    def region(self, info: Info[GatewayContext, None]) -> Region:
        return _region(info, self.region_code)

    @classmethod
    def from_doc(cls, doc: Doc) -> Inspection:
        return cls(
            id=strawberry.ID(doc["id"]),
            kind=InspectionKind(doc["kind"]),
            started_at=DateTime(datetime.fromisoformat(doc["started_at"])),
            personnel=doc["personnel"],
            departments=list(doc["departments"]),
            visits=[
                Visit(
                    venue=v["venue"],
                    findings=_findings(v["findings"]),
                    institution_id=v["institution_id"],
                    rectification_id=v["rectification"],
                )
                for v in doc["visits"]
            ],
            deadline=Date(date.fromisoformat(doc["deadline"])),
            region_code=doc["region"],
        )


@strawberry.type
class Complaint:
    id: strawberry.ID
    channel: ComplaintChannelT
    text: str
    status: ComplaintStatusT
    received_at: DateTime
    resolved_at: DateTime | None
    substantiated: bool | None
    note: str | None = strawberry.field(description="How it was resolved.")
    region_code: strawberry.Private[str]
    institution_id: strawberry.Private[str | None]

    @strawberry.field
    def region(self, info: Info[GatewayContext, None]) -> Region:
        return _region(info, self.region_code)

    @strawberry.field
    async def institution(self, info: Info[GatewayContext, None]) -> Institution | None:
        return await _institution(info, self.institution_id)

    @classmethod
    def from_doc(cls, doc: Doc) -> Complaint:
        return cls(
            id=strawberry.ID(doc["id"]),
            channel=ComplaintChannel(doc["channel"]),
            text=doc["text"],
            status=ComplaintStatus(doc["status"]),
            received_at=DateTime(datetime.fromisoformat(doc["received_at"])),
            resolved_at=_at(doc["resolved_at"]),
            substantiated=doc["substantiated"],
            note=doc["note"],
            region_code=doc["region"],
            institution_id=doc["institution_id"],
        )


@strawberry.type(description="An administrative penalty under 教育部令第53号.")
class Penalty:
    id: strawberry.ID
    article: PenaltyArticleT
    circumstance: CircumstanceT
    kind: PenaltyKindT
    fine: Money | None
    illegal_gains: Money | None
    venue: str | None
    reason: str
    decided_at: DateTime
    region_code: strawberry.Private[str]
    institution_id: strawberry.Private[str | None]

    @strawberry.field
    def region(self, info: Info[GatewayContext, None]) -> Region:
        return _region(info, self.region_code)

    @strawberry.field
    async def institution(self, info: Info[GatewayContext, None]) -> Institution | None:
        return await _institution(info, self.institution_id)

    @classmethod
    def from_doc(cls, doc: Doc) -> Penalty:
        gains = doc["illegal_gains_fen"]
        return cls(
            id=strawberry.ID(doc["id"]),
            article=PenaltyArticle(doc["article"]),
            circumstance=Circumstance(doc["circumstance"]),
            kind=PenaltyKind(doc["kind"]),
            fine=Money(Decimal(doc["fine_fen"]) / 100) if doc["fine_fen"] else None,
            illegal_gains=Money(Decimal(gains) / 100) if gains is not None else None,
            venue=doc["venue"],
            reason=doc["reason"],
            decided_at=DateTime(datetime.fromisoformat(doc["decided_at"])),
            region_code=doc["region"],
            institution_id=doc["institution_id"],
        )


# --- connections ----------------------------------------------------------------------


InspectionConnection: TypeAlias = Connection[Inspection]
RectificationConnection: TypeAlias = Connection[Rectification]
ComplaintConnection: TypeAlias = Connection[Complaint]
PenaltyConnection: TypeAlias = Connection[Penalty]


@strawberry.input(description="Every filter's region means the whole subtree under that code.")
class InspectionFilter:
    region: str | None = None
    institution_id: strawberry.ID | None = None
    kind: InspectionKindT | None = None
    from_: Date | None = strawberry.field(default=None, name="from")
    to: Date | None = None


@strawberry.input(description="Every filter's region means the whole subtree under that code.")
class RectificationFilter:
    region: str | None = None
    institution_id: strawberry.ID | None = None
    status: RectificationStatusT | None = None
    overdue: bool | None = None


@strawberry.input(description="Every filter's region means the whole subtree under that code.")
class ComplaintFilter:
    region: str | None = None
    institution_id: strawberry.ID | None = None
    status: ComplaintStatusT | None = None
    channel: ComplaintChannelT | None = None


def _scope(info: Info[GatewayContext, None], region: str | None) -> list[str]:
    """The region prefixes a listing is bounded by: the caller's scope, and a chosen one."""
    scope = ctx(info).principal.scope
    prefixes = [scope] if scope else []
    if region is not None:
        prefixes.append(ctx(info).readable(region, "filter.region"))
    return prefixes


async def list_inspections(
    info: Info[GatewayContext, None],
    flt: InspectionFilter | None,
    first: int | None,
    after: str | None,
    institution: str | None = None,
) -> InspectionConnection:
    flt = flt or InspectionFilter()
    where = views.InspectionFilter(
        region_prefixes=_scope(info, flt.region),
        institution_id=institution or flt.institution_id,
        kind=flt.kind.value if flt.kind else None,
        start=flt.from_,
        end=flt.to,
    )
    store = ctx(info).backend.read_store
    page, marks = await views.inspections(store, where, page_size(first), after)
    return Connection.of(page, [Inspection.from_doc(doc) for doc in page.items], marks)


async def list_rectifications(
    info: Info[GatewayContext, None],
    flt: RectificationFilter | None,
    first: int | None,
    after: str | None,
    institution: str | None = None,
) -> RectificationConnection:
    flt = flt or RectificationFilter()
    today = ctx(info).today()
    where = views.RectificationFilter(
        region_prefixes=_scope(info, flt.region),
        institution_id=institution or flt.institution_id,
        status=flt.status.value if flt.status else None,
        overdue=flt.overdue,
        today=today,
    )
    page = await views.rectifications(ctx(info).backend.read_store, where, page_size(first), after)
    nodes = [Rectification.from_doc(doc, today) for doc in page.items]
    return Connection.of(page, nodes, cursors(page, "deadline"))


async def list_complaints(
    info: Info[GatewayContext, None],
    flt: ComplaintFilter | None,
    first: int | None,
    after: str | None,
    institution: str | None = None,
) -> ComplaintConnection:
    flt = flt or ComplaintFilter()
    where = views.ComplaintFilter(
        region_prefixes=_scope(info, flt.region),
        institution_id=institution or flt.institution_id,
        status=flt.status.value if flt.status else None,
        channel=flt.channel.value if flt.channel else None,
    )
    page = await views.complaints(ctx(info).backend.read_store, where, page_size(first), after)
    nodes = [Complaint.from_doc(doc) for doc in page.items]
    return Connection.of(page, nodes, cursors(page, "received_at"))


@extensions.field("Institution", name="inspections")
async def institution_inspections(
    root: Institution,
    info: Info[GatewayContext, None],
    first: int | None = 20,
    after: str | None = None,
) -> InspectionConnection:
    return await list_inspections(info, None, first, after, institution=str(root.id))


@extensions.field("Institution", name="rectifications")
async def institution_rectifications(
    root: Institution,
    info: Info[GatewayContext, None],
    first: int | None = 20,
    after: str | None = None,
) -> RectificationConnection:
    return await list_rectifications(info, None, first, after, institution=str(root.id))


@extensions.field("Institution", name="complaints")
async def institution_complaints(
    root: Institution,
    info: Info[GatewayContext, None],
    first: int | None = 20,
    after: str | None = None,
) -> ComplaintConnection:
    return await list_complaints(info, None, first, after, institution=str(root.id))


# --- the schedule checker -------------------------------------------------------------


@strawberry.input(description='A lesson; times "HH:MM" in Asia/Shanghai.')
class LessonInput:
    date: Date
    start: str
    end: str
    mode: TeachingMode
    category: Category = strawberry.field(graphql_type=registry.InstitutionCategory)
    preschool: bool | None = False
    region: str | None = None


@strawberry.type
class ScheduleViolation:
    index: int = strawberry.field(description="The lesson's position in the input.")
    rule: str = strawberry.field(description=f"One of {', '.join(SCHEDULE_RULES)}.")
    message: str


@strawberry.type
class ScheduleCheckResult:
    violations: list[ScheduleViolation]
    warnings: list[str] = strawberry.field(
        description="What the check could not judge, e.g. a year whose official holiday "
        "arrangement is not configured yet (only weekends counted)."
    )


MAX_LESSONS = 500


def _check(info: Info[GatewayContext, None], lessons: list[LessonInput]) -> ScheduleCheckResult:
    if len(lessons) > MAX_LESSONS:
        raise BadInput(f"at most {MAX_LESSONS} lessons at a time", field="lessons")
    policy = MODULE.settings_in(ctx(info).backend.config).schedule()
    parsed = []
    for index, lesson in enumerate(lessons):
        region = None
        if lesson.region is not None:
            region = ctx(info).backend.regions.canonical(lesson.region, f"lessons[{index}].region")
        parsed.append(
            Lesson(
                date=lesson.date,
                start=lesson.start,
                end=lesson.end,
                mode=lesson.mode.value,
                category=lesson.category.value,
                preschool=bool(lesson.preschool),
                region=region,
            )
        )
    result = check_schedule(parsed, policy)
    return ScheduleCheckResult(
        violations=[
            ScheduleViolation(index=v.index, rule=v.rule, message=v.message)
            for v in result.violations
        ],
        warnings=list(result.warnings),
    )


@strawberry.type
class Query:
    @strawberry.field
    async def inspection(
        self, info: Info[GatewayContext, None], id: strawberry.ID
    ) -> Inspection | None:
        doc = await ctx(info).loader(views.INSPECTIONS.name).load(id)
        if doc is None or not ctx(info).principal.covers(doc["region"]):
            return None
        return Inspection.from_doc(doc)

    @strawberry.field
    async def inspections(
        self,
        info: Info[GatewayContext, None],
        filter: InspectionFilter | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> InspectionConnection:
        return await list_inspections(info, filter, first, after)

    @strawberry.field
    async def rectification(
        self, info: Info[GatewayContext, None], id: strawberry.ID
    ) -> Rectification | None:
        doc = await ctx(info).loader(views.RECTIFICATIONS.name).load(id)
        if doc is None or not ctx(info).principal.covers(doc["region"]):
            return None
        return Rectification.from_doc(doc, ctx(info).today())

    @strawberry.field
    async def rectifications(
        self,
        info: Info[GatewayContext, None],
        filter: RectificationFilter | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> RectificationConnection:
        return await list_rectifications(info, filter, first, after)

    @strawberry.field
    async def complaint(
        self, info: Info[GatewayContext, None], id: strawberry.ID
    ) -> Complaint | None:
        doc = await ctx(info).loader(views.COMPLAINTS.name).load(id)
        if doc is None or not ctx(info).principal.covers(doc["region"]):
            return None
        return Complaint.from_doc(doc)

    @strawberry.field
    async def complaints(
        self,
        info: Info[GatewayContext, None],
        filter: ComplaintFilter | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> ComplaintConnection:
        return await list_complaints(info, filter, first, after)

    @strawberry.field(description="Penalties in a region's subtree, oldest first.")
    async def penalties(
        self,
        info: Info[GatewayContext, None],
        region: str | None = None,
        institution_id: strawberry.ID | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> PenaltyConnection:
        page = await views.penalties(
            ctx(info).backend.read_store,
            _scope(info, region),
            institution_id,
            page_size(first),
            after,
        )
        nodes = [Penalty.from_doc(doc) for doc in page.items]
        return Connection.of(page, nodes, cursors(page, "decided_at"))

    @strawberry.field(
        description="The training-time rules a timetable breaks (one violation per lesson and "
        "rule): rest days and school breaks for SUBJECT training, online lesson length, gaps "
        "and end times, offline NON_SUBJECT end time, online pre-school training.",
        metadata=list_size(MAX_LESSONS),
    )
    def check_schedule(
        self, info: Info[GatewayContext, None], lessons: list[LessonInput]
    ) -> list[ScheduleViolation]:
        return _check(info, lessons).violations

    @strawberry.field(
        description="checkSchedule with the warnings of what it could not judge.",
        metadata=list_size(MAX_LESSONS),
    )
    def schedule_check(
        self, info: Info[GatewayContext, None], lessons: list[LessonInput]
    ) -> ScheduleCheckResult:
        return _check(info, lessons)


# --- mutations ------------------------------------------------------------------------


@strawberry.input(name="FindingInput")
class FindingInputGql:
    type: FindingTypeT
    description: str


@strawberry.input(name="VisitInput")
class VisitInputGql:
    institution_id: strawberry.ID | None = None
    venue: str | None = None
    findings: list[FindingInputGql] | None = strawberry.field(default_factory=list)


@strawberry.input
class RecordInspectionInput:
    id: strawberry.ID | None = None
    region: str = strawberry.field(description="6-digit district code of the inspecting office.")
    kind: InspectionKindT
    started_at: DateTime
    personnel: int
    departments: list[str] | None = strawberry.field(default_factory=list)
    visits: list[VisitInputGql]
    rectify_within_days: int | None = strawberry.field(
        default=30, description="Days until the rectification deadline for visits with findings."
    )


@strawberry.input
class FileComplaintInput:
    id: strawberry.ID | None = None
    region: str
    channel: ComplaintChannelT
    institution_id: strawberry.ID | None = None
    text: str
    occurred_at: DateTime | None = None


@strawberry.input
class RecordLawTalkInput:
    id: strawberry.ID | None = strawberry.field(
        default=None, description="Optional client-chosen id; re-sending it is a no-op."
    )
    region: str
    institution_id: strawberry.ID | None = None
    persons: int
    occurred_at: DateTime | None = None


@strawberry.input(description="An administrative penalty under 教育部令第53号.")
class RecordPenaltyInput:
    id: strawberry.ID | None = None
    region: str = strawberry.field(description="6-digit district code of the deciding office.")
    institution_id: strawberry.ID | None = None
    venue: str | None = strawberry.field(
        default=None, description="Who or where, when no registered institution is involved."
    )
    article: PenaltyArticleT
    kind: PenaltyKindT
    circumstance: CircumstanceT | None = Circumstance.ORDINARY
    fine: Money | None = None
    illegal_gains: Money | None = None
    reason: str
    occurred_at: DateTime | None = None


@strawberry.type
class Mutation:
    @strawberry.mutation(description="检查批次: a batch, its visits and findings.")
    async def record_inspection(
        self, info: Info[GatewayContext, None], input: RecordInspectionInput
    ) -> Inspection:
        cmd = RecordInspection(
            id=input.id,
            region=input.region,
            kind=input.kind.value,
            started_at=input.started_at,
            personnel=input.personnel,
            departments=list(input.departments or []),
            visits=[
                VisitInput(
                    institution_id=v.institution_id,
                    venue=v.venue,
                    findings=[
                        FindingInput(type=f.type.value, description=f.description)
                        for f in v.findings or []
                    ],
                )
                for v in input.visits
            ],
            rectify_within_days=input.rectify_within_days,
        )
        outcome = await send_command(info, cmd, "input")
        return Inspection.from_doc(
            await read_in_scope(info, views.INSPECTIONS.name, outcome.aggregate.id)
        )

    @strawberry.mutation(description="The institution reports the order rectified.")
    async def submit_rectification(
        self,
        info: Info[GatewayContext, None],
        id: strawberry.ID,
        note: str,
        occurred_at: DateTime | None = None,
    ) -> Rectification:
        await send_command(info, SubmitRectification(id=id, note=note, occurred_at=occurred_at))
        doc = await read_in_scope(info, views.RECTIFICATIONS.name, id)
        return Rectification.from_doc(doc, ctx(info).today())

    @strawberry.mutation(
        description="Verification by the inspector: passed closes it, failed sends it back to OPEN."
    )
    async def verify_rectification(
        self,
        info: Info[GatewayContext, None],
        id: strawberry.ID,
        passed: bool,
        note: str | None = None,
        occurred_at: DateTime | None = None,
    ) -> Rectification:
        cmd = VerifyRectification(id=id, passed=passed, note=note, occurred_at=occurred_at)
        await send_command(info, cmd)
        doc = await read_in_scope(info, views.RECTIFICATIONS.name, id)
        return Rectification.from_doc(doc, ctx(info).today())

    @strawberry.mutation(description="举报")
    async def file_complaint(
        self, info: Info[GatewayContext, None], input: FileComplaintInput
    ) -> Complaint:
        cmd = FileComplaint(
            id=input.id,
            region=input.region,
            channel=input.channel.value,
            institution_id=input.institution_id,
            text=input.text,
            occurred_at=input.occurred_at,
        )
        outcome = await send_command(info, cmd, "input")
        return Complaint.from_doc(
            await read_in_scope(info, views.COMPLAINTS.name, outcome.aggregate.id)
        )

    @strawberry.mutation
    async def resolve_complaint(
        self,
        info: Info[GatewayContext, None],
        id: strawberry.ID,
        substantiated: bool,
        note: str,
        occurred_at: DateTime | None = None,
    ) -> Complaint:
        cmd = ResolveComplaint(
            id=id, substantiated=substantiated, note=note, occurred_at=occurred_at
        )
        await send_command(info, cmd)
        return Complaint.from_doc(await read_in_scope(info, views.COMPLAINTS.name, id))

    @strawberry.mutation(
        description="法治谈话. Answers the number of persons recorded by this talk."
    )
    async def record_law_talk(
        self, info: Info[GatewayContext, None], input: RecordLawTalkInput
    ) -> int:
        cmd = RecordLawTalk(
            id=input.id,
            region=input.region,
            institution_id=input.institution_id,
            persons=input.persons,
            occurred_at=input.occurred_at,
        )
        outcome = await send_command(info, cmd, "input")
        doc = await read_in_scope(info, views.LAW_TALKS.name, outcome.aggregate.id)
        persons: int = doc["persons"]
        return persons

    @strawberry.mutation(
        description="行政处罚 under 教育部令第53号; a fine outside its article's range is refused."
    )
    async def record_penalty(
        self, info: Info[GatewayContext, None], input: RecordPenaltyInput
    ) -> Penalty:
        cmd = RecordPenalty(
            id=input.id,
            region=input.region,
            institution_id=input.institution_id,
            venue=input.venue,
            article=input.article.value,
            kind=input.kind.value,
            circumstance=(input.circumstance or Circumstance.ORDINARY).value,
            fine=input.fine,
            illegal_gains=input.illegal_gains,
            reason=input.reason,
            occurred_at=input.occurred_at,
        )
        outcome = await send_command(info, cmd, "input")
        return Penalty.from_doc(
            await read_in_scope(info, views.PENALTIES.name, outcome.aggregate.id)
        )


SLICE = Slice(
    MODULE.name,
    query=Query,
    mutation=Mutation,
    types=(InspectionStats, Inspection, Rectification, Complaint),
    extensions=extensions,
)
