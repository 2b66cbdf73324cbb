"""A rebuild's reset of MongoDB read models, cut short by a crash at every step.

``MongoReadStore.reset`` is several writes. Whatever a crash leaves of them, restarting
(a runner that resumes from the stored positions) must end with the documents an
uninterrupted replay gives, and running the rebuild again must finish it.

Runs on the in-process fake as a standalone server and as a replica set, and on FerretDB
through the real driver (``ferretdb``, when Go is there to build it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, cast

import pytest
from pymongo.asynchronous.collection import AsyncCollection
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
from tests.brokers import ferretdb
from tests.factories import numbered_registration
from tests.fakes.async_mongo import AsyncFakeClient, AsyncFakeCollection
from tests.rollups import recount, stored_rollups

REGIONS = RegionTree.load()
POLICY = RegistryPolicy()
PROJECTION = InstitutionsProjection.name
COLLECTIONS = [c.name for c in InstitutionsProjection.collections]


NewDatabase = Callable[[], Awaitable[AsyncDatabase[Any]]]
SERVERS = [
    "mongo-fake",
    "mongo-fake-replica-set",
    *(["ferretdb"] if ferretdb.available() else []),
]


class Crash(Exception):
    """The process died here."""


@pytest.fixture(params=SERVERS)
async def new_database(request: pytest.FixtureRequest) -> AsyncIterator[NewDatabase]:
    """Makes empty databases on one server: the fake (as either deployment) or FerretDB,
    where each is a database of its own, dropped after the test."""
    async with AsyncExitStack() as cleanup:

        async def new() -> AsyncDatabase[Any]:
            if request.param == "ferretdb":
                uri = request.getfixturevalue("ferretdb_uri")
                return await cleanup.enter_async_context(ferretdb.scratch_database(uri))
            client = AsyncFakeClient(replica_set=request.param == "mongo-fake-replica-set")
            return cast(AsyncDatabase[Any], client["t"])

        yield new


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


async def projected(registry: Registry, new_database: NewDatabase) -> MongoReadStore:
    """A fresh MongoDB read store with every event applied."""
    store = MongoReadStore(await new_database())
    first = runner(registry, store)
    await first.start()
    await first.stop()
    return store


async def snapshot(store: MongoReadStore) -> dict[str, list[dict[str, Any]]]:
    return {name: await store.dump(name) for name in COLLECTIONS}


def crash_at(monkeypatch: pytest.MonkeyPatch, step: int | None) -> list[str]:
    """Every ``delete_many`` is one step of the reset; the one numbered ``step`` deletes
    half of what it matches (a server can die part-way through one) and then crashes.
    Returns the collections the steps ran on. Patches the fake's collection and PyMongo's
    alike, whichever the test runs on."""
    steps: list[str] = []
    for cls in (AsyncFakeCollection, AsyncCollection):
        monkeypatch.setattr(cls, "delete_many", _crashing(cls.delete_many, steps, step))
    return steps


def _crashing(
    original: Callable[..., Awaitable[Any]], steps: list[str], step: int | None
) -> Callable[..., Awaitable[Any]]:
    async def delete_many(self: Any, filter: Any, **kwargs: Any) -> Any:
        steps.append(self.name)
        if len(steps) != step:
            return await original(self, filter, **kwargs)
        matching = sorted(doc["_id"] for doc in await self.find(filter, {"_id": 1}).to_list())
        half = matching[: len(matching) // 2]
        await original(self, {"_id": {"$in": half}}, **kwargs)
        raise Crash(f"killed during step {step} ({self.name})")

    return delete_many


async def test_a_crash_at_any_step_of_a_reset_is_repaired_by_a_restart(
    registry: Registry, new_database: NewDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = await projected(registry, new_database)
    expected = await snapshot(reference)
    assert expected["institutions"] and expected["region_stats"] and expected["region_months"]
    last = await registry.store.max_position()

    with monkeypatch.context() as counting:
        steps = crash_at(counting, None)
        await reference.reset(PROJECTION, COLLECTIONS)
    assert await snapshot(reference) == {name: [] for name in COLLECTIONS}
    assert len(steps) >= 2

    for step in range(1, len(steps) + 1):
        store = await projected(registry, new_database)
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
