"""Adapters under contract. Every test in this folder runs once per adapter of its port.

MongoDB adapters run against an in-process fake here, and also against a real server
when ``SHUANGJIAN_TEST_MONGODB_URI`` is set. The read store runs against the fake twice:
as a standalone server (batches without transactions) and as a replica set (each batch
in a transaction).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, cast
from uuid import uuid4

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.common.mongo import MongoEventStore, MongoReadStore
from services.common.ports import EventStore, ReadStore
from services.common.sqlite import SQLiteEventStore, SQLiteReadStore
from tests.fakes.async_mongo import AsyncFakeClient

MONGODB_URI = os.environ.get("SHUANGJIAN_TEST_MONGODB_URI")

# A factory builds a store in ``tmp``; what it must undo afterwards goes on ``cleanup``.
EventStoreFactory = Callable[[Path, AsyncExitStack], Awaitable[EventStore]]
ReadStoreFactory = Callable[[Path, AsyncExitStack], Awaitable[ReadStore]]


async def _sqlite_events(tmp: Path, cleanup: AsyncExitStack) -> EventStore:
    return SQLiteEventStore(tmp / "events.db")


async def _sqlite_reads(tmp: Path, cleanup: AsyncExitStack) -> ReadStore:
    return SQLiteReadStore(tmp / "reads.db")


def _fake_database(*, replica_set: bool = False) -> AsyncDatabase[Any]:
    client = AsyncFakeClient(replica_set=replica_set)
    return cast(AsyncDatabase[Any], client["shuangjian_test"])


async def _server_database(cleanup: AsyncExitStack) -> AsyncDatabase[Any]:
    """A fresh database per test on the real server, dropped afterwards."""
    assert MONGODB_URI is not None
    client: AsyncMongoClient[Any] = AsyncMongoClient(MONGODB_URI, serverSelectionTimeoutMS=5000)
    name = f"shuangjian_test_{uuid4().hex}"
    cleanup.push_async_callback(client.close)
    cleanup.push_async_callback(client.drop_database, name)
    return client[name]


async def _fake_mongo_events(tmp: Path, cleanup: AsyncExitStack) -> EventStore:
    return MongoEventStore(_fake_database(), "registry")


async def _fake_mongo_reads(tmp: Path, cleanup: AsyncExitStack) -> ReadStore:
    return MongoReadStore(_fake_database(), transactions="auto")


async def _fake_replica_set_reads(tmp: Path, cleanup: AsyncExitStack) -> ReadStore:
    return MongoReadStore(_fake_database(replica_set=True), transactions="on")


async def _mongo_events(tmp: Path, cleanup: AsyncExitStack) -> EventStore:
    return MongoEventStore(await _server_database(cleanup), "registry")


async def _mongo_reads(tmp: Path, cleanup: AsyncExitStack) -> ReadStore:
    return MongoReadStore(await _server_database(cleanup))


EVENT_STORES: dict[str, EventStoreFactory] = {
    "sqlite": _sqlite_events,
    "mongo-fake": _fake_mongo_events,
}
READ_STORES: dict[str, ReadStoreFactory] = {
    "sqlite": _sqlite_reads,
    "mongo-fake": _fake_mongo_reads,
    "mongo-fake-replica-set": _fake_replica_set_reads,
}
if MONGODB_URI:
    EVENT_STORES["mongo"] = _mongo_events
    READ_STORES["mongo"] = _mongo_reads


def _params(names: dict[str, Any]) -> list[Any]:
    return [
        pytest.param(name, marks=pytest.mark.mongodb) if name == "mongo" else name
        for name in sorted(names)
    ]


@pytest.fixture(params=_params(EVENT_STORES))
async def event_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    async with AsyncExitStack() as cleanup:
        store = await EVENT_STORES[request.param](tmp_path, cleanup)
        await store.start()
        yield store
        await store.close()


@pytest.fixture(params=_params(READ_STORES))
async def read_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ReadStore]:
    async with AsyncExitStack() as cleanup:
        store = await READ_STORES[request.param](tmp_path, cleanup)
        yield store
        await store.close()
