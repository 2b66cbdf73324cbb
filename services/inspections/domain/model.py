"""The aggregates of inspection work, every rule checked here (pure: no I/O).

* ``Inspection``: one batch (检查批次) and the rectification orders its findings opened;
  the orders live in the batch's stream, so a batch and its orders are written in one
  commit and a refused batch writes nothing.
* ``Complaint`` (举报), ``LawTalk`` (法治谈话), ``Penalty`` (行政处罚): one fact each, with
  the complaint's resolution.

Institutions belong to the registry: a command handler looks up the ones a command names
(``KnownInstitution``) and hands them in, so the decision itself stays pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from services.common.aggregate import DomainEvent, ExclusiveIds, event_dispatch
from services.common.commands import choice
from services.common.errors import BadInput, Conflict, NotFound
from services.common.regions import RegionTree
from services.common.text import clean_text
from services.common.timeutil import local_date
from services.inspections.domain.commands import (
    FileComplaint,
    RecordInspection,
    RecordLawTalk,
    RecordPenalty,
)
from services.inspections.domain.events import (
    ComplaintFiled,
    ComplaintResolved,
    Finding,
    InspectionRecorded,
    LawTalkRecorded,
    PenaltyImposed,
    RectificationSubmitted,
    RectificationVerified,
    Visit,
    rectification_id,
)
from services.inspections.domain.rules import (
    Circumstance,
    ComplaintChannel,
    FindingType,
    InspectionKind,
    InspectionPolicy,
    PenaltyArticle,
    PenaltyKind,
    RectificationStatus,
)

DESCRIPTION_MAX = 2_000
VENUE_MAX = 200
DEPARTMENT_MAX = 100
NOTE_MAX = 2_000
COMPLAINT_MAX = 5_000
MAX_PERSONS = 10_000


@dataclass(frozen=True)
class KnownInstitution:
    """What inspection work needs to know of a registered institution."""

    id: str
    region: str


Institutions = Mapping[str, KnownInstitution | None]
"""The institutions a command names, looked up by id (``None``: not registered)."""


class Once(ExclusiveIds):
    """An aggregate made by one fact: recording the same fact again changes nothing."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.fact: DomainEvent | None = None

    def _record_once(self, fact: DomainEvent, region: str, at: datetime) -> None:
        if self.fact is not None:
            if self.fact == fact:
                return  # the same command sent again
            raise Conflict(f"{self.id} is already recorded with different details", field="id")
        self.region = region
        self._record(fact, at)

    def _require_fact(self, at: datetime, what: str) -> DomainEvent:
        if self.fact is None:
            raise NotFound(f"no {what} with id {self.id}", field="id")
        return self.fact


@dataclass
class Order:
    """One rectification order's state within its batch."""

    institution_id: str | None
    status: RectificationStatus = RectificationStatus.OPEN
    failures: int = 0
    note: str | None = None
    submitted_at: datetime | None = None


