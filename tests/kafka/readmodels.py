"""Comparing read models built over Kafka with a full replay of the event stores."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.bootstrap import build_projections
from services.common.audit import INSTITUTION_EVENTS
from services.common.config import Settings
from services.common.ports import EventStore, ReadStore
from services.common.projection import REPLICAS, VERSIONS, ProjectionRunner, collections_of
from services.common.regions import RegionTree
from services.common.sqlite import SQLiteReadStore
from services.registry.settings import RegistrySettings

REGIONS = RegionTree.load()
POLICY = RegistrySettings(_env_file=None).policy()  # type: ignore[call-arg]
Snapshot = dict[str, list[dict[str, Any]]]


def read_models(settings: Settings | None = None) -> list[str]:
    """Every collection the platform's projections write, and the dead letters.

    Not the process managers' ``process_refusals``: they are not replayed (a replay sends
    no command), and what they made the services do is in the event stores, hence in the
    read models, all the same. Nor the projector replicas' heartbeats, nor which version
    of each projection built them (bookkeeping, not read models).
    """
    settings = settings or Settings(_env_file=None)  # type: ignore[call-arg]
    specs = collections_of(build_projections(settings, REGIONS))
    return [spec.name for spec in specs if spec not in (REPLICAS, VERSIONS)]


async def snapshot(store: ReadStore) -> Snapshot:
    """Every document of every read model, in key order."""
    result = {name: await store.dump(name) for name in read_models()}
    # The audit trail keeps the whole event, whose position is the source's: the event
    # store's global position there, offset + 1 here. Everything else must be identical.
    for doc in result[INSTITUTION_EVENTS.name]:
        doc["event"].pop("position", None)
    return result


async def prepare(store: ReadStore, settings: Settings) -> None:
    """Create the read-model collections, as the projector and the gateway do on start."""
    await store.ensure(collections_of(build_projections(settings, REGIONS)))


async def replayed(
    settings: Settings, events: Mapping[str, EventStore] | EventStore, path: Path
) -> Snapshot:
    """What the embedded runner builds from every event in ``events`` (each service's
    event store; a lone store is the registry's) into a fresh SQLite file, with the same
    projections as the projector (``build_projections``), no process manager."""
    stores = dict(events) if isinstance(events, Mapping) else {"registry": events}
    reads = SQLiteReadStore(path)
    try:
        runner = ProjectionRunner(build_projections(settings, REGIONS), reads, stores)
        await runner.prepare()
        await runner.catch_up()
        return await snapshot(reads)
    finally:
        await reads.close()
