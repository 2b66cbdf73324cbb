"""The region roll-ups every service contributes to, and the views that read them.

``region_stats`` holds one document per region code with every service's counters, each
prefixed by what it counts (``institutions_active``, later ``inspections_…``);
``region_months`` one per region and month (``640400:2021-09``). Projections add to them
through contributions (``ProjectionUnit.contribute``), so a roll-up is one key lookup.

A month bucket holds what happened in the month (flows) and, for what a region *has*
(active institutions, overdue orders, risk levels), the month's net change, named
``…_net``: summed over every month up to M (``totals_through``) it is the standing at the
end of M, back-dated facts included, with no snapshot to keep.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from services.common.errors import BadInput
from services.common.ports import CollectionSpec, Prefix, Query, ReadStore
from services.common.projection import Contribution
from services.common.regions import RegionTree
from services.common.timeutil import parse_datetime

REGION_STATS = CollectionSpec("region_stats")
REGION_MONTHS = CollectionSpec("region_months")
MAX_MONTHS = 240


@functools.lru_cache(maxsize=1 << 15)
def month_of(at: str) -> str:
    """The ``YYYY-MM`` month, in China, of an ISO date-time (remembered: a document's
    months are computed again for every event that changes it)."""
    return parse_datetime(at).isoformat()[:7]


def month_key(region: str, month: str) -> str:
    """The ``region_months`` key of a region and a ``YYYY-MM`` month."""
    return f"{region}:{month}"


def spread(
    regions: RegionTree,
    prefix: str,
    region: str,
    fields: Mapping[str, int],
    months: Mapping[str, Mapping[str, int]],
) -> Contribution:
    """What a district's document adds to every level above it: its ``fields`` (named
    ``<prefix><field>`` in ``region_stats``) and its month buckets (``{"2023-05": {...}}``),
    as ``(collection, key, counter)`` contributions (``ProjectionUnit.contribute``)."""
    return Contribution(regions.lineage_codes(region), parts(prefix, fields, months))


def parts(
    prefix: str, fields: Mapping[str, int], months: Mapping[str, Mapping[str, int]]
) -> dict[tuple[str, str], dict[str, int]]:
    """``Contribution.parts`` of ``spread``'s fields and month buckets (zeros left out)."""
    result: dict[tuple[str, str], dict[str, int]] = {}
    named = {prefix + name: value for name, value in fields.items() if value}
    if named:
        result[(REGION_STATS.name, "")] = named
    for month, counts in months.items():
        dated = {name: value for name, value in counts.items() if value}
        if dated:
            result[(REGION_MONTHS.name, month_key("", month))] = dated
    return result


def stats_fields(doc: Mapping[str, Any] | None, prefix: str) -> dict[str, int]:
    """Counters of one roll-up document that start with ``prefix``, without it."""
    if not doc:
        return {}
    return {k[len(prefix) :]: v for k, v in doc.items() if k.startswith(prefix)}


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


async def region_counters(store: ReadStore, code: str) -> dict[str, Any]:
    """Every counter of a region's subtree (empty when nothing was counted there)."""
    return await store.get(REGION_STATS.name, code) or {}


async def region_months(
    store: ReadStore, code: str, months: Sequence[date]
) -> list[dict[str, Any]]:
    """The counters of each month, in the order asked (empty for a month with none)."""
    keys = [month_key(code, month.isoformat()[:7]) for month in months]
    found = await store.get_many(REGION_MONTHS.name, keys)
    return [found.get(key) or {} for key in keys]


async def all_months(store: ReadStore, code: str) -> dict[str, dict[str, Any]]:
    """Every month bucket of a region, by ``YYYY-MM`` (a key range: a few hundred at most)."""
    found: dict[str, dict[str, Any]] = {}
    after: str | None = None
    while True:
        query = Query(REGION_MONTHS.name, (Prefix("id", f"{code}:"),), first=500, after=after)
        page = await store.find(query)
        for doc in page.items:
            found[doc["id"].rsplit(":", 1)[1]] = doc
        if not page.has_next:
            return found
        after = page.end_cursor


def totals_through(months: Mapping[str, Mapping[str, Any]], month: date) -> dict[str, int]:
    """Every counter summed over the buckets up to and including ``month``."""
    last = month.isoformat()[:7]
    totals: dict[str, int] = {}
    for name, doc in months.items():
        if name > last:
            continue
        for field, value in doc.items():
            if field not in ("id", "version") and type(value) is int:
                totals[field] = totals.get(field, 0) + value
    return totals
