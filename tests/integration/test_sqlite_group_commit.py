"""Group commit in the SQLite stores: concurrent writes share a transaction and an fsync,
yet each is all-or-nothing and version-checked on its own, and none is answered before
it is committed."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.common.errors import ConcurrencyConflict, Conflict
from services.common.sqlite import SQLiteDatabase, SQLiteEventStore
from tests.factories import commit


async def test_concurrent_commits_each_stand_or_fall_alone(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "events.db")
    await store.start()
    try:
        await store.append(commit("taken", 0), 0)
        duplicate = commit("dup-a", 0, count=3)
        await store.append([duplicate[0]], 0)  # dup-a's first event is stored

        good = [commit(f"s{n}", 0, count=2) for n in range(40)]
        stale = commit("taken", 0)  # expects version 0; the stream is at 1
        # Its second event reuses an id already stored: the first must not stay behind.
        half = commit("half", 0, count=2)
        half[1] = half[1].model_copy(update={"id": duplicate[0].id})
        results = await asyncio.gather(
            *(store.append(events, 0) for events in good[:20]),
            store.append(stale, 0),
            store.append(half, 0),
            *(store.append(events, 0) for events in good[20:]),
            return_exceptions=True,
        )
        assert isinstance(results[20], ConcurrencyConflict)
        assert isinstance(results[21], Conflict)
        stored = [r for r in results if isinstance(r, list)]
        assert len(stored) == 40
        assert await store.read_stream("half") == []  # rolled back whole, alone
        for events in good:
            assert [e.id for e in await store.read_stream(events[0].stream)] == [
                e.id for e in events
            ]
        positions = sorted(e.position for batch in stored for e in batch)
        assert positions == list(range(positions[0], positions[0] + 80))  # gapless, in order
    finally:
        await store.close()

    # A new process sees every answered commit: they were committed before the answer.
    again = SQLiteEventStore(tmp_path / "events.db")
    await again.start()
    try:
        assert len(await again.read_all(limit=1000)) == 1 + 1 + 80
    finally:
        await again.close()


async def test_writes_queued_together_share_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = SQLiteDatabase(tmp_path / "t.db")
    await database.write(lambda c: c.execute("CREATE TABLE t (n INTEGER UNIQUE)"))
    groups: list[int] = []
    commit_group = database._commit

    def counted(fns: Any) -> Any:
        groups.append(len(fns))
        return commit_group(fns)

    monkeypatch.setattr(database, "_commit", counted)

    def insert(n: int) -> Callable[[sqlite3.Connection], int]:
        def run(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO t VALUES (?)", (n,))
            return n

        return run

    def boom(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t VALUES (1000)")
        raise RuntimeError("the command's own failure")

    try:
        results = await asyncio.gather(
            *(database.write(insert(n)) for n in range(100)),
            database.write(boom),
            database.write(insert(5)),
            return_exceptions=True,
        )
        assert results[:100] == list(range(100))
        assert isinstance(results[100], RuntimeError)
        assert isinstance(results[101], sqlite3.IntegrityError)
        rows = await database.read(lambda c: c.execute("SELECT n FROM t ORDER BY n").fetchall())
        assert [n for (n,) in rows] == list(range(100))  # neither 1000 nor a second 5
        assert sum(groups) == 102 and len(groups) < 10  # a few transactions, not 102
    finally:
        await database.close()


@pytest.mark.parametrize("writers", [1, 32])
async def test_every_writer_gets_its_own_answer(tmp_path: Path, writers: int) -> None:
    database = SQLiteDatabase(tmp_path / "w.db")
    await database.write(lambda c: c.execute("CREATE TABLE w (k TEXT PRIMARY KEY, v INTEGER)"))

    async def writer(k: int) -> list[int]:
        answers = []
        for v in range(20):
            answers.append(
                await database.write(
                    lambda c, k=k, v=v: c.execute(
                        "INSERT INTO w VALUES (?, ?) RETURNING v", (f"{k}:{v}", v)
                    ).fetchone()[0]
                )
            )
        return answers

    try:
        answers = await asyncio.gather(*(writer(k) for k in range(writers)))
        assert answers == [list(range(20))] * writers
        count = await database.read(lambda c: c.execute("SELECT count(*) FROM w").fetchone()[0])
        assert count == 20 * writers
    finally:
        await database.close()


async def test_a_write_alone_that_fails_leaves_nothing_and_the_next_one_lands(
    tmp_path: Path,
) -> None:
    """One write in its round runs without a savepoint: its failure must still roll back
    what it wrote before it raised, and leave the connection ready for the next."""
    store = SQLiteEventStore(tmp_path / "events.db")
    await store.start()
    try:
        duplicate = commit("dup", 0)
        await store.append(duplicate, 0)
        half = commit("half", 0, count=2)
        half[1] = half[1].model_copy(update={"id": duplicate[0].id})
        with pytest.raises(Conflict):
            await store.append(half, 0)  # the first event went in, then the second failed
        assert await store.read_stream("half") == []
        assert len(await store.append(commit("after", 0), 0)) == 1
        assert [e.stream for e in await store.read_all()] == ["dup", "after"]
    finally:
        await store.close()
