"""MongoReadStore commits a batch in one transaction where the deployment has them.

Transactions run only on the in-process fake playing a replica set (param
``mongo-fake-replica-set``), which runs real (serialised) transactions that an abort
undoes: FerretDB v1 has no transactions (``tests/brokers/FERRETDB.md``), and a real
replica set is exercised by the contract suite when ``SHUANGJIAN_TEST_MONGODB_URI`` names
one. The standalone path (no transactions) runs on the fake as a standalone server
(``mongo-fake``) and on FerretDB through the real driver (``ferretdb``, when Go is there
to build it), whose ``hello`` must be what makes ``"auto"`` go without them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, cast

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from services.common.errors import Unavailable
from services.common.mongo import MongoReadStore, Transactions
from services.common.ports import Batch, CollectionSpec, Increment, Put
from tests.brokers import ferretdb
from tests.fakes.async_mongo import AsyncFakeClient, AsyncFakeCollection

DOCS = CollectionSpec("institutions", indexes=("region",))
COUNTERS = CollectionSpec("region_stats")

# Makes an empty read store on one server, with the given ``transactions`` setting.
StoreOn = Callable[[Transactions], Awaitable[MongoReadStore]]
STANDALONE = ["mongo-fake", *(["ferretdb"] if ferretdb.available() else [])]


async def _store(database: Any, transactions: Transactions) -> MongoReadStore:
    store = MongoReadStore(cast(AsyncDatabase[Any], database), transactions=transactions)
    await store.ensure([DOCS, COUNTERS])
    return store


def fake(*, replica_set: bool) -> StoreOn:
    async def store_on(transactions: Transactions) -> MongoReadStore:
        return await _store(
            AsyncFakeClient(replica_set=replica_set)["shuangjian_test"], transactions
        )

    return store_on


@pytest.fixture(params=STANDALONE)
async def standalone(request: pytest.FixtureRequest) -> AsyncIterator[StoreOn]:
    """Stores on a server without transactions: the fake as a standalone server, or
    FerretDB (each store in a database of its own there, dropped after the test)."""
    if request.param == "mongo-fake":
        yield fake(replica_set=False)
        return
    uri = request.getfixturevalue("ferretdb_uri")
    async with AsyncExitStack() as cleanup:

        async def store_on(transactions: Transactions) -> MongoReadStore:
            database = await cleanup.enter_async_context(ferretdb.scratch_database(uri))
            return await _store(database, transactions)

        yield store_on


@pytest.fixture(params=["mongo-fake-replica-set"])
def replica_set(request: pytest.FixtureRequest) -> StoreOn:
    """Stores on a replica set: only the fake, since FerretDB v1 has no transactions."""
    return fake(replica_set=True)


def seed() -> Batch:
    return Batch(
        "p",
        "registry",
        1,
        puts=[Put("institutions", "a", {"name": "甲"}, 1)],
        increments=[Increment("region_stats", "640402", {"active": 1}, 1)],
    )


def spanning() -> Batch:
    """Changes an existing document and counter, and creates one of each."""
    return Batch(
        "p",
        "registry",
        3,
        puts=[
            Put("institutions", "a", {"name": "甲 renamed"}, 2),
            Put("institutions", "b", {"name": "乙"}, 1),
        ],
        increments=[
            Increment("region_stats", "640402", {"active": 1}, 2),
            Increment("region_stats", "640400", {"active": 1}, 3),
        ],
    )


async def state(store: MongoReadStore) -> tuple[Any, ...]:
    return (
        await store.dump("institutions"),
        await store.dump("region_stats"),
        await store.position("p", "registry"),
    )


async def replayed_once(store_on: StoreOn) -> tuple[Any, ...]:
    """What seed and spanning give, committed once each without transactions."""
    store = await store_on("off")
    await store.commit(seed())
    await store.commit(spanning())
    return await state(store)


def fail_positions_update(
    monkeypatch: pytest.MonkeyPatch, store: MongoReadStore, error: Exception, times: int = 1
) -> list[int]:
    """Make the batch's last step (the position) fail ``times`` times; count the calls."""
    original = store.positions.update_one
    calls: list[int] = []

    async def update_one(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return await original(*args, **kwargs)

    monkeypatch.setattr(store.positions, "update_one", update_one)
    return calls


async def half_applied_then_replayed(
    monkeypatch: pytest.MonkeyPatch, store: MongoReadStore
) -> None:
    """A batch failing at its last step leaves the steps before it; replaying finishes it."""
    await store.commit(seed())
    before = await state(store)
    with monkeypatch.context() as patch:
        fail_positions_update(patch, store, RuntimeError("lost the primary"))
        with pytest.raises(RuntimeError):
            await store.commit(spanning())
    half = await state(store)
    assert half[:2] != before[:2] and half[2] == 1

    await store.commit(spanning())


# --- without transactions: the fake as a standalone server, and FerretDB -----------------


@pytest.mark.parametrize("transactions", ["auto", "off"])
async def test_without_transactions_a_failed_batch_is_half_applied_and_replay_completes_it(
    monkeypatch: pytest.MonkeyPatch, standalone: StoreOn, transactions: Transactions
) -> None:
    store = await standalone(transactions)
    await half_applied_then_replayed(monkeypatch, store)
    assert await state(store) == await replayed_once(standalone)


async def test_on_against_a_standalone_server_is_unavailable_naming_the_setting(
    standalone: StoreOn,
) -> None:
    store = await standalone("on")
    with pytest.raises(Unavailable, match="mongodb_transactions") as err:
        await store.commit(seed())
    assert "SHUANGJIAN_MONGODB_TRANSACTIONS" in err.value.message
    assert await state(store) == ([], [], 0)
    with pytest.raises(Unavailable):  # every time, never a silent fall-back
        await store.commit(seed())


async def test_auto_on_a_standalone_server_starts_no_session(
    monkeypatch: pytest.MonkeyPatch, standalone: StoreOn
) -> None:
    store = await standalone("auto")

    def no_sessions(**_: Any) -> Any:
        raise AssertionError("a standalone server has no transactions")

    monkeypatch.setattr(store.db.client, "start_session", no_sessions)
    await store.commit(seed())
    await store.commit(spanning())
    assert await state(store) == await replayed_once(standalone)


# --- with transactions: the fake as a replica set (FerretDB v1 has none) -----------------


@pytest.mark.parametrize("transactions", ["auto", "on"])
async def test_a_batch_failing_at_its_last_step_changes_nothing_in_a_transaction(
    monkeypatch: pytest.MonkeyPatch, replica_set: StoreOn, transactions: Transactions
) -> None:
    store = await replica_set(transactions)
    await store.commit(seed())
    before = await state(store)
    fail_positions_update(monkeypatch, store, RuntimeError("lost the primary"))

    with pytest.raises(RuntimeError, match="lost the primary"):
        await store.commit(spanning())

    assert await state(store) == before


async def test_off_on_a_replica_set_is_half_applied_and_replay_completes_it(
    monkeypatch: pytest.MonkeyPatch, replica_set: StoreOn
) -> None:
    """``"off"`` takes the standalone path even where transactions are there."""
    store = await replica_set("off")
    await half_applied_then_replayed(monkeypatch, store)
    assert await state(store) == await replayed_once(fake(replica_set=False))


@pytest.mark.parametrize(
    "hello",
    [
        {"setName": "rs0", "isWritablePrimary": True, "ok": 1.0},
        {"msg": "isdbgrid", "isWritablePrimary": True, "ok": 1.0},  # mongos
    ],
)
async def test_auto_detects_transactions_once(
    monkeypatch: pytest.MonkeyPatch, replica_set: StoreOn, hello: dict[str, Any]
) -> None:
    store = await replica_set("auto")
    asked: list[int] = []

    def reply() -> dict[str, Any]:
        asked.append(1)
        return hello

    monkeypatch.setattr(store.db.client, "_hello", reply)
    await store.commit(seed())
    before = await state(store)
    fail_positions_update(monkeypatch, store, RuntimeError("boom"))
    with pytest.raises(RuntimeError):
        await store.commit(spanning())
    assert await state(store) == before  # it was a transaction
    assert asked == [1]


async def test_a_transient_transaction_error_runs_the_batch_again(replica_set: StoreOn) -> None:
    store = await replica_set("auto")
    await store.commit(seed())
    transient = OperationFailure(
        "WriteConflict", code=112, details={"errorLabels": ["TransientTransactionError"]}
    )
    with pytest.MonkeyPatch.context() as patch:
        calls = fail_positions_update(patch, store, transient)
        await store.commit(spanning())
    assert len(calls) == 2
    assert await state(store) == await replayed_once(fake(replica_set=False))


async def test_a_duplicate_key_inside_a_transaction_retries_the_whole_batch(
    monkeypatch: pytest.MonkeyPatch, replica_set: StoreOn
) -> None:
    """A server aborts the transaction on a duplicate key, so the batch starts over."""
    store = await replica_set("auto")
    await store.commit(seed())
    # Under the fake's transaction:
    coll = cast(AsyncFakeCollection, store.db["institutions"])._sync
    original = coll.insert_one
    failures = [DuplicateKeyError("E11000 duplicate key error", 11000)]

    def insert_one(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if failures:
            raise failures.pop()  # after writing: the abort must undo it
        return result

    monkeypatch.setattr(coll, "insert_one", insert_one)
    await store.commit(spanning())
    assert await state(store) == await replayed_once(fake(replica_set=False))


async def test_readers_never_see_a_batch_half_applied_in_a_transaction(
    replica_set: StoreOn,
) -> None:
    assert await half_batches_seen(await replica_set("auto")) == 0
    # The same reader does catch the fake's standalone path half way, so it can tell.
    assert await half_batches_seen(await fake(replica_set=False)("auto")) > 0


async def half_batches_seen(store: MongoReadStore) -> int:
    """Reads of both documents the batch puts, in one query each, while it commits."""
    await store.commit(seed())
    done = asyncio.Event()
    half = 0

    async def read() -> None:
        nonlocal half
        while not done.is_set():
            docs = {doc["id"]: doc for doc in await store.dump("institutions")}
            half += docs["a"]["version"] == 2 and "b" not in docs
            half += docs["a"]["version"] == 1 and "b" in docs

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    await store.commit(spanning())
    done.set()
    await reader
    return half
