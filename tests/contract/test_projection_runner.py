"""Projections over every ReadStore adapter: exactly once, resumable, rebuildable, parking."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from uuid import uuid4

import pytest

from services.common.application import CommandContext
from services.common.envelope import Envelope
from services.common.ports import ReadStore
from services.common.projection import DEAD_LETTERS, ProjectionRunner, project
from services.common.regions import RegionTree
from services.common.sqlite import SQLiteEventStore
from services.common.timeutil import SHANGHAI
from services.registry.domain.commands import ApproveInstitution
from services.registry.domain.rules import RegistryPolicy
from services.registry.handlers import Registry
from services.registry.module import no_rectifications
from services.registry.projections import INSTITUTIONS, InstitutionsProjection
from tests.factories import numbered_registration
from tests.rollups import recount, stored_rollups

REGIONS = RegionTree.load()
POLICY = RegistryPolicy()
COLLECTIONS = [c.name for c in InstitutionsProjection.collections]


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = SQLiteEventStore(tmp_path / "registry.events.db")
    await store.start()
    yield Registry(store, REGIONS, POLICY, rectification_overdue=no_rectifications)
    await store.close()


async def register_many(registry: Registry, count: int, start: int = 0) -> None:
    ctx = CommandContext(actor="test")
    for n in range(start, start + count):
        await registry.handle(numbered_registration(n), ctx)
        if n % 2 == 0:
            await registry.handle(ApproveInstitution(id=f"i{n:03d}", license_no=f"L{n}"), ctx)


async def snapshot(store: ReadStore) -> dict[str, list[dict[str, object]]]:
    return {name: await store.dump(name) for name in COLLECTIONS}


def runner_for(registry: Registry, read_store: ReadStore) -> ProjectionRunner:
    return ProjectionRunner(
        [InstitutionsProjection(REGIONS, POLICY)], read_store, {"registry": registry.store}
    )


async def test_rollups_equal_a_recount_at_every_level(
    registry: Registry, read_store: ReadStore
) -> None:
    await register_many(registry, 24)
    runner = runner_for(registry, read_store)
    await runner.start()

    docs = await read_store.dump(INSTITUTIONS.name)
    assert len(docs) == 24
    assert await stored_rollups(read_store) == recount(docs, REGIONS, POLICY)
    guyuan = await read_store.get("region_stats", "640400")
    assert guyuan is not None and guyuan["institutions_active"] == 12


async def test_redelivered_events_change_nothing(registry: Registry, read_store: ReadStore) -> None:
    """Guarantee 5: every event delivered twice gives identical read models."""
    await register_many(registry, 16)
    runner = runner_for(registry, read_store)
    await runner.start()
    before = await snapshot(read_store)

    everything = await registry.store.read_all(limit=10_000)
    projection = runner.projections[0]
    await project(projection, read_store, "registry", everything, start=0)
    await project(projection, read_store, "registry", everything[5:20], start=0)

    assert await snapshot(read_store) == before


async def test_rebuild_by_replay_gives_the_same_documents(
    registry: Registry, read_store: ReadStore
) -> None:
    """Guarantee 6."""
    await register_many(registry, 20)
    runner = runner_for(registry, read_store)
    await runner.start()
    before = await snapshot(read_store)

    await runner.rebuild(runner.projections[0])

    assert await snapshot(read_store) == before
    assert before["institutions"] and before["region_stats"]


async def test_a_new_runner_resumes_from_the_stored_position(
    registry: Registry, read_store: ReadStore
) -> None:
    await register_many(registry, 8)
    first = runner_for(registry, read_store)
    await first.start()
    await first.stop()

    await register_many(registry, 4, start=8)
    second = runner_for(registry, read_store)
    await second.start()

    docs = await read_store.dump(INSTITUTIONS.name)
    assert len(docs) == 12
    assert await stored_rollups(read_store) == recount(docs, REGIONS, POLICY)
    assert second.position("registry.institutions", "registry") == (
        await registry.store.max_position()
    )


async def test_an_unusable_event_is_parked_and_the_stream_goes_on(
    registry: Registry, read_store: ReadStore
) -> None:
    """Guarantee 7."""
    await register_many(registry, 2)
    stray = Envelope(
        id=uuid4(),
        type="registry.InstitutionApproved",
        stream="ghost",
        version=1,
        region="640402",
        occurred_at=datetime(2021, 1, 1, tzinfo=SHANGHAI),
        recorded_at=datetime(2021, 1, 1, tzinfo=SHANGHAI),
        data={"license_no": "L-ghost"},
    )
    garbled = stray.model_copy(update={"id": uuid4(), "stream": "i000", "version": 3, "data": {}})
    await registry.store.append([stray], expected_version=0)
    await registry.store.append([garbled], expected_version=2)
    await register_many(registry, 2, start=2)

    runner = runner_for(registry, read_store)
    await runner.start()

    parked = await read_store.dump(DEAD_LETTERS.name)
    assert sorted(p["event"]["stream"] for p in parked) == ["ghost", "i000"]
    assert any("not registered" in p["reason"] for p in parked)
    assert any("license_no" in p["reason"] for p in parked)
    assert await read_store.get(INSTITUTIONS.name, "ghost") is None
    assert len(await read_store.dump(INSTITUTIONS.name)) == 4
    docs = await read_store.dump(INSTITUTIONS.name)
    assert await stored_rollups(read_store) == recount(docs, REGIONS, POLICY)
