"""Adapters under contract. Every test in this folder runs once per adapter of its port.

MongoDB adapters run against an in-process fake here, and also against a real server
when ``SHUANGJIAN_TEST_MONGODB_URI`` is set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from services.common.ports import EventStore, ReadStore
from services.common.sqlite import SQLiteEventStore, SQLiteReadStore

EventStoreFactory = Callable[[Path], Awaitable[EventStore]]
ReadStoreFactory = Callable[[Path], Awaitable[ReadStore]]


async def _sqlite_events(tmp: Path) -> EventStore:
    return SQLiteEventStore(tmp / "events.db")


async def _sqlite_reads(tmp: Path) -> ReadStore:
    return SQLiteReadStore(tmp / "reads.db")


EVENT_STORES: dict[str, EventStoreFactory] = {"sqlite": _sqlite_events}
READ_STORES: dict[str, ReadStoreFactory] = {"sqlite": _sqlite_reads}


@pytest.fixture(params=sorted(EVENT_STORES))
async def event_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    store = await EVENT_STORES[request.param](tmp_path)
    await store.start()
    yield store
    await store.close()


@pytest.fixture(params=sorted(READ_STORES))
async def read_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ReadStore]:
    store = await READ_STORES[request.param](tmp_path)
    yield store
    await store.close()
