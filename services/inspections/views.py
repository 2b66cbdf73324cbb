"""The inspections read side: plain query functions over the ``ReadStore`` port.

GraphQL, reports and the dashboard read inspection work through these, and so does the
registry's warning rule (``rectification_overdue``, published by the module). Overdue is
judged against the ``today`` the caller passes (its clock), never stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from services.common.errors import BadInput
from services.common.ports import (
    AnyOf,
    Eq,
    Filter,
    In,
    Page,
    Prefix,
    Query,
    Range,
    ReadStore,
    encode_cursor,
)
from services.common.rollups import stats_fields
from services.common.timeutil import start_of_day
from services.inspections.domain.rules import RectificationStatus
from services.inspections.projections import (
    COMPLAINTS,
    INSPECTED_PLACES,
    INSPECTION_INSTITUTIONS,
    INSPECTIONS,
    LAW_TALKS,
    MONTHLY_PLACES,
    PENALTIES,
    PREFIX,
    RECTIFICATION_DEADLINES,
    RECTIFICATIONS,
    overdue_in,
)

Doc = dict[str, Any]
NOT_CLOSED = (RectificationStatus.OPEN.value, RectificationStatus.SUBMITTED.value)

__all__ = ["COMPLAINTS", "INSPECTIONS", "LAW_TALKS", "PENALTIES", "RECTIFICATIONS"]


def is_overdue(doc: Doc, today: date) -> bool:
    """Open or submitted, and its deadline has passed (judged by ``today``)."""
    return doc["status"] in NOT_CLOSED and doc["deadline"] < today.isoformat()


async def inspection_counts(
    store: ReadStore, code: str, subtree: str, region_stats: Doc | None, today: date
) -> dict[str, int]:
    """Every inspection counter of a region, overdue and distinct places included.

    ``code`` is the region, ``subtree`` the prefix of its subtree's codes
    (``RegionTree.subtree_prefix``), ``region_stats`` its roll-up document.
    """
    counts = stats_fields(region_stats, PREFIX)
    counts["rectifications_overdue"] = overdue_in(
        await store.get(RECTIFICATION_DEADLINES.name, code), today
    )
    counts["institutions_inspected"] = await places_inspected(store, subtree)
    return counts


async def places_inspected(store: ReadStore, subtree: str) -> int:
    """Distinct institutions and venues ever inspected under a subtree prefix (a count on
    the key index of ``inspected_places``)."""
    query = Query(INSPECTED_PLACES.name, (Prefix("id", subtree),), first=0)
    return (await store.find(query)).total


MONTH_FIGURES = (
    "inspections",
    "personnel_dispatched",
    "visits",
    "findings",
    "joint_actions",
    "rectifications_opened",
    "rectifications_closed",
    "complaints",
    "law_talks",
    "law_talk_sessions",
    "penalties",
)


def month_counts(month: Doc) -> dict[str, int]:
    """The inspection figures of one ``region_months`` document: those of
    ``MONTH_FIGURES``, and ``finding_<type>`` and ``complaints_channel_<channel>``."""
    counts = {name: month.get(name, 0) for name in MONTH_FIGURES}
    for name, value in month.items():
        if name.startswith(("finding_", "complaints_channel_")):
            counts[name] = value
    return counts


async def places_inspected_in(store: ReadStore, subtree: str, month: date) -> int:
    """Distinct institutions and venues inspected in ``month`` under a subtree prefix."""
    prefix = f"{month.isoformat()[:7]}|{subtree}"
    return (await store.find(Query(MONTHLY_PLACES.name, (Prefix("id", prefix),), first=0))).total


def rectification_rate(opened: int, closed: int) -> float | None:
    """整改率: closed / opened; ``None`` when none were opened."""
    if not opened:
        return None
    return closed / opened


def month_end_counts(totals: Doc) -> dict[str, int]:
    """Rectification orders at the end of a month that has ended, from the month buckets
    summed up to it (``rollups.totals_through``): named as in ``inspection_counts``."""
    return {
        "rectifications_opened": totals.get("rectifications_opened", 0),
        "rectifications_closed": totals.get("rectifications_closed", 0),
        "rectifications_overdue": totals.get("rectifications_overdue_net", 0),
    }


# --- listings -------------------------------------------------------------------------


@dataclass(frozen=True)
class InspectionFilter:
    region_prefixes: Sequence[str] = ()
    institution_id: str | None = None
    kind: str | None = None
    start: date | None = None  # started on or after
    end: date | None = None  # started on or before


async def inspection(store: ReadStore, id: str) -> Doc | None:
    return await store.get(INSPECTIONS.name, id)


async def inspections(
    store: ReadStore, where: InspectionFilter, first: int, after: str | None = None
) -> tuple[Page, list[str]]:
    """Batches in start order, with each one's cursor. With an institution, they are
    listed through the (batch, institution) pairs, whose cursors they carry."""
    filters: list[Filter | AnyOf] = [Prefix("region", p) for p in where.region_prefixes]
    if where.kind is not None:
        filters.append(Eq("kind", where.kind))
    if where.start is not None or where.end is not None:
        if where.start and where.end and where.end < where.start:
            raise BadInput("to is before from", field="filter.to")
        filters.append(
            Range(
                "started_at",
                gte=start_of_day(where.start).isoformat() if where.start else None,
                lt=_day_after(where.end) if where.end else None,
            )
        )
    if where.institution_id is None:
        page = await store.find(Query(INSPECTIONS.name, tuple(filters), "started_at", first, after))
        return page, [encode_cursor(doc["started_at"], doc["id"]) for doc in page.items]
    filters.append(Eq("institution_id", where.institution_id))
    pairs = await store.find(
        Query(INSPECTION_INSTITUTIONS.name, tuple(filters), "started_at", first, after)
    )
    found = await store.get_many(INSPECTIONS.name, [p["inspection_id"] for p in pairs.items])
    listed = [p for p in pairs.items if p["inspection_id"] in found]
    page = Page(
        [found[p["inspection_id"]] for p in listed], pairs.total, pairs.has_next, pairs.end_cursor
    )
    return page, [encode_cursor(p["started_at"], p["id"]) for p in listed]


def _day_after(day: date) -> str:
    return start_of_day(day + timedelta(days=1)).isoformat()


@dataclass(frozen=True)
class RectificationFilter:
    region_prefixes: Sequence[str] = ()
    institution_id: str | None = None
    status: str | None = None
    overdue: bool | None = None
    today: date | None = None  # what "overdue" is judged against


async def rectification(store: ReadStore, id: str) -> Doc | None:
    return await store.get(RECTIFICATIONS.name, id)


async def rectifications_by_id(store: ReadStore, ids: Sequence[str]) -> dict[str, Doc]:
    return await store.get_many(RECTIFICATIONS.name, ids)


async def rectifications(
    store: ReadStore, where: RectificationFilter, first: int, after: str | None = None
) -> Page:
    """Rectification orders by deadline."""
    filters: list[Filter | AnyOf] = [Prefix("region", p) for p in where.region_prefixes]
    if where.institution_id is not None:
        filters.append(Eq("institution_id", where.institution_id))
    if where.status is not None:
        filters.append(Eq("status", where.status))
    if where.overdue is not None:
        if where.today is None:
            raise ValueError("an overdue filter needs today's date")
        today = where.today.isoformat()
        if where.overdue:
            filters += [In("status", NOT_CLOSED), Range("deadline", lt=today)]
        else:
            filters.append(
                AnyOf(
                    (Eq("status", RectificationStatus.CLOSED.value), Range("deadline", gte=today))
                )
            )
    return await store.find(Query(RECTIFICATIONS.name, tuple(filters), "deadline", first, after))


async def rectification_overdue(store: ReadStore, institution_id: str, today: date) -> bool:
    """Has the institution a rectification order past its deadline, not CLOSED?"""
    filters: tuple[Filter | AnyOf, ...] = (
        Eq("institution_id", institution_id),
        In("status", NOT_CLOSED),
        Range("deadline", lt=today.isoformat()),
    )
    return (await store.find(Query(RECTIFICATIONS.name, filters, first=0))).total > 0


@dataclass(frozen=True)
class ComplaintFilter:
    region_prefixes: Sequence[str] = ()
    institution_id: str | None = None
    status: str | None = None
    channel: str | None = None


async def complaint(store: ReadStore, id: str) -> Doc | None:
    return await store.get(COMPLAINTS.name, id)


async def complaints(
    store: ReadStore, where: ComplaintFilter, first: int, after: str | None = None
) -> Page:
    """Complaints in the order they were received."""
    filters: list[Filter | AnyOf] = [Prefix("region", p) for p in where.region_prefixes]
    for name in ("institution_id", "status", "channel"):
        if (value := getattr(where, name)) is not None:
            filters.append(Eq(name, value))
    return await store.find(Query(COMPLAINTS.name, tuple(filters), "received_at", first, after))


async def penalty(store: ReadStore, id: str) -> Doc | None:
    return await store.get(PENALTIES.name, id)


async def penalties(
    store: ReadStore,
    region_prefixes: Sequence[str],
    institution_id: str | None,
    first: int,
    after: str | None = None,
) -> Page:
    filters: list[Filter | AnyOf] = [Prefix("region", p) for p in region_prefixes]
    if institution_id is not None:
        filters.append(Eq("institution_id", institution_id))
    return await store.find(Query(PENALTIES.name, tuple(filters), "decided_at", first, after))
