"""The register's read side: plain query functions over the ``ReadStore`` port.

GraphQL, reports, import checks and the dashboard all read the register through these,
so a listing means the same everywhere. Documents are the projection's (see
``projections.evolve``); scoping by the caller's regions is the caller's first filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.common.errors import BadInput
from services.common.ports import AnyOf, Eq, Filter, Page, Prefix, Query, ReadStore, Search
from services.common.rollups import stats_fields
from services.registry.projections import INSTITUTIONS

SEARCH_MAX = 100
COUNTER_PREFIX = "institutions_"

Doc = dict[str, Any]


@dataclass(frozen=True)
class InstitutionFilter:
    """Which institutions to list. Every prefix must match (a scope and a chosen region)."""

    region_prefixes: Sequence[str] = ()
    # Which institutions, by id (another service's view: e.g. those at a risk level).
    ids: Filter | None = None
    category: str | None = None
    status: str | None = None
    mode: str | None = None
    list_mark: str | None = None
    search: str | None = None


async def institution(store: ReadStore, id: str) -> Doc | None:
    return await store.get(INSTITUTIONS.name, id)


async def institutions_by_id(store: ReadStore, ids: Sequence[str]) -> list[Doc | None]:
    """In the order asked, ``None`` where there is none (for batched loading)."""
    found = await store.get_many(INSTITUTIONS.name, ids)
    return [found.get(id) for id in ids]


async def institutions(
    store: ReadStore, where: InstitutionFilter, first: int, after: str | None = None
) -> Page:
    """A page of institutions ordered by id; the cursor of an item is its id."""
    filters: list[Filter | AnyOf] = [Prefix("region", p) for p in where.region_prefixes]
    if where.ids is not None:
        filters.append(where.ids)
    for name in ("category", "status", "mode", "list_mark"):
        if (value := getattr(where, name)) is not None:
            filters.append(Eq(name, value))
    if where.search and (text := where.search.strip()):
        if len(text) > SEARCH_MAX:
            raise BadInput(f"search is at most {SEARCH_MAX} characters", field="filter.search")
        # Name through the n-gram index (Latin letters in either case), or the exact code.
        filters.append(AnyOf((Search("name", text), Eq("credit_code", text.upper()))))
    return await store.find(Query(INSTITUTIONS.name, tuple(filters), first=first, after=after))


async def institution_regions(store: ReadStore, ids: Sequence[str]) -> dict[str, str]:
    """The district of every registered institution among ``ids`` (others are left out)."""
    found = await store.get_many(INSTITUTIONS.name, ids)
    return {id: doc["region"] for id, doc in found.items()}


def institution_counts(region_stats: Doc | None) -> dict[str, int]:
    """The register's counters of one ``region_stats`` document (``active``, ``subject``…)."""
    return stats_fields(region_stats, COUNTER_PREFIX)


def month_counts(month: Doc) -> dict[str, int]:
    """The register's counters of one ``region_months`` document."""
    return {
        "institutions_registered": month.get("institutions_registered", 0),
        "institutions_closed": month.get("institutions_closed", 0),
    }


def compression_rate(baseline: int, subject: int) -> float | None:
    """压减率: (baseline - subject) / baseline; ``None`` when the baseline is 0."""
    if not baseline:
        return None
    return (baseline - subject) / baseline


def month_end_counts(totals: Doc) -> dict[str, int]:
    """The register at the end of a month that has ended, from the month buckets summed
    up to it (``rollups.totals_through``): named as in ``institution_counts``."""
    return {
        "active": totals.get("institutions_active_net", 0),
        "subject": totals.get("institutions_subject_net", 0),
    }