class Inspection(Once):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.started_at: datetime | None = None
        self.orders: dict[str, Order] = {}

    def record(
        self,
        cmd: RecordInspection,
        at: datetime,
        regions: RegionTree,
        institutions: Institutions,
        policy: InspectionPolicy,
    ) -> None:
        self._record_once(
            inspection_event(self.id, cmd, at, regions, institutions, policy),
            regions.require_district(cmd.region, "region").code,
            at,
        )

    def submit(self, rectification: str, note: str, at: datetime) -> None:
        order = self._order(rectification, at)
        note = clean_text(note, "note", NOTE_MAX, multiline=True)
        if order.status is RectificationStatus.SUBMITTED and order.note == note:
            return  # the same report sent again
        if order.status is not RectificationStatus.OPEN:
            raise Conflict(
                f"rectification {rectification} is {order.status}: only an OPEN order is submitted",
                field="id",
            )
        self._record(
            RectificationSubmitted(
                rectification=rectification, institution_id=order.institution_id, note=note
            ),
            at,
        )

    def verify(self, rectification: str, passed: bool, note: str | None, at: datetime) -> None:
        order = self._order(rectification, at)
        note = clean_text(note, "note", NOTE_MAX, multiline=True) if note else None
        if passed and order.status is RectificationStatus.CLOSED and order.note == note:
            return  # the same passed verification sent again
        if order.status is not RectificationStatus.SUBMITTED:
            raise Conflict(
                f"rectification {rectification} is {order.status}: only a SUBMITTED order is "
                "verified",
                field="id",
            )
        if order.submitted_at is not None and at < order.submitted_at:
            raise BadInput(
                f"{at.isoformat()} is before the order was submitted "
                f"({order.submitted_at.isoformat()})",
                field="occurred_at",
            )
        self._record(
            RectificationVerified(
                rectification=rectification,
                institution_id=order.institution_id,
                passed=passed,
                note=note,
                failures=order.failures + (0 if passed else 1),
            ),
            at,
        )

    def _order(self, rectification: str, at: datetime) -> Order:
        self._require_fact(at, "inspection")
        order = self.orders.get(rectification)
        if order is None:
            raise NotFound(f"no rectification order with id {rectification}", field="id")
        assert self.started_at is not None
        if at < self.started_at:
            raise BadInput(
                f"{at.isoformat()} is before the inspection ({self.started_at.isoformat()})",
                field="occurred_at",
            )
        return order

    @event_dispatch
    def when(self, event: DomainEvent, at: datetime) -> None:
        super().when(event, at)

    @when.register
    def _(self, event: InspectionRecorded, at: datetime) -> None:
        self.fact = event
        self.region = event.region
        self.started_at = event.started_at
        for visit in event.visits:
            if visit.rectification is not None:
                self.orders[visit.rectification] = Order(visit.institution_id)

    @when.register
    def _(self, event: RectificationSubmitted, at: datetime) -> None:
        order = self.orders[event.rectification]
        order.status = RectificationStatus.SUBMITTED
        order.note = event.note
        order.submitted_at = at

    @when.register
    def _(self, event: RectificationVerified, at: datetime) -> None:
        order = self.orders[event.rectification]
        order.status = RectificationStatus.CLOSED if event.passed else RectificationStatus.OPEN
        order.failures = event.failures
        order.note = event.note


def inspection_event(
    id: str,
    cmd: RecordInspection,
    at: datetime,
    regions: RegionTree,
    institutions: Institutions,
    policy: InspectionPolicy,
) -> InspectionRecorded:
    """Check a batch field by field and turn it into the fact to record."""
    region = regions.require_district(cmd.region, "region").code
    kind = choice(InspectionKind, cmd.kind, "kind")
    if not 1 <= cmd.personnel <= policy.max_personnel:
        raise BadInput(f"personnel is between 1 and {policy.max_personnel:,}", field="personnel")
    days = (
        policy.rectify_within_days if cmd.rectify_within_days is None else cmd.rectify_within_days
    )
    if not 1 <= days <= policy.max_rectify_days:
        raise BadInput(
            f"rectifyWithinDays is between 1 and {policy.max_rectify_days}",
            field="rectify_within_days",
        )
    if len(cmd.departments) > policy.max_departments:
        raise BadInput(f"at most {policy.max_departments} departments", field="departments")
    departments = tuple(
        clean_text(d, f"departments[{i}]", DEPARTMENT_MAX) for i, d in enumerate(cmd.departments)
    )
    if not cmd.visits:
        raise BadInput("a batch visits at least one institution or venue", field="visits")
    if len(cmd.visits) > policy.max_visits:
        raise BadInput(f"at most {policy.max_visits:,} visits in one batch", field="visits")
    visits: list[Visit] = []
    opened = 0
    for index, given in enumerate(cmd.visits):
        where = f"visits[{index}]"
        institution_id, venue = _visited(
            f"{where}.", given.institution_id, given.venue, region, regions, institutions
        )
        if len(given.findings) > policy.max_findings_per_visit:
            raise BadInput(
                f"at most {policy.max_findings_per_visit} findings in one visit",
                field=f"{where}.findings",
            )
        findings = tuple(
            Finding(
                type=choice(FindingType, f.type, f"{where}.findings[{n}].type"),
                description=clean_text(
                    f.description,
                    f"{where}.findings[{n}].description",
                    DESCRIPTION_MAX,
                    multiline=True,
                ),
            )
            for n, f in enumerate(given.findings)
        )
        order = None
        if findings:
            opened += 1
            order = rectification_id(id, opened)
        visits.append(
            Visit(
                institution_id=institution_id, venue=venue, findings=findings, rectification=order
            )
        )
    return InspectionRecorded(
        region=region,
        kind=kind,
        started_at=at,
        personnel=cmd.personnel,
        departments=departments,
        visits=tuple(visits),
        deadline=local_date(at) + timedelta(days=days),
    )


