"""A rebuild's reset of MongoDB read models, cut short by a crash at every step.

``MongoReadStore.reset`` is several writes. Whatever a crash leaves of them, restarting
(a runner that resumes from the stored positions) must end with the documents an
uninterrupted replay gives, and running the rebuild again must finish it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.common.application import CommandContext
from services.common.mongo import MongoReadStore
from services.common.projection import ProjectionRunner
from services.common.regions import RegionTree
from services.common.sqlite import SQLiteEventStore
from services.registry.domain.commands import ApproveInstitution, ExitInstitution
from services.registry.domain.rules import RegistryPolicy
from services.registry.handlers import Registry
from services.registry.module import no_rectifications
from services.registry.projections import InstitutionsProjection
from tests.factories import numbered_registration
from tests.fakes.async_mongo import AsyncFakeClient, AsyncFakeCollection
from tests.rollups import recount, stored_rollups

REGIONS = RegionTree.load()
POLICY = RegistryPolicy()
PROJECTION = InstitutionsProjection.name
COLLECTIONS = [c.name for c in InstitutionsProjection.collections]


class Crash(Exception):
    """The process died here."""


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = SQLiteEventStore(tmp_path / "registry.events.db")
    await store.start()
    registry = Registry(store, REGIONS, POLICY, rectification_overdue=no_rectifications)
    ctx = CommandContext(actor="test")
    for n in range(16):
        await registry.handle(numbered_registration(n), ctx)
        if n % 2 == 0:
            await registry.handle(ApproveInstitution(id=f"i{n:03d}", license_no=f"L{n}"), ctx)
        if n % 4 == 0:
            await registry.handle(ExitInstitution(id=f"i{n:03d}", reason="停办"), ctx)
    yield registry
    await store.close()


def runner(registry: Registry, store: MongoReadStore) -> ProjectionRunner:
    return ProjectionRunner(
        [InstitutionsProjection(REGIONS, POLICY)], store, {"registry": registry.store}
    )


async def projected(registry: Registry, *, replica_set: bool) -> MongoReadStore:
    """A fresh MongoDB read store with every event applied."""
    database = cast(AsyncDatabase[Any], AsyncFakeClient(replica_set=replica_set)["t"])
    store = MongoReadStore(database)
    first = runner(registry, store)
    await first.start()
    await first.stop()
    return store


async def snapshot(store: MongoReadStore) -> dict[str, list[dict[str, Any]]]:
    return {name: await store.dump(name) for name in COLLECTIONS}


def crash_at(monkeypatch: pytest.MonkeyPatch, step: int | None) -> list[str]:
    """Every ``delete_many`` is one step of the reset; the one numbered ``step`` deletes
    half of what it matches (a server can die part-way through one) and then crashes.
    Returns the collections the steps ran on."""
    original = AsyncFakeCollection.delete_many
    steps: list[str] = []

    async def delete_many(self: AsyncFakeCollection, filter: Any, **kwargs: Any) -> Any:
        steps.append(self.name)
        if len(steps) != step:
            return await original(self, filter, **kwargs)
        matching = sorted(doc["_id"] for doc in self._sync.find(filter, {"_id": 1}))
        half = matching[: len(matching) // 2]
        await original(self, {"_id": {"$in": half}}, **kwargs)
        raise Crash(f"killed during step {step} ({self.name})")

    monkeypatch.setattr(AsyncFakeCollection, "delete_many", delete_many)
    return steps


@pytest.mark.parametrize("replica_set", [False, True], ids=["standalone", "replica-set"])
async def test_a_crash_at_any_step_of_a_reset_is_repaired_by_a_restart(
    registry: Registry, replica_set: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = await projected(registry, replica_set=replica_set)
    expected = await snapshot(reference)
    assert expected["institutions"] and expected["region_stats"] and expected["region_months"]
    last = await registry.store.max_position()

    with monkeypatch.context() as counting:
        steps = crash_at(counting, None)
        await reference.reset(PROJECTION, COLLECTIONS)
    assert await snapshot(reference) == {name: [] for name in COLLECTIONS}
    assert len(steps) >= 2

    for step in range(1, len(steps) + 1):
        store = await projected(registry, replica_set=replica_set)
        with monkeypatch.context() as crashing:
            crash_at(crashing, step)
            with pytest.raises(Crash):
                await runner(registry, store).rebuild(runner(registry, store).projections[0])

        restarted = runner(registry, store)
        await restarted.start()  # resumes from whatever positions the crash left
        await restarted.stop()
        repaired = await snapshot(store)
        assert repaired == expected, f"after a crash in step {step} of {steps}"
        assert await store.position(PROJECTION, "registry") == last
        assert await stored_rollups(store) == recount(repaired["institutions"], REGIONS, POLICY)

        again = runner(registry, store)  # and the rebuild, run again, finishes
        await again.prepare()
        await again.rebuild(again.projections[0])
        assert await snapshot(store) == expected, f"rebuilt again after step {step}"
