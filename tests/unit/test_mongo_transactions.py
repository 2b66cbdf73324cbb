"""MongoReadStore commits a batch in one transaction where the deployment has them.

Against the in-process fake: as a replica set it runs real (serialised) transactions that
an abort undoes; as a standalone server it has none.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from services.common.errors import Unavailable
from services.common.mongo import MongoReadStore, Transactions
from services.common.ports import Batch, CollectionSpec, Increment, Put
from tests.fakes.async_mongo import AsyncFakeClient

DOCS = CollectionSpec("institutions", indexes=("region",))
COUNTERS = CollectionSpec("region_stats")


async def store_on(
    *, replica_set: bool, transactions: Transactions = "auto"
) -> tuple[MongoReadStore, AsyncFakeClient]:
    client = AsyncFakeClient(replica_set=replica_set)
    store = MongoReadStore(
        cast(AsyncDatabase[Any], client["shuangjian_test"]), transactions=transactions
    )
    await store.ensure([DOCS, COUNTERS])
    return store, client


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


@pytest.mark.parametrize("transactions", ["auto", "on"])
async def test_a_batch_failing_at_its_last_step_changes_nothing_in_a_transaction(
    monkeypatch: pytest.MonkeyPatch, transactions: Transactions
) -> None:
    store, _ = await store_on(replica_set=True, transactions=transactions)
    await store.commit(seed())
    before = await state(store)
    fail_positions_update(monkeypatch, store, RuntimeError("lost the primary"))

    with pytest.raises(RuntimeError, match="lost the primary"):
        await store.commit(spanning())

    assert await state(store) == before


@pytest.mark.parametrize(
    ("replica_set", "transactions"), [(False, "auto"), (False, "off"), (True, "off")]
)
async def test_without_transactions_a_failed_batch_is_half_applied_and_replay_completes_it(
    monkeypatch: pytest.MonkeyPatch, replica_set: bool, transactions: Transactions
) -> None:
    """Today's path, kept: the steps before the failure stay; replaying finishes the batch."""
    store, _ = await store_on(replica_set=replica_set, transactions=transactions)
    await store.commit(seed())
    before = await state(store)
    fail_positions_update(monkeypatch, store, RuntimeError("lost the primary"))

    with pytest.raises(RuntimeError):
        await store.commit(spanning())
    half = await state(store)
    assert half[:2] != before[:2] and half[2] == 1

    await store.commit(spanning())
    assert await state(store) == await replayed_once()


async def replayed_once() -> tuple[Any, ...]:
    store, _ = await store_on(replica_set=False, transactions="off")
    await store.commit(seed())
    await store.commit(spanning())
    return await state(store)


async def test_on_against_a_standalone_server_is_unavailable_naming_the_setting() -> None:
    store, _ = await store_on(replica_set=False, transactions="on")
    with pytest.raises(Unavailable, match="mongodb_transactions") as err:
        await store.commit(seed())
    assert "SHUANGJIAN_MONGODB_TRANSACTIONS" in err.value.message
    assert await state(store) == ([], [], 0)
    with pytest.raises(Unavailable):  # every time, never a silent fall-back
        await store.commit(seed())


async def test_auto_on_a_standalone_server_starts_no_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, client = await store_on(replica_set=False)

    def no_sessions(**_: Any) -> Any:
        raise AssertionError("a standalone server has no transactions")

    monkeypatch.setattr(client, "start_session", no_sessions)
    await store.commit(seed())
    await store.commit(spanning())
    assert await state(store) == await replayed_once()


@pytest.mark.parametrize(
    "hello",
    [
        {"setName": "rs0", "isWritablePrimary": True, "ok": 1.0},
        {"msg": "isdbgrid", "isWritablePrimary": True, "ok": 1.0},  # mongos
    ],
)
async def test_auto_detects_transactions_once(
    monkeypatch: pytest.MonkeyPatch, hello: dict[str, Any]
) -> None:
    store, client = await store_on(replica_set=True)
    asked: list[int] = []

    def reply() -> dict[str, Any]:
        asked.append(1)
        return hello

    monkeypatch.setattr(client, "_hello", reply)
    await store.commit(seed())
    before = await state(store)
    fail_positions_update(monkeypatch, store, RuntimeError("boom"))
    with pytest.raises(RuntimeError):
        await store.commit(spanning())
    assert await state(store) == before  # it was a transaction
    assert asked == [1]


async def test_a_transient_transaction_error_runs_the_batch_again() -> None:
    store, _ = await store_on(replica_set=True)
    await store.commit(seed())
    transient = OperationFailure(
        "WriteConflict", code=112, details={"errorLabels": ["TransientTransactionError"]}
    )
    with pytest.MonkeyPatch.context() as patch:
        calls = fail_positions_update(patch, store, transient)
        await store.commit(spanning())
    assert len(calls) == 2
    assert await state(store) == await replayed_once()


async def test_a_duplicate_key_inside_a_transaction_retries_the_whole_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server aborts the transaction on a duplicate key, so the batch starts over."""
    store, client = await store_on(replica_set=True)
    await store.commit(seed())
    coll = client["shuangjian_test"]["institutions"]._sync  # under the fake's transaction
    original = coll.insert_one
    failures = [DuplicateKeyError("E11000 duplicate key error", 11000)]

    def insert_one(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if failures:
            raise failures.pop()  # after writing: the abort must undo it
        return result

    monkeypatch.setattr(coll, "insert_one", insert_one)
    await store.commit(spanning())
    assert await state(store) == await replayed_once()


async def test_readers_never_see_a_batch_half_applied_in_a_transaction() -> None:
    assert await half_batches_seen(replica_set=True) == 0
    # The same reader does catch the standalone path half way, so it can tell.
    assert await half_batches_seen(replica_set=False) > 0


async def half_batches_seen(*, replica_set: bool) -> int:
    """Reads of both documents the batch puts, in one query each, while it commits."""
    store, _ = await store_on(replica_set=replica_set)
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
