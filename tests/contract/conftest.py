"""Adapters under contract. Every test in this folder runs once per adapter of its port.

MongoDB adapters run against an in-process fake here; against FerretDB (a MongoDB
wire-protocol server, ``tests/brokers/ferretdb.py``) through the real driver whenever Go
is there to build it (param ``ferretdb``, one server per session, a database per test);
and against a real MongoDB as well when ``SHUANGJIAN_TEST_MONGODB_URI`` is set (``mongo``).
The read store runs against the fake twice: as a standalone server (batches without
transactions) and as a replica set (``mongo-fake-replica-set``: each batch in a
transaction). FerretDB v1 has no transactions, so its read store is the standalone path
(``transactions="auto"`` finds none); the transactional path runs on the fake (and on a
real replica set), see ``tests/brokers/FERRETDB.md``. The few tests FerretDB cannot pass
are listed in ``FERRETDB_GAPS`` below, with the reason pytest reports for them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.common.mongo import MongoEventStore, MongoReadStore
from services.common.ports import EventStore, ReadStore
from services.common.sqlite import SQLiteEventStore, SQLiteReadStore
from tests.brokers import ferretdb
from tests.fakes.async_mongo import AsyncFakeClient

MONGODB_URI = os.environ.get("SHUANGJIAN_TEST_MONGODB_URI")

# A factory builds a store in ``tmp``; what it must undo afterwards goes on ``cleanup``;
# ``request`` gives it session fixtures (a server), asked for only by the tests that use it.
EventStoreFactory = Callable[[Path, AsyncExitStack, pytest.FixtureRequest], Awaitable[EventStore]]
ReadStoreFactory = Callable[[Path, AsyncExitStack, pytest.FixtureRequest], Awaitable[ReadStore]]


async def _sqlite_events(
    tmp: Path, cleanup: AsyncExitStack, _: pytest.FixtureRequest
) -> EventStore:
    return SQLiteEventStore(tmp / "events.db")


async def _sqlite_reads(tmp: Path, cleanup: AsyncExitStack, _: pytest.FixtureRequest) -> ReadStore:
    return SQLiteReadStore(tmp / "reads.db")


def _fake_database(*, replica_set: bool = False) -> AsyncDatabase[Any]:
    client = AsyncFakeClient(replica_set=replica_set)
    return cast(AsyncDatabase[Any], client["shuangjian_test"])


async def _server_database(uri: str, cleanup: AsyncExitStack) -> AsyncDatabase[Any]:
    """A fresh database per test on a real server, dropped afterwards."""
    return await cleanup.enter_async_context(ferretdb.scratch_database(uri))


def _ferretdb_uri(request: pytest.FixtureRequest) -> str:
    uri: str | None = request.getfixturevalue("ferretdb_uri")
    assert uri is not None, "the ferretdb param is only there when FerretDB is available"
    return uri


async def _fake_mongo_events(
    tmp: Path, cleanup: AsyncExitStack, _: pytest.FixtureRequest
) -> EventStore:
    return MongoEventStore(_fake_database(), "registry")


async def _fake_mongo_reads(
    tmp: Path, cleanup: AsyncExitStack, _: pytest.FixtureRequest
) -> ReadStore:
    return MongoReadStore(_fake_database(), transactions="auto")


async def _fake_replica_set_reads(
    tmp: Path, cleanup: AsyncExitStack, _: pytest.FixtureRequest
) -> ReadStore:
    return MongoReadStore(_fake_database(replica_set=True), transactions="on")


async def _ferretdb_events(
    tmp: Path, cleanup: AsyncExitStack, request: pytest.FixtureRequest
) -> EventStore:
    return MongoEventStore(await _server_database(_ferretdb_uri(request), cleanup), "registry")


async def _ferretdb_reads(
    tmp: Path, cleanup: AsyncExitStack, request: pytest.FixtureRequest
) -> ReadStore:
    # "auto" on purpose: it must find FerretDB's standalone-like ``hello`` (no setName).
    database = await _server_database(_ferretdb_uri(request), cleanup)
    return MongoReadStore(database, transactions="auto")


async def _mongo_events(tmp: Path, cleanup: AsyncExitStack, _: pytest.FixtureRequest) -> EventStore:
    assert MONGODB_URI is not None
    return MongoEventStore(await _server_database(MONGODB_URI, cleanup), "registry")


async def _mongo_reads(tmp: Path, cleanup: AsyncExitStack, _: pytest.FixtureRequest) -> ReadStore:
    assert MONGODB_URI is not None
    return MongoReadStore(await _server_database(MONGODB_URI, cleanup))


EVENT_STORES: dict[str, EventStoreFactory] = {
    "sqlite": _sqlite_events,
    "mongo-fake": _fake_mongo_events,
}
READ_STORES: dict[str, ReadStoreFactory] = {
    "sqlite": _sqlite_reads,
    "mongo-fake": _fake_mongo_reads,
    "mongo-fake-replica-set": _fake_replica_set_reads,
}
if ferretdb.available():
    EVENT_STORES["ferretdb"] = _ferretdb_events
    READ_STORES["ferretdb"] = _ferretdb_reads
if MONGODB_URI:
    EVENT_STORES["mongo"] = _mongo_events
    READ_STORES["mongo"] = _mongo_reads


@dataclass(frozen=True)
class Gap:
    """A contract test FerretDB cannot pass. ``raises``: how it fails, every time (the test
    runs as a strict xfail, so a FerretDB that gets it right is noticed); None: it races,
    and fails only sometimes, so it is skipped there."""

    reason: str
    raises: type[BaseException] | None = None


FERRETDB_GAPS: dict[str, Gap] = {
    "test_racing_writers_on_one_stream_exactly_one_wins": Gap(ferretdb.NOT_ATOMIC),
    "test_racing_retries_of_one_commit_all_get_the_stored_events": Gap(ferretdb.NOT_ATOMIC),
    # Passes there, but only because it cannot see two commits given the same positions.
    "test_positions_of_concurrent_commits_never_interleave": Gap(ferretdb.NOT_ATOMIC),
    "test_concurrent_batches_on_one_document_all_count": Gap(ferretdb.NOT_ATOMIC),
    "test_concurrent_decisions_on_one_stream_never_overwrite_each_other": Gap(ferretdb.NOT_ATOMIC),
}


def _mind_the_gap(request: pytest.FixtureRequest) -> None:
    """Skip or expect the failure of a test FerretDB cannot pass, naming why."""
    if request.param != "ferretdb":
        return
    gap = FERRETDB_GAPS.get(request.node.originalname)
    if gap is None:
        return
    if gap.raises is None:
        pytest.skip(gap.reason)
    request.applymarker(pytest.mark.xfail(raises=gap.raises, strict=True, reason=gap.reason))


def _params(names: dict[str, Any]) -> list[Any]:
    return [
        pytest.param(name, marks=pytest.mark.mongodb) if name == "mongo" else name
        for name in sorted(names)
    ]


@pytest.fixture(params=_params(EVENT_STORES))
async def event_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    _mind_the_gap(request)
    async with AsyncExitStack() as cleanup:
        store = await EVENT_STORES[request.param](tmp_path, cleanup, request)
        await store.start()
        yield store
        await store.close()


@pytest.fixture(params=_params(READ_STORES))
async def read_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ReadStore]:
    _mind_the_gap(request)
    async with AsyncExitStack() as cleanup:
        store = await READ_STORES[request.param](tmp_path, cleanup, request)
        yield store
        await store.close()
