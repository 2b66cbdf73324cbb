"""Event store throughput: ``SQLiteEventStore`` against raw ``sqlite3`` on the same table.

Append: N single-event commits and M ten-event commits. The baseline runs the same
INSERTs with the same pragmas (WAL, synchronous=FULL), one ``BEGIN IMMEDIATE`` ...
``COMMIT`` per commit, directly in the calling thread, with bodies serialised up front.
A NORMAL-sync raw run shows what the per-commit fsync costs, and a raw run that also
issues the store's two checking SELECTs separates SQL work from Python overhead.

Read: ``read_all`` paging 1000 events at a time against the same raw SELECT.

Each append case runs on a fresh database file; cases are interleaved over ``ROUNDS``
rounds and the median round is reported.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from uuid import UUID

from bench._common import (
    Stopwatch,
    Throughput,
    console,
    print_machine,
    quiet_logs,
    throughput_table,
)
from services.common.envelope import Envelope
from services.common.sqlite import SQLiteEventStore
from services.common.timeutil import SHANGHAI

SEED = 20261123
N_SINGLE = 2000
N_BATCH = 300
BATCH_SIZE = 10
WARMUP_COMMITS = 50
READ_PAGE = 1000
READ_PASSES = 5
ROUNDS = 3

T0 = datetime(2021, 7, 24, 9, 0, tzinfo=SHANGHAI)

Commit = list[Envelope]
Row = tuple[str, str, int, str]

INSERT = "INSERT INTO events (id, stream, version, body) VALUES (?, ?, ?, ?)"
SELECT_PAGE = "SELECT position, body FROM events WHERE position > ? ORDER BY position LIMIT ?"


# --- workload ----------------------------------------------------------------------------


def make_commits(rng: random.Random, prefix: str, commits: int, size: int) -> list[Commit]:
    """``commits`` new streams of ``size`` events each, with seeded ids and payloads."""
    result: list[Commit] = []
    for n in range(commits):
        stream = f"{prefix}-{n:05d}"
        region = rng.choice(["640402", "640422", "120101", "500105", "340103"])
        result.append(
            [
                Envelope(
                    id=UUID(int=rng.getrandbits(128), version=4),
                    type="registry.InstitutionRegistered",
                    stream=stream,
                    version=version,
                    region=region,
                    occurred_at=T0,
                    recorded_at=T0,
                    actor="bench",
                    correlation_id=str(UUID(int=rng.getrandbits(128), version=4)),
                    data={
                        "name": f"启明学科培训学校{n:05d}",
                        "credit_code": f"52{region}MA{rng.randrange(10**7):07d}X",
                        "region": region,
                        "address": f"宁夏回族自治区固原市原州区{rng.randrange(1, 300)}号",
                        "category": "SUBJECT",
                        "non_subject_kind": None,
                        "mode": "OFFLINE",
                        "non_profit": False,
                        "authority": "EDUCATION",
                        "n": version,
                    },
                )
                for version in range(1, size + 1)
            ]
        )
    return result


def as_rows(commits: Sequence[Commit]) -> list[list[Row]]:
    """What the store writes per event, serialised exactly as the store does it."""
    return [
        [(str(e.id), e.stream, e.version, e.model_dump_json(exclude={"position"})) for e in commit]
        for commit in commits
    ]


# --- raw sqlite3 --------------------------------------------------------------------------


def store_schema(path: Path) -> list[str]:
    """The DDL the store created (tables and indexes), to give the baseline the same shape."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
            "ORDER BY type DESC, name"
        ).fetchall()
    finally:
        conn.close()
    return [sql for (sql,) in rows]


def raw_connect(path: Path, synchronous: str, schema: Sequence[str]) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    for ddl in schema:
        conn.execute(ddl)
    return conn


def raw_append(conn: sqlite3.Connection, commits: Sequence[Sequence[Row]]) -> None:
    """One IMMEDIATE transaction per commit, one INSERT per event."""
    for rows in commits:
        conn.execute("BEGIN IMMEDIATE")
        for row in rows:
            conn.execute(INSERT, row)
        conn.execute("COMMIT")


def raw_append_checked(conn: sqlite3.Connection, commits: Sequence[Sequence[Row]]) -> None:
    """As ``raw_append`` plus the store's two SELECTs (retry check, stream version)."""
    for rows in commits:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("SELECT version FROM events WHERE id = ?", (rows[0][0],)).fetchone()
        conn.execute(
            "SELECT coalesce(max(version), 0) FROM events WHERE stream = ?", (rows[0][1],)
        ).fetchone()
        for row in rows:
            conn.execute(INSERT, row)
        conn.execute("COMMIT")


def raw_read_all(conn: sqlite3.Connection, decode: bool) -> int:
    """Page through every event; with ``decode``, build each page of Envelopes as the store
    does (keeping a page alive matters: allocation and GC roughly double the decode cost)."""
    after, count = 0, 0
    while True:
        rows = conn.execute(SELECT_PAGE, (after, READ_PAGE)).fetchall()
        if not rows:
            return count
        if decode:
            page = [Envelope.model_validate_json(body).with_position(pos) for pos, body in rows]
            assert len(page) == len(rows)
        after, count = rows[-1][0], count + len(rows)


async def store_read_all(store: SQLiteEventStore) -> int:
    after, count = 0, 0
    while True:
        events = await store.read_all(after_position=after, limit=READ_PAGE)
        if not events:
            return count
        after, count = events[-1].position or 0, count + len(events)


# --- cases -------------------------------------------------------------------------------

