"""Recount roll-ups from institution documents, to compare with the incremental counters."""

from __future__ import annotations

from collections import Counter
from typing import Any

from services.common.ports import ReadStore
from services.common.regions import RegionTree
from services.registry.domain.rules import RegistryPolicy
from services.registry.projections import REGION_MONTHS, REGION_STATS, counters


def recount(
    docs: list[dict[str, Any]], regions: RegionTree, policy: RegistryPolicy
) -> dict[tuple[str, str], dict[str, int]]:
    totals: Counter[tuple[str, str, str]] = Counter()
    for doc in docs:
        totals.update(counters(doc, regions, policy))
    result: dict[tuple[str, str], dict[str, int]] = {}
    for (collection, key, name), value in totals.items():
        if value:
            result.setdefault((collection, key), {})[name] = value
    return result


async def stored_rollups(
    store: ReadStore, prefix: str = "institutions_"
) -> dict[tuple[str, str], dict[str, int]]:
    """The register's counters in the shared roll-ups (other services add their own)."""
    result: dict[tuple[str, str], dict[str, int]] = {}
    for collection in (REGION_STATS.name, REGION_MONTHS.name):
        for doc in await store.dump(collection):
            values = {k: v for k, v in doc.items() if k.startswith(prefix) and v}
            if values:
                result[(collection, doc["id"])] = values
    return result
