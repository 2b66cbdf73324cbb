"""MongoDB positions are taken before the insert: readers must not skip a late commit.

Runs on the in-process fake (``mongo-fake``) and on FerretDB through the real driver
(``ferretdb``, when Go is there to build it; see ``tests/brokers/ferretdb.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.common.mongo import MongoEventStore
from tests.brokers import ferretdb
from tests.factories import commit
from tests.fakes.async_mongo import AsyncFakeClient

SERVERS = ["mongo-fake", *(["ferretdb"] if ferretdb.available() else [])]


@pytest.fixture(params=SERVERS)
async def database(request: pytest.FixtureRequest) -> AsyncIterator[AsyncDatabase[Any]]:
    """An empty database: on the fake, or one of its own on the session's FerretDB."""
    if request.param == "mongo-fake":
        yield cast(AsyncDatabase[Any], AsyncFakeClient()["t"])
        return
    async with ferretdb.scratch_database(request.getfixturevalue("ferretdb_uri")) as db:
        yield db


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_read_all_waits_at_a_gap_until_it_is_settled(database: AsyncDatabase[Any]) -> None:
    clock = Clock()
    store = MongoEventStore(database, "registry", gap_grace=5.0, clock=clock)
    await store.start()
    await store.append(commit("a", 0, 1), expected_version=0)  # position 1
    # Another writer took positions 2-3 and has not inserted its commit yet.
    await store.counters.find_one_and_update({"_id": "positions"}, {"$inc": {"value": 2}})
    await store.append(commit("b", 0, 2), expected_version=0)  # positions 4-5

    assert [e.position for e in await store.read_all()] == [1]
    assert await store.read_all(after_position=1) == []

    clock.now += 6  # the writer never came back: its positions stay empty for good
    assert [e.position for e in await store.read_all(after_position=1)] == [4, 5]
    assert [e.position for e in await store.read_all()] == [1, 4, 5]
