"""Read models of inspection work, and what each document adds to the region roll-ups.

One document per batch (``inspections``), per (batch, institution) pair for the
institution filter (``inspection_institutions``), per rectification order
(``rectifications``), complaint, law talk and penalty, and per place ever inspected
(``inspected_places``, keyed ``<district>|<place>``: a registered institution, or a
venue within its district). ``institutionsInspected`` of a region is the number of those
keys under its code prefix, read from the key index: a place lies in one district, so it
counts once at every level however often it was visited, and the documents only ever
grow by increments, so projectors working on different partitions cannot lose a visit.

Overdue needs no event when a deadline passes: ``rectification_deadlines`` holds, per
region, how many orders not yet CLOSED fall due on each day (``due_20250131``), and a
read sums the days before today by whatever clock it is given.

``counters`` functions are pure, so the property tests recount from documents.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from services.common.aggregate import DomainEvent
from services.common.envelope import Envelope
from services.common.errors import MalformedEvent
from services.common.ports import CollectionSpec
from services.common.projection import Contribution, CounterKey, Projection, ProjectionUnit
from services.common.regions import RegionTree
from services.common.rollups import REGION_MONTHS, REGION_STATS, month_of, parts, spread
from services.common.text import normalise_key
from services.inspections.domain.events import (
    INSPECTION_EVENTS,
    SERVICE,
    ComplaintFiled,
    ComplaintResolved,
    InspectionRecorded,
    LawTalkRecorded,
    PenaltyImposed,
    RectificationSubmitted,
    RectificationVerified,
)
from services.inspections.domain.rules import InspectionKind, RectificationStatus

INSPECTIONS = CollectionSpec("inspections", indexes=("region", "kind", "started_at"))
INSPECTION_INSTITUTIONS = CollectionSpec(
    "inspection_institutions", indexes=("institution_id", "region", "started_at")
)
RECTIFICATIONS = CollectionSpec(
    "rectifications", indexes=("region", "institution_id", "status", "deadline")
)
RECTIFICATION_DEADLINES = CollectionSpec("rectification_deadlines")
COMPLAINTS = CollectionSpec(
    "complaints", indexes=("region", "institution_id", "status", "channel", "received_at")
)
LAW_TALKS = CollectionSpec("law_talks", indexes=("region",))
PENALTIES = CollectionSpec("penalties", indexes=("region", "institution_id"))
INSPECTED_PLACES = CollectionSpec("inspected_places")
"""Keyed ``<district>|<place>``: the places under a region are a key range, counted."""
MONTHLY_PLACES = CollectionSpec("inspected_places_monthly")
"""Keyed ``<YYYY-MM>|<district>|<place>``: the places inspected in a month, counted alike."""

PREFIX = "inspections_"  # of this service's counters in region_stats
DUE_PREFIX = "due_"

Doc = dict[str, Any]
Counters = Mapping[CounterKey, int]

# Which collection holds the stream (and its version) of each event type.
STREAM_COLLECTION: dict[type[DomainEvent], CollectionSpec] = {
    InspectionRecorded: INSPECTIONS,
    RectificationSubmitted: INSPECTIONS,
    RectificationVerified: INSPECTIONS,
    ComplaintFiled: COMPLAINTS,
    ComplaintResolved: COMPLAINTS,
    LawTalkRecorded: LAW_TALKS,
    PenaltyImposed: PENALTIES,
}

COLLECTION_OF_TYPE = {kind.TYPE: spec for kind, spec in STREAM_COLLECTION.items()}
# The events that also read the order they name (``prefetch``).
RECTIFICATION_TYPES = frozenset((RectificationSubmitted.TYPE, RectificationVerified.TYPE))


def place_key(institution_id: str | None, venue: str | None, region: str) -> str:
    """One inspected place: an institution, or a venue of a district (case and spaces
    folded, so "幸福小区 3栋" and "幸福小区3栋" are one flat)."""
    if institution_id is not None:
        return f"i:{institution_id}"
    return f"v:{region}:{normalise_key(venue or '')}"


def monthly_place_key(month: str, region: str, place: str) -> str:
    return f"{month}|{region}|{place}"


def due_field(deadline: str) -> str:
    return DUE_PREFIX + deadline.replace("-", "")


def overdue_in(deadlines: Doc | None, today: date) -> int:
    """Orders not CLOSED whose deadline is before ``today``, from a deadlines document."""
    if not deadlines:
        return 0
    cutoff = due_field(today.isoformat())
    return sum(
        count
        for name, count in deadlines.items()
        if name.startswith(DUE_PREFIX) and name < cutoff and isinstance(count, int)
    )


def inspection_counters(doc: Doc | None, regions: RegionTree) -> Counters:
    if doc is None:
        return {}
    findings = [f for visit in doc["visits"] for f in visit["findings"]]
    fields = {
        "inspections": 1,
        "personnel_dispatched": doc["personnel"],
        "visits": len(doc["visits"]),
        "findings": len(findings),
        "joint_actions": 1 if doc["kind"] == InspectionKind.JOINT else 0,
    }
    for finding in findings:
        name = f"finding_{finding['type'].lower()}"
        fields[name] = fields.get(name, 0) + 1
    # The month bucket has the same figures as the roll-up, unprefixed.
    month = {month_of(doc["started_at"]): dict(fields)}
    return spread(regions, PREFIX, doc["region"], fields, month)


def rectification_counters(doc: Doc | None, regions: RegionTree) -> Counters:
    if doc is None:
        return {}
    closed = doc["status"] == RectificationStatus.CLOSED
    return _rectification_share(
        regions.lineage_codes(doc["region"]),
        month_of(doc["opened_at"]),
        doc["deadline"],
        month_of(doc["closed_at"]) if closed else None,
    )


@functools.lru_cache(maxsize=1 << 12)
def _rectification_share(
    codes: tuple[str, ...], opened: str, deadline: str, closed: str | None
) -> Contribution:
    """What an order adds, from all it depends on (``closed``: the month it closed, if it
    did). Remembered: the orders of a batch share it, and submitting an order or failing
    its verification changes none of it. A contribution is only ever read, so one serves
    them all."""
    fields = {"rectifications_opened": 1, "rectifications_closed": int(closed is not None)}
    months: dict[str, dict[str, int]] = {}

    def add(month: str, name: str, value: int) -> None:
        counts = months.setdefault(month, {})
        counts[name] = counts.get(name, 0) + value

    add(opened, "rectifications_opened", 1)
    # Overdue at the end of a month: due in it or before, and not closed by its end. So +1
    # in the month of the deadline, and -1 in the month it closed (no earlier than that).
    due_month = deadline[:7]
    add(due_month, "rectifications_overdue_net", 1)
    if closed is not None:
        add(closed, "rectifications_closed", 1)
        add(max(due_month, closed), "rectifications_overdue_net", -1)
    shares = parts(PREFIX, fields, months)
    if closed is None:
        shares[(RECTIFICATION_DEADLINES.name, "")] = {due_field(deadline): 1}
    return Contribution(codes, shares)


def complaint_counters(doc: Doc | None, regions: RegionTree) -> Counters:
    if doc is None:
        return {}
    resolved = doc["status"] == "RESOLVED"
    fields = {
        "complaints": 1,
        "complaints_resolved": int(resolved),
        "complaints_substantiated": int(resolved and bool(doc["substantiated"])),
        f"complaints_channel_{doc['channel'].lower()}": 1,
    }
    channel = f"complaints_channel_{doc['channel'].lower()}"
    months = {month_of(doc["received_at"]): {"complaints": 1, channel: 1}}
    return spread(regions, PREFIX, doc["region"], fields, months)


def law_talk_counters(doc: Doc | None, regions: RegionTree) -> Counters:
    if doc is None:
        return {}
    fields = {"law_talks": doc["persons"], "law_talk_sessions": 1}
    return spread(regions, PREFIX, doc["region"], fields, {month_of(doc["held_at"]): fields})


def penalty_counters(doc: Doc | None, regions: RegionTree) -> Counters:
    if doc is None:
        return {}
    fields = {
        "penalties": 1,
        "fines_fen": doc["fine_fen"],
        f"penalties_{doc['kind'].lower()}": 1,
    }
    return spread(regions, PREFIX, doc["region"], fields, {month_of(doc["decided_at"]): fields})


class InspectionsProjection(Projection):
    name = "inspections.records"
    # 2: the month buckets' ``…_net`` standings and figures of the monthly report.
    version = 2
    sources = (SERVICE,)
    collections = (
        INSPECTIONS,
        INSPECTION_INSTITUTIONS,
        RECTIFICATIONS,
        RECTIFICATION_DEADLINES,
        COMPLAINTS,
        LAW_TALKS,
        PENALTIES,
        INSPECTED_PLACES,
        MONTHLY_PLACES,
        REGION_STATS,
        REGION_MONTHS,
    )

    def __init__(self, regions: RegionTree) -> None:
        self.regions = regions

    def prefetch(self, events: Sequence[Envelope]) -> Iterable[tuple[str, str]]:
        for event in events:
            if not self.handles(event):
                continue
            spec = COLLECTION_OF_TYPE.get(event.type)
            if spec is not None:
                yield spec.name, event.stream
            if event.type in RECTIFICATION_TYPES and isinstance(
                order := event.data.get("rectification"), str
            ):
                yield RECTIFICATIONS.name, order

    async def apply(self, event: Envelope, unit: ProjectionUnit) -> None:
        fact = INSPECTION_EVENTS.decode(event)
        spec = STREAM_COLLECTION[type(fact)]
        doc = await unit.get(spec.name, event.stream)
        known = doc["version"] if doc else 0
        if event.version <= known:
            return  # already applied (a redelivery)
        if event.version != known + 1:
            raise MalformedEvent(
                f"{event.stream} version {event.version} arrived after version {known}"
            )
        at = event.occurred_at.isoformat()
        match fact:
            case InspectionRecorded():
                await self._inspection(event, fact, unit)
            case RectificationSubmitted() | RectificationVerified():
                if doc is None:
                    raise MalformedEvent(f"{event.type} for {event.stream}, never recorded")
                await self._rectification(event, fact, at, unit)
                unit.put(INSPECTIONS.name, event.stream, doc, event.version)
            case ComplaintFiled():
                new: Doc = {
                    "region": fact.region,
                    "channel": fact.channel.value,
                    "institution_id": fact.institution_id,
                    "text": fact.text,
                    "status": "RECEIVED",
                    "received_at": at,
                    "resolved_at": None,
                    "substantiated": None,
                    "note": None,
                }
                self._replace(COMPLAINTS, event, None, new, complaint_counters, unit)
            case ComplaintResolved():
                if doc is None:
                    raise MalformedEvent(f"{event.type} for {event.stream}, never filed")
                new = {
                    **doc,
                    "status": "RESOLVED",
                    "resolved_at": at,
                    "substantiated": fact.substantiated,
                    "note": fact.note,
                }
                self._replace(COMPLAINTS, event, doc, new, complaint_counters, unit)
            case LawTalkRecorded():
                new = {
                    "region": fact.region,
                    "institution_id": fact.institution_id,
                    "persons": fact.persons,
                    "held_at": at,
                }
                self._replace(LAW_TALKS, event, None, new, law_talk_counters, unit)
            case PenaltyImposed():
                new = {
                    **fact.payload(),
                    "decided_at": at,
                }
                self._replace(PENALTIES, event, None, new, penalty_counters, unit)

    def _replace(
        self,
        spec: CollectionSpec,
        event: Envelope,
        before: Doc | None,
        after: Doc,
        counters: Any,
        unit: ProjectionUnit,
    ) -> None:
        regions = self.regions
        unit.replace(
            spec.name, event.stream, before, after, event.version, lambda d: counters(d, regions)
        )

    async def _inspection(
        self, event: Envelope, fact: InspectionRecorded, unit: ProjectionUnit
    ) -> None:
        payload = fact.payload()
        started = fact.started_at.isoformat()
        doc = {**payload, "started_at": started, "recorded_at": event.recorded_at.isoformat()}
        self._replace(INSPECTIONS, event, None, doc, inspection_counters, unit)
        visited: dict[str, int] = {}
        # The findings as ``Finding.model_dump(mode="json")`` gives them, from the payload
        # dumped already (shared with the batch's document: documents are never changed).
        dumped = payload["visits"]
        for n, visit in enumerate(fact.visits):
            key = place_key(visit.institution_id, visit.venue, fact.region)
            visited[key] = visited.get(key, 0) + 1
            if visit.institution_id is not None:
                pair = {
                    "inspection_id": event.stream,
                    "institution_id": visit.institution_id,
                    "region": fact.region,
                    "kind": fact.kind.value,
                    "started_at": started,
                }
                unit.put(
                    INSPECTION_INSTITUTIONS.name,
                    f"{event.stream}|{visit.institution_id}",
                    pair,
                    event.version,
                )
            if visit.rectification is not None:
                order = {
                    "inspection_id": event.stream,
                    "institution_id": visit.institution_id,
                    "venue": visit.venue,
                    "region": fact.region,
                    "findings": dumped[n]["findings"],
                    "deadline": fact.deadline.isoformat(),
                    "status": RectificationStatus.OPEN.value,
                    "failures": 0,
                    "opened_at": started,
                    "submitted_at": None,
                    "closed_at": None,
                    "note": None,
                }
                unit.replace(
                    RECTIFICATIONS.name,
                    visit.rectification,
                    None,
                    order,
                    event.version,
                    lambda d: rectification_counters(d, self.regions),
                )
        for key, visits in visited.items():
            # An increment, not a read-modify-write: batches of other streams may be
            # applied at the same time by another projector (another partition).
            unit.increment(INSPECTED_PLACES.name, f"{fact.region}|{key}", {"visits": visits})
            monthly = monthly_place_key(month_of(started), fact.region, key)
            unit.increment(MONTHLY_PLACES.name, monthly, {"visits": visits})

    async def _rectification(
        self,
        event: Envelope,
        fact: RectificationSubmitted | RectificationVerified,
        at: str,
        unit: ProjectionUnit,
    ) -> None:
        before = await unit.get(RECTIFICATIONS.name, fact.rectification)
        if before is None:
            raise MalformedEvent(f"{event.type} for unknown order {fact.rectification}")
        after = dict(before)
        if isinstance(fact, RectificationSubmitted):
            after.update(
                status=RectificationStatus.SUBMITTED.value, submitted_at=at, note=fact.note
            )
        elif fact.passed:
            after.update(status=RectificationStatus.CLOSED.value, closed_at=at, note=fact.note)
        else:
            after.update(
                status=RectificationStatus.OPEN.value, failures=fact.failures, note=fact.note
            )
        regions = self.regions
        unit.replace(
            RECTIFICATIONS.name,
            fact.rectification,
            before,
            after,
            event.version,
            lambda d: rectification_counters(d, regions),
        )
