"""Read models of the register: one document per institution, and region roll-ups.

``evolve`` folds an event into the institution document; ``counters`` says what the
document adds to the roll-ups of its district, city and province and to the monthly
buckets. Both are pure, so the property tests can recount from documents.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from operator import itemgetter
from typing import Any, NamedTuple

from services.common.envelope import Envelope
from services.common.errors import MalformedEvent
from services.common.ports import CollectionSpec, CountSpec
from services.common.projection import Contribution, CounterKey, Projection, ProjectionUnit
from services.common.regions import RegionTree
from services.common.rollups import REGION_MONTHS, REGION_STATS, parts
from services.common.timeutil import parse_datetime
from services.registry.domain.events import (
    REGISTRY_EVENTS,
    SERVICE,
    STATUS_AFTER,
    InstitutionApproved,
    InstitutionConvertedToNonProfit,
    InstitutionExited,
    InstitutionReclassified,
    InstitutionRegistered,
    InstitutionResumed,
    InstitutionRevoked,
    InstitutionSuspended,
    ListMarkSet,
    SuspensionRecommended,
    WarningCardIssued,
    is_credit_code_stream,
)
from services.registry.domain.rules import TERMINAL, Category, RegistryPolicy, Status

INSTITUTIONS = CollectionSpec(
    "institutions",
    indexes=("region", "status", "category", "mode", "list_mark", "credit_code", "registered_at"),
    search=("name",),
    counts=CountSpec("region", (2, 4, 6), ("status", "category", "mode", "list_mark")),
)

Doc = dict[str, Any]


def evolve(doc: Doc | None, event: Envelope) -> Doc:
    """The institution document after ``event``. Raises ``MalformedEvent`` if it cannot apply."""
    fact = REGISTRY_EVENTS.decode(event)
    at = event.occurred_at.isoformat()
    if isinstance(fact, InstitutionRegistered):
        if doc is not None:
            raise MalformedEvent(f"{event.stream} is registered twice")
        new: Doc = {
            "name": fact.name,
            "credit_code": fact.credit_code,
            "region": fact.region,
            "address": fact.address,
            "category": fact.category.value,
            "non_subject_kind": fact.non_subject_kind.value if fact.non_subject_kind else None,
            "mode": fact.mode.value,
            "non_profit": fact.non_profit,
            "converted_to_non_profit": False,
            "authority": fact.authority,
            "license_no": None,
            "list_mark": "NONE",
            "list_reason": None,
            "warnings": [],
            "status_reason": None,
            "suspension_recommended": None,
            "registered_at": at,
            "closed_at": None,
            "timeline": [],
        }
    else:
        if doc is None:
            raise MalformedEvent(f"{event.type} for {event.stream}, which is not registered")
        new = dict(doc)
        match fact:
            case InstitutionApproved(license_no=license_no):
                new.update(license_no=license_no)
            case InstitutionConvertedToNonProfit():
                new.update(non_profit=True, converted_to_non_profit=True)
            case InstitutionReclassified(category=category, non_subject_kind=kind):
                new.update(
                    category=category.value,
                    non_subject_kind=kind.value if kind else None,
                    authority=fact.authority,
                )
            case InstitutionSuspended(reason=reason):
                new.update(status_reason=reason)
            case InstitutionResumed():
                new.update(status_reason=None)
            case InstitutionRevoked(reason=reason) | InstitutionExited(reason=reason):
                new.update(status_reason=reason, closed_at=at)
            case ListMarkSet(mark=mark, reason=reason):
                new.update(list_mark=mark.value, list_reason=reason)
            case WarningCardIssued(color=color, reason=reason):
                card = {"color": color.value, "reason": reason, "issued_at": at}
                new["warnings"] = [*new["warnings"], card]
            case SuspensionRecommended(reason=reason):
                new["suspension_recommended"] = {"reason": reason, "at": at}
    if (status := STATUS_AFTER.get(type(fact))) is not None:
        new["status"] = status.value
    # Business-time history of what changed, so "active on day X" holds whatever order
    # back-dated events arrive in: each entry is one change, folded in occurred_at order.
    # Objects, not [at, field, value] lists: MongoDB-compatible stores such as FerretDB
    # refuse nested arrays.
    changes = [
        {"at": at, "field": field, "value": new[field]}
        for field in ("status", "category")
        if doc is None or new[field] != doc[field]
    ]
    new["timeline"] = [*new["timeline"], *changes]
    return new


def active_subject_on(doc: Doc, day: date) -> bool:
    """Was this a SUBJECT institution, registered and not closed, at the end of ``day``?

    Changes are applied in business-time order (stable for equal times, so the recording
    order breaks ties), whatever order they were recorded in.
    """
    # That order's last change of each field up to ``day``, found without sorting: a
    # change replaces the one kept unless it is earlier (so at equal times the one
    # recorded later wins, as it would be applied later).
    state: dict[str, tuple[datetime, str]] = {}
    for moment, field, value in map(_change, doc["timeline"]):
        if moment.day <= day:
            kept = state.get(field)
            if kept is None or moment.at >= kept[0]:
                state[field] = (moment.at, value)
    status, category = state.get("status"), state.get("category")
    return (
        status is not None
        and status[1] not in TERMINAL
        and category is not None
        and category[1] == SUBJECT
    )


def standing_by_month(doc: Doc) -> dict[str, dict[str, int]]:
    """How the institution moved the month-end stocks: ``institutions_active_net`` is +1 in
    the month it became active (registered) and -1 in the month it was revoked or exited;
    ``institutions_subject_net`` likewise for being an active SUBJECT institution.

    Summed over the months up to M, they give the stock at the end of M. Changes count in
    business-time order, like ``active_subject_on``.
    """
    months: dict[str, dict[str, int]] = {}
    state: dict[str, str] = {}
    active = subject = False
    # By the _Moment alone, so equal times keep their recorded order (``sorted`` is stable;
    # equal times have equal days and months). ``itemgetter``: no Python call per entry.
    for moment, field, value in sorted(map(_change, doc["timeline"]), key=itemgetter(0)):
        state[field] = value
        now_active = "status" in state and state["status"] not in TERMINAL
        now_subject = now_active and state.get("category") == SUBJECT
        if now_active != active:
            counts = months.setdefault(moment.month, {})
            counts[ACTIVE_NET] = counts.get(ACTIVE_NET, 0) + (1 if now_active else -1)
        if now_subject != subject:
            counts = months.setdefault(moment.month, {})
            counts[SUBJECT_NET] = counts.get(SUBJECT_NET, 0) + (1 if now_subject else -1)
        active, subject = now_active, now_subject
    return months


SUBJECT = Category.SUBJECT.value
ACTIVE_NET = "institutions_active_net"
SUBJECT_NET = "institutions_subject_net"


class _Moment(NamedTuple):
    """A timeline time, parsed once: when, its day and its ``YYYY-MM`` month in China."""

    at: datetime
    day: date
    month: str


def _change(entry: Any) -> tuple[_Moment, str, str]:
    """A timeline entry; read models built before entries were objects hold lists."""
    if isinstance(entry, dict):
        return _moment(entry["at"]), entry["field"], entry["value"]
    at, field, value = entry
    return _moment(at), field, value


@functools.lru_cache(maxsize=1 << 15)
def _moment(at: str) -> _Moment:
    """``at`` parsed, remembered: each change of the institution is read again at every
    later event of it (``counters`` folds the whole timeline)."""
    when = parse_datetime(at)  # in China's time already: its date and month are local
    return _Moment(when, when.date(), when.isoformat()[:7])


def counters(
    doc: Doc | None, regions: RegionTree, policy: RegistryPolicy
) -> Mapping[CounterKey, int]:
    """What one institution adds to the roll-ups of every level above it."""
    if doc is None:
        return {}
    status = Status(doc["status"])
    fields: dict[str, int] = {f"institutions_{status.value.lower()}": 1}
    if status not in TERMINAL:
        fields["institutions_active"] = 1
        fields[
            "institutions_subject" if doc["category"] == "SUBJECT" else "institutions_non_subject"
        ] = 1
        fields[f"institutions_{doc['mode'].lower()}"] = 1
    if doc["converted_to_non_profit"]:
        fields["institutions_converted_to_non_profit"] = 1
    if doc["list_mark"] == "BLACKLIST":
        fields["institutions_blacklisted"] = 1
    elif doc["list_mark"] == "WHITELIST":
        fields["institutions_whitelisted"] = 1
    if active_subject_on(doc, policy.baseline_for(doc["region"])):
        fields["institutions_subject_baseline"] = 1

    months = {month: dict(counts) for month, counts in standing_by_month(doc).items()}
    months.setdefault(_moment(doc["registered_at"]).month, {})["institutions_registered"] = 1
    if doc["closed_at"]:
        months.setdefault(_moment(doc["closed_at"]).month, {})["institutions_closed"] = 1
    return Contribution(regions.lineage_codes(doc["region"]), parts("", fields, months))


class InstitutionsProjection(Projection):
    name = "registry.institutions"
    # 2: the month buckets' ``…_net`` standings and figures of the monthly report.
    version = 2
    sources = (SERVICE,)
    collections = (INSTITUTIONS, REGION_STATS, REGION_MONTHS)

    def __init__(self, regions: RegionTree, policy: RegistryPolicy) -> None:
        self.regions = regions
        self.policy = policy

    def handles(self, event: Envelope) -> bool:
        """Institutions' events; a credit code's reservation is the command side's alone."""
        return event.service == SERVICE and not is_credit_code_stream(event.stream)

    def prefetch(self, events: Sequence[Envelope]) -> list[tuple[str, str]]:
        return [(INSTITUTIONS.name, e.stream) for e in events if self.handles(e)]

    async def apply(self, event: Envelope, unit: ProjectionUnit) -> None:
        doc = await unit.get(INSTITUTIONS.name, event.stream)
        known = doc["version"] if doc else 0
        if event.version <= known:
            return  # already in the document (a redelivery)
        if event.version != known + 1:
            raise MalformedEvent(
                f"{event.stream} version {event.version} arrived after version {known}"
            )
        unit.replace(
            INSTITUTIONS.name,
            event.stream,
            doc,
            evolve(doc, event),
            event.version,
            lambda d: counters(d, self.regions, self.policy),
        )