def _visited(
    prefix: str,
    institution_id: str | None,
    venue: str | None,
    region: str,
    regions: RegionTree,
    institutions: Institutions,
) -> tuple[str | None, str | None]:
    """A visit (or a penalty) names a registered institution of the district, or a venue:
    exactly one of them. ``prefix`` leads the field names (``visits[2].``)."""
    if institution_id is not None and venue is not None:
        raise BadInput(
            "name a registered institution (institutionId) or a venue, not both",
            field=f"{prefix}venue",
        )
    if institution_id is None and venue is None:
        raise BadInput(
            "name a registered institution (institutionId) or a venue",
            field=f"{prefix}institution_id",
        )
    if institution_id is None:
        return None, clean_text(venue, f"{prefix}venue", VENUE_MAX)
    field = f"{prefix}institution_id"
    return known_in(institution_id, region, regions, institutions, field), None


def known_in(
    institution_id: str,
    region: str,
    regions: RegionTree,
    institutions: Institutions,
    field: str,
) -> str:
    """A registered institution of ``region``'s subtree, or ``BAD_INPUT`` naming ``field``."""
    known = institutions.get(institution_id)
    if known is None:
        raise BadInput(f"no registered institution has id {institution_id!r}", field=field)
    if not regions.contains(region, known.region):
        raise BadInput(
            f"institution {institution_id} is registered in {known.region}, outside {region}",
            field=field,
        )
    return institution_id


class Complaint(Once):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.resolution: ComplaintResolved | None = None
        self.received_at: datetime | None = None

    def file(
        self, cmd: FileComplaint, at: datetime, regions: RegionTree, institutions: Institutions
    ) -> None:
        region = regions.require_district(cmd.region, "region").code
        fact = ComplaintFiled(
            region=region,
            channel=choice(ComplaintChannel, cmd.channel, "channel"),
            institution_id=known_in(
                cmd.institution_id, region, regions, institutions, "institution_id"
            )
            if cmd.institution_id is not None
            else None,
            text=clean_text(cmd.text, "text", COMPLAINT_MAX, multiline=True),
        )
        self._record_once(fact, region, at)

    def resolve(self, substantiated: bool, note: str, at: datetime) -> None:
        fact = self._require_fact(at, "complaint")
        assert isinstance(fact, ComplaintFiled)
        note = clean_text(note, "note", NOTE_MAX, multiline=True)
        resolution = ComplaintResolved(
            institution_id=fact.institution_id, substantiated=substantiated, note=note
        )
        if self.resolution is not None:
            if self.resolution == resolution:
                return
            raise Conflict(f"complaint {self.id} is already resolved", field="id")
        assert self.received_at is not None
        if at < self.received_at:
            raise BadInput(
                f"{at.isoformat()} is before the complaint was received "
                f"({self.received_at.isoformat()})",
                field="occurred_at",
            )
        self._record(resolution, at)

    @event_dispatch
    def when(self, event: DomainEvent, at: datetime) -> None:
        super().when(event, at)

    @when.register
    def _(self, event: ComplaintFiled, at: datetime) -> None:
        self.fact = event
        self.region = event.region
        self.received_at = at

    @when.register
    def _(self, event: ComplaintResolved, at: datetime) -> None:
        self.resolution = event


