"""Comparing read models built over Kafka with a full replay of the event store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.bootstrap import build_projections
from services.common.audit import INSTITUTION_EVENTS
from services.common.config import Settings
from services.common.ports import EventStore, ReadStore
from services.common.projection import DEAD_LETTERS, ProjectionRunner
from services.common.regions import RegionTree
from services.common.sqlite import SQLiteReadStore
from services.registry.projections import (
    INSTITUTIONS,
    REGION_MONTHS,
    REGION_STATS,
)
from services.registry.settings import RegistrySettings

REGIONS = RegionTree.load()
POLICY = RegistrySettings(_env_file=None).policy()  # type: ignore[call-arg]
Snapshot = dict[str, list[dict[str, Any]]]


async def snapshot(store: ReadStore) -> Snapshot:
    """Every document of every read model, in key order."""
    names = (INSTITUTIONS, REGION_STATS, REGION_MONTHS, INSTITUTION_EVENTS, DEAD_LETTERS)
    result = {spec.name: await store.dump(spec.name) for spec in names}
    # The audit trail keeps the whole event, whose position is the source's: the event
    # store's global position there, offset + 1 here. Everything else must be identical.
    for doc in result[INSTITUTION_EVENTS.name]:
        doc["event"].pop("position", None)
    return result


async def prepare(store: ReadStore, settings: Settings) -> None:
    """Create the read-model collections, as the projector and the gateway do on start."""
    projections = build_projections(settings, REGIONS)
    specs = [DEAD_LETTERS, *(c for p in projections for c in p.collections)]
    await store.ensure(list({s.name: s for s in specs}.values()))


async def replayed(settings: Settings, events: EventStore, path: Path) -> Snapshot:
    """What the embedded runner builds from every event in ``events`` (a fresh SQLite file)."""
    reads = SQLiteReadStore(path)
    try:
        runner = ProjectionRunner(build_projections(settings, REGIONS), reads, {"registry": events})
        await runner.prepare()
        await runner.catch_up()
        return await snapshot(reads)
    finally:
        await reads.close()