AppendCase = Callable[[Path, list[Commit], list[Commit]], Awaitable[tuple[float, float]]]


async def case_store(
    path: Path, singles: list[Commit], batches: list[Commit]
) -> tuple[float, float]:
    store = SQLiteEventStore(path)
    await store.start()
    try:
        for commit in make_commits(random.Random(SEED + 1), "warm", WARMUP_COMMITS, 1):
            await store.append(commit, 0)
        with Stopwatch() as one:
            for commit in singles:
                await store.append(commit, 0)
        with Stopwatch() as ten:
            for commit in batches:
                await store.append(commit, 0)
    finally:
        await store.close()
    return one.seconds, ten.seconds


def raw_case(
    schema: Sequence[str],
    synchronous: str,
    append: Callable[[sqlite3.Connection, Sequence[Sequence[Row]]], None],
) -> AppendCase:
    async def run(path: Path, singles: list[Commit], batches: list[Commit]) -> tuple[float, float]:
        single_rows, batch_rows = as_rows(singles), as_rows(batches)
        warm = as_rows(make_commits(random.Random(SEED + 1), "warm", WARMUP_COMMITS, 1))
        conn = raw_connect(path, synchronous, schema)
        try:
            append(conn, warm)
            with Stopwatch() as one:
                append(conn, single_rows)
            with Stopwatch() as ten:
                append(conn, batch_rows)
        finally:
            conn.close()
        return one.seconds, ten.seconds

    return run


async def main() -> None:
    quiet_logs()
    rng = random.Random(SEED)
    singles = make_commits(rng, "one", N_SINGLE, 1)
    batches = make_commits(rng, "ten", N_BATCH, BATCH_SIZE)

    with tempfile.TemporaryDirectory(prefix="bench-es-") as tmp:
        root = Path(tmp)
        probe = SQLiteEventStore(root / "schema.db")
        await probe.start()
        await probe.close()
        schema = store_schema(root / "schema.db")

        raw_full = "raw sqlite3, WAL + FULL"
        raw_normal = "raw sqlite3, WAL + NORMAL"
        raw_checked = "raw sqlite3, WAL + FULL + store's 2 SELECTs"
        store_name = "SQLiteEventStore.append (FULL)"
        cases: dict[str, AppendCase] = {
            raw_full: raw_case(schema, "FULL", raw_append),
            raw_normal: raw_case(schema, "NORMAL", raw_append),
            raw_checked: raw_case(schema, "FULL", raw_append_checked),
            store_name: case_store,
        }
        timings: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for round_no in range(ROUNDS):
            for index, (name, case) in enumerate(cases.items()):
                path = root / f"r{round_no}-c{index}.db"
                timings[name].append(await case(path, singles, batches))

        # read_all: the store's file from the last round holds warm-up + every commit.
        # The three readers take turns, pass by pass, so drift hits them alike.
        store_path = root / f"r{ROUNDS - 1}-c{list(cases).index(store_name)}.db"
        store = SQLiteEventStore(store_path)
        await store.start()
        conn = raw_connect(store_path, "FULL", ())
        reads = {"store": 0.0, "raw": 0.0, "raw+decode": 0.0}
        counts = dict.fromkeys(reads, 0)
        try:
            await store_read_all(store)  # warm the page cache and the reader thread
            for _ in range(READ_PASSES):
                with Stopwatch() as sw:
                    counts["store"] += await store_read_all(store)
                reads["store"] += sw.seconds
                for label, decode in (("raw", False), ("raw+decode", True)):
                    with Stopwatch() as sw:
                        counts[label] += raw_read_all(conn, decode)
                    reads[label] += sw.seconds
        finally:
            conn.close()
            await store.close()
        events = counts["store"]
        assert set(counts.values()) == {events}, counts

    def median(name: str, which: int) -> float:
        return statistics.median(t[which] for t in timings[name])

    rows = [
        Throughput(f"{N_SINGLE}×1-event: {raw_full}", N_SINGLE, median(raw_full, 0)),
    ]
    for name in (raw_normal, raw_checked, store_name):
        rows.append(
            Throughput(
                f"{N_SINGLE}×1-event: {name}",
                N_SINGLE,
                median(name, 0),
                baseline=rows[0].case,
            )
        )
    ten_base = Throughput(f"{N_BATCH}×{BATCH_SIZE}-event: {raw_full}", N_BATCH, median(raw_full, 1))
    rows.append(ten_base)
    for name in (raw_normal, raw_checked, store_name):
        rows.append(
            Throughput(
                f"{N_BATCH}×{BATCH_SIZE}-event: {name}",
                N_BATCH,
                median(name, 1),
                baseline=ten_base.case,
            )
        )
    console.print(
        throughput_table(
            f"Event store append (ops = commits; median of {ROUNDS} interleaved rounds, "
            "fresh file per case)",
            rows,
        )
    )

    read_base = f"raw SELECT, pages of {READ_PAGE} (rows only)"
    read_rows = [
        Throughput(read_base, events, reads["raw"]),
        Throughput(
            "raw SELECT + Envelope decode, page kept as a list",
            events,
            reads["raw+decode"],
            read_base,
        ),
        Throughput(
            f"SQLiteEventStore.read_all(limit={READ_PAGE})", events, reads["store"], read_base
        ),
    ]
    console.print(
        throughput_table(
            f"Event store read_all (ops = events; {READ_PASSES} passes over "
            f"{events // READ_PASSES:,} events)",
            read_rows,
            unit="events",
        )
    )


if __name__ == "__main__":
    print_machine()
    asyncio.run(main())