class LawTalk(Once):
    def record(
        self, cmd: RecordLawTalk, at: datetime, regions: RegionTree, institutions: Institutions
    ) -> None:
        region = regions.require_district(cmd.region, "region").code
        if not 1 <= cmd.persons <= MAX_PERSONS:
            raise BadInput(f"persons is between 1 and {MAX_PERSONS:,}", field="persons")
        institution = (
            known_in(cmd.institution_id, region, regions, institutions, "institution_id")
            if cmd.institution_id is not None
            else None
        )
        fact = LawTalkRecorded(region=region, institution_id=institution, persons=cmd.persons)
        self._record_once(fact, region, at)

    @event_dispatch
    def when(self, event: DomainEvent, at: datetime) -> None:
        super().when(event, at)

    @when.register
    def _(self, event: LawTalkRecorded, at: datetime) -> None:
        self.fact = event
        self.region = event.region


class Penalty(Once):
    def impose(
        self,
        cmd: RecordPenalty,
        at: datetime,
        regions: RegionTree,
        institutions: Institutions,
        policy: InspectionPolicy,
    ) -> None:
        region = regions.require_district(cmd.region, "region").code
        institution_id, venue = _visited(
            "", cmd.institution_id, cmd.venue, region, regions, institutions
        )
        article = choice(PenaltyArticle, cmd.article, "article")
        kind = choice(PenaltyKind, cmd.kind, "kind")
        circumstance = choice(Circumstance, cmd.circumstance, "circumstance")
        gains = money(cmd.illegal_gains, "illegal_gains") if cmd.illegal_gains is not None else None
        fine = money(cmd.fine, "fine") if cmd.fine is not None else None
        if kind is PenaltyKind.FINE:
            if fine is None:
                raise BadInput("a FINE penalty needs the fine amount", field="fine")
            policy.check_fine(article, circumstance, fine, gains)
        elif fine is not None:
            raise BadInput(f"a {kind} penalty has no fine amount", field="fine")
        if kind is PenaltyKind.CONFISCATION and not gains:
            raise BadInput("confiscation needs the illegal gains", field="illegal_gains")
        fact = PenaltyImposed(
            region=region,
            institution_id=institution_id,
            venue=venue,
            article=article,
            circumstance=circumstance,
            kind=kind,
            fine_fen=to_fen(fine) if fine is not None else 0,
            illegal_gains_fen=to_fen(gains) if gains is not None else None,
            reason=clean_text(cmd.reason, "reason", NOTE_MAX, multiline=True),
        )
        self._record_once(fact, region, at)

    @event_dispatch
    def when(self, event: DomainEvent, at: datetime) -> None:
        super().when(event, at)

    @when.register
    def _(self, event: PenaltyImposed, at: datetime) -> None:
        self.fact = event
        self.region = event.region


MAX_YUAN = Decimal("1000000000000")


def money(value: Decimal | str, field: str) -> Decimal:
    """Exact yuan: non-negative, at most two decimals."""
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise BadInput(f"{value!r} is not an amount of yuan", field=field) from None
    if not amount.is_finite() or amount < 0 or amount >= MAX_YUAN:
        raise BadInput("an amount is between 0 and 999,999,999,999.99 yuan", field=field)
    if amount != amount.quantize(Decimal("0.01")):
        raise BadInput(f"{amount} has more than two decimals", field=field)
    return amount


def to_fen(amount: Decimal) -> int:
    return int(amount * 100)
