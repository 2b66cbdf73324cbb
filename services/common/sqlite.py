"""SQLite adapters: the embedded default. One database file per service and one for reads.

Each database has one writer thread and one reader thread (WAL lets them run side by
side). A whole transaction runs as one function in the writer thread, so no other
coroutine can interleave with it, and ``BEGIN IMMEDIATE`` takes SQLite's write lock
up front, so commits from several processes are serialised too: global positions are
assigned in commit order and never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from services.common.datadir import make_private_database
from services.common.envelope import Envelope
from services.common.errors import ConcurrencyConflict, Conflict
from services.common.ports import (
    AnyOf,
    Batch,
    CollectionSpec,
    Contains,
    CountSpec,
    Eq,
    EventStore,
    Filter,
    In,
    Increment,
    NotIn,
    Page,
    Prefix,
    Put,
    Query,
    Range,
    ReadStore,
    Search,
    check_commit,
    decode_cursor,
    encode_cursor,
    fold,
    latest_puts,
    merge_increments,
    safe_name,
)

T = TypeVar("T")


MAX_GROUP = 512
"""Writes committed together at most (``SQLiteDatabase.write``)."""
BULK_CACHE_SIZE = -65536
"""``PRAGMA cache_size`` of a read store while it bulk loads: 64 MiB of pages, not 2."""


class SQLiteDatabase:
    """A SQLite file with a writer thread and a reader thread.

    Group commit: writes that arrive while the writer thread is busy wait in a queue, and
    the next round commits all of them in one transaction, so they share one fsync. Each
    runs in a savepoint of its own: one that raises is rolled back alone and its caller
    gets the exception, the others commit. No caller hears "done" before the COMMIT that
    holds its write has returned, so durability is what it was with a transaction each.
    """

    def __init__(self, path: str | Path, *, durable: bool = True) -> None:
        self.path = Path(path)
        # Only the platform's user may read it (nor its -wal and -shm files).
        make_private_database(self.path)
        # FULL fsyncs every commit: an accepted command survives a power cut. Read models
        # can be rebuilt by replay, so they trade that for speed with NORMAL.
        self._synchronous = "FULL" if durable else "NORMAL"
        self._reader = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-r-{self.path.stem}")
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        # The writer thread starts with the first write; None in the queue stops it.
        self._pending: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._state = threading.Lock()
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return conn

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in an IMMEDIATE transaction, all of it or none of it; answer once it
        is committed (with the writes queued beside it: see the class)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._state:
            if self._closed:
                raise RuntimeError(f"{self.path.name} is closed")
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name=f"sqlite-w-{self.path.stem}", daemon=True
                )
                self._writer.start()
            self._pending.put((fn, future, loop))
        return await future

    def _write_loop(self) -> None:
        """The writer thread: take what is queued, up to ``MAX_GROUP``, commit it as one
        transaction, hand every caller its outcome on its own event loop; until closed."""
        stopping = False
        while not stopping:
            first = self._pending.get()
            if first is None:
                break
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    more = self._pending.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                group.append(more)
            try:
                outcomes = self._commit([fn for fn, _, _ in group])
            except BaseException as exc:  # the COMMIT itself failed: none of them holds
                outcomes = [(None, exc)] * len(group)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
            for (_, future, loop), outcome in zip(group, outcomes, strict=True):
                by_loop.setdefault(loop, []).append((future, outcome))
            for loop, answers in by_loop.items():
                with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                    loop.call_soon_threadsafe(_answer, answers)
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None

    def _commit(
        self, fns: Sequence[Callable[[sqlite3.Connection], Any]]
    ) -> list[tuple[Any, BaseException | None]]:
        """In the writer thread: one transaction, a savepoint per write, one COMMIT."""
        if self._write_conn is None:
            self._write_conn = self._connect()
        conn = self._write_conn
        outcomes: list[tuple[Any, BaseException | None]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            if len(fns) == 1:  # alone, its transaction is its savepoint (one client's path)
                try:
                    outcomes.append((fns[0](conn), None))
                except Exception as exc:
                    conn.execute("ROLLBACK")
                    return [(None, exc)]
            else:
                for fn in fns:
                    conn.execute("SAVEPOINT one_write")
                    try:
                        value = fn(conn)
                    except Exception as exc:
                        conn.execute("ROLLBACK TO one_write")
                        conn.execute("RELEASE one_write")
                        outcomes.append((None, exc))
                    else:
                        conn.execute("RELEASE one_write")
                        outcomes.append((value, None))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._read_conn is None:
                self._read_conn = self._connect()
            return fn(self._read_conn)

        return await asyncio.get_running_loop().run_in_executor(self._reader, run)

    async def close(self) -> None:
        def close_read() -> None:
            if self._read_conn is not None:
                self._read_conn.close()
                self._read_conn = None

        with self._state:
            self._closed, writer = True, self._writer
            if writer is not None:
                self._pending.put(None)
        if writer is not None:
            await asyncio.to_thread(writer.join)
        await asyncio.get_running_loop().run_in_executor(self._reader, close_read)
        self._reader.shutdown(wait=True)


_Write = tuple[
    Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop
]
"""A queued write: the transaction's function, its caller's future and event loop."""


def _answer(
    answers: Sequence[tuple[asyncio.Future[Any], tuple[Any, BaseException | None]]],
) -> None:
    """On the caller's event loop: each future gets its write's value or exception."""
    for future, (value, error) in answers:
        if future.done():  # its caller stopped waiting; the write stands
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


# --- event store ------------------------------------------------------------------------

_EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT    NOT NULL UNIQUE,
    stream   TEXT    NOT NULL,
    version  INTEGER NOT NULL,
    body     TEXT    NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE IF NOT EXISTS outbox (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
"""


def _decode_row(position: int, body: str) -> Envelope:
    # Validated with its position in it: ~10 % faster than validating and then copying
    # the envelope to set the position (``with_position``), on a replay's every event.
    fields = json.loads(body)
    fields["position"] = position
    return Envelope.model_validate(fields)


class SQLiteEventStore(EventStore):
    def __init__(self, path: str | Path) -> None:
        self.db = SQLiteDatabase(path, durable=True)

    async def start(self) -> None:
        await self.db.write(lambda conn: _executescript(conn, _EVENTS_SCHEMA))

    async def close(self) -> None:
        await self.db.close()

    async def append(self, events: Sequence[Envelope], expected_version: int) -> list[Envelope]:
        check_commit(events, expected_version)
        bodies = [e.model_dump_json(exclude={"position"}) for e in events]
        return await self.db.write(lambda conn: _append(conn, events, bodies, expected_version))

    async def decide_and_append(
        self, stream: str, decide: Callable[[list[Envelope]], Sequence[Envelope]]
    ) -> list[Envelope]:
        """Read, decide and append in one transaction in the writer thread: one trip, and
        no writer can come between the read and the append (``BEGIN IMMEDIATE``)."""

        def txn(conn: sqlite3.Connection) -> list[Envelope]:
            stored = _stream(conn, stream, 0, 2**62)
            new = decide(stored)
            if not new:
                return []
            expected = stored[-1].version if stored else 0
            check_commit(new, expected)
            bodies = [e.model_dump_json(exclude={"position"}) for e in new]
            return _insert(conn, new, bodies)

        return await self.db.write(txn)

    async def read_stream(
        self, stream: str, after_version: int = 0, to_version: int | None = None
    ) -> list[Envelope]:
        upper = to_version if to_version is not None else 2**62

        return await self.db.read(lambda conn: _stream(conn, stream, after_version, upper))

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Envelope]:
        def query(conn: sqlite3.Connection) -> list[Envelope]:
            rows = conn.execute(
                "SELECT position, body FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (after_position, limit),
            ).fetchall()
            return [_decode_row(*row) for row in rows]

        return await self.db.read(query)

    async def get_event(self, event_id: UUID) -> Envelope | None:
        def query(conn: sqlite3.Connection) -> Envelope | None:
            row = conn.execute(
                "SELECT position, body FROM events WHERE id = ?", (str(event_id),)
            ).fetchone()
            return _decode_row(*row) if row else None

        return await self.db.read(query)

    async def max_position(self) -> int:
        return await self.db.read(
            lambda conn: conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
        )

    async def unpublished(self, limit: int = 500) -> list[Envelope]:
        def query(conn: sqlite3.Connection) -> list[Envelope]:
            rows = conn.execute(
                "SELECT position, body FROM events WHERE position > "
                "(SELECT coalesce(max(position), 0) FROM outbox WHERE name = 'relay') "
                "ORDER BY position LIMIT ?",
                (limit,),
            ).fetchall()
            return [_decode_row(*row) for row in rows]

        return await self.db.read(query)

    async def mark_published(self, events: Sequence[Envelope]) -> None:
        if not events:
            return
        last = max(e.position or 0 for e in events)
        await self.db.write(
            lambda conn: conn.execute(
                "INSERT INTO outbox (name, position) VALUES ('relay', ?) "
                "ON CONFLICT (name) DO UPDATE SET position = max(position, excluded.position)",
                (last,),
            )
        )

    async def append_batch(
        self, commits: Sequence[Sequence[Envelope]], *, published: bool = False
    ) -> int:
        """Bulk loading (``shuangjian bench-load``): many commits in one transaction, all
        of them or none. Each is checked as ``append`` checks it (one stream, versions
        following on from the stream's), and ids must be new (there are no retries here).
        ``published`` marks them as sent by the relay when nothing before them was
        waiting, so a loaded history is not replayed to live subscribers; a waiting event
        is never skipped. Returns how many events were stored."""
        for events in commits:
            check_commit(events, events[0].version - 1)
        rows = [
            (str(e.id), e.stream, e.version, e.model_dump_json(exclude={"position"}))
            for events in commits
            for e in events
        ]

        def txn(conn: sqlite3.Connection) -> int:
            heads: dict[str, int] = {}
            for events in commits:
                first = events[0]
                head = heads.get(first.stream)
                if head is None:
                    head = _stream_version(conn, first.stream)
                _require_version(first.stream, head, first.version - 1)
                heads[first.stream] = events[-1].version
            end = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
            sent = conn.execute(
                "SELECT coalesce(max(position), 0) FROM outbox WHERE name = 'relay'"
            ).fetchone()[0]
            try:
                conn.executemany(
                    "INSERT INTO events (id, stream, version, body) VALUES (?, ?, ?, ?)", rows
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"an event id of the batch is stored already: {exc}") from exc
            if published and sent >= end:
                conn.execute(
                    "INSERT INTO outbox (name, position) VALUES "
                    "('relay', (SELECT max(position) FROM events)) "
                    "ON CONFLICT (name) DO UPDATE SET position = excluded.position"
                )
            return len(rows)

        return await self.db.write(txn) if rows else 0


def _stream(conn: sqlite3.Connection, stream: str, after: int, upto: int) -> list[Envelope]:
    rows = conn.execute(
        "SELECT position, body FROM events WHERE stream = ? AND version > ? "
        "AND version <= ? ORDER BY version",
        (stream, after, upto),
    ).fetchall()
    return [_decode_row(*row) for row in rows]


def _append(
    conn: sqlite3.Connection,
    events: Sequence[Envelope],
    bodies: Sequence[str],
    expected_version: int,
) -> list[Envelope]:
    """One commit's INSERTs, checked: a retry of a stored commit, or the next version."""
    first = events[0]
    row = conn.execute("SELECT version FROM events WHERE id = ?", (str(first.id),)).fetchone()
    if row is not None:
        return _already_stored(conn, events)
    _require_version(first.stream, _stream_version(conn, first.stream), expected_version)
    return _insert(conn, events, bodies)


def _stream_version(conn: sqlite3.Connection, stream: str) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) FROM events WHERE stream = ?", (stream,))
    return int(row.fetchone()[0])


def _require_version(stream: str, current: int, expected: int) -> None:
    if current != expected:
        raise ConcurrencyConflict(
            f"stream {stream} is at version {current}, not the expected {expected}"
        )


def _insert(
    conn: sqlite3.Connection, events: Sequence[Envelope], bodies: Sequence[str]
) -> list[Envelope]:
    """INSERT a commit whose versions follow the stream's last (checked by the caller).

    An event id stored before is a retried commit (``_already_stored``) or a conflict.
    """
    stored = []
    for event, body in zip(events, bodies, strict=True):
        try:
            cur = conn.execute(
                "INSERT INTO events (id, stream, version, body) VALUES (?, ?, ?, ?)",
                (str(event.id), event.stream, event.version, body),
            )
        except sqlite3.IntegrityError as exc:
            if event is events[0]:
                return _already_stored(conn, events)
            raise Conflict(f"event id {event.id} is already stored elsewhere") from exc
        assert cur.lastrowid is not None
        stored.append(event.with_position(cur.lastrowid))
    return stored


def _already_stored(conn: sqlite3.Connection, events: Sequence[Envelope]) -> list[Envelope]:
    """A retried commit: the same event ids in the same stream slots, or a conflict."""
    placeholders = ",".join("?" * len(events))
    rows = conn.execute(
        f"SELECT position, body FROM events WHERE id IN ({placeholders}) ORDER BY position",
        [str(e.id) for e in events],
    ).fetchall()
    stored = [_decode_row(*row) for row in rows]
    same = len(stored) == len(events) and all(
        (s.id, s.stream, s.version, s.type) == (e.id, e.stream, e.version, e.type)
        for s, e in zip(stored, events, strict=True)
    )
    if not same:
        raise Conflict(f"event id {events[0].id} is already stored with another commit")
    return stored


def _executescript(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


# --- read store -------------------------------------------------------------------------


class SQLiteReadStore(ReadStore):
    """Read models as JSON documents, one table per collection, JSON-expression indexes.

    A collection's ``search`` fields get an FTS5 index of their character bigrams
    (``sx_<name>``) and its ``counts`` a table of exact counts (``cx_<name>``). Both commit
    with the documents and cannot drift: triggers on the documents' table keep the search
    index, and ``commit`` moves the counts of the documents it changed, grouped;
    ``ensure`` builds both from the documents already there.
    """

    def __init__(self, path: str | Path) -> None:
        self.db = SQLiteDatabase(path, durable=False)
        self._specs: dict[str, CollectionSpec] = {}
        self._bulk_loading: set[str] = set()  # their counters are rebuilt at the end

    async def ensure(self, specs: Sequence[CollectionSpec]) -> None:
        def txn(conn: sqlite3.Connection) -> None:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS positions (projection TEXT NOT NULL, "
                "source TEXT NOT NULL, position INTEGER NOT NULL, "
                "PRIMARY KEY (projection, source))"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS derived_indexes "
                "(collection TEXT PRIMARY KEY, spec TEXT NOT NULL)"
            )
            if any(spec.search for spec in specs):
                _create_gram_positions(conn)
            for spec in specs:
                _create_collection(conn, spec)
                _analyze_once(conn, spec)

        await self.db.write(txn)
        self._specs.update({spec.name: spec for spec in specs})

    async def close(self) -> None:
        await self.db.close()

    def _table(self, collection: str) -> str:
        if collection not in self._specs:
            raise KeyError(f"unknown collection {collection!r}: call ensure() first")
        return f"rm_{safe_name(collection)}"

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        table = self._table(collection)

        def query(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(f"SELECT doc FROM {table} WHERE key = ?", (key,)).fetchone()
            return json.loads(row[0]) if row else None

        return await self.db.read(query)

    async def get_many(self, collection: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        table = self._table(collection)
        return await self.db.read(lambda conn: _docs_by_key(conn, table, keys))

    async def find(self, query: Query) -> Page:
        table = self._table(query.collection)
        spec = self._specs[query.collection]
        filters = _narrow_prefixes(query.filters, spec.counts)
        if filters is None:
            return Page([], 0, False, None)
        searching = any(_searches(flt, spec) for flt in filters)
        where, params = _where(filters, spec, searching)
        counted = _counted(filters, spec)
        order = "key" if query.order_by == "id" else _field(query.order_by)
        search = _search_query(filters, spec) if order == "key" else None
        page_where, page_params = list(where), list(params)
        after: str | None = None
        if query.after:
            value, key = decode_cursor(query.after)
            after = key
            if order == "key":  # a plain range, so an index ending in key can seek to it
                page_where.append("+key > ?" if searching else "key > ?")
                page_params.append(key)
            else:
                page_where.append(f"({order}, key) > (?, ?)")
                page_params += [_sql_value(value), key]
        cond = " AND ".join(where) or "1"
        page_cond = " AND ".join(page_where) or "1"

        def run(conn: sqlite3.Connection) -> Page:
            nonlocal page_cond, page_params
            if search is not None:
                total, page_cond, page_params = _by_search(
                    conn, spec, search, query.first + 1, after
                )
            elif counted is not None:
                total = conn.execute(*counted).fetchone()[0]
            else:
                count = f"SELECT count(*) FROM {table} WHERE {cond}"
                total = conn.execute(count, params).fetchone()[0]
            rows = conn.execute(
                f"SELECT {order}, key, doc FROM {table} WHERE {page_cond} "
                f"ORDER BY {order}, key LIMIT ?",
                [*page_params, query.first + 1],
            ).fetchall()
            has_next = len(rows) > query.first
            rows = rows[: query.first]
            cursor = encode_cursor(rows[-1][0], rows[-1][1]) if rows else None
            return Page([json.loads(r[2]) for r in rows], total, has_next, cursor)

        return await self.db.read(run)

    async def commit(self, batch: Batch) -> None:
        tables = {c: self._table(c) for c in {p.collection for p in batch.puts}}
        tables.update({c: self._table(c) for c in {i.collection for i in batch.increments}})

        counting = {
            table: spec.counts
            for collection, table in tables.items()
            if (spec := self._specs[collection]).counts is not None
            and collection not in self._bulk_loading
        }

        # A run of thousands of events (a rebuild) touches thousands of documents: each
        # table is read with one SELECT per 500 keys and written with one executemany.
        def txn(conn: sqlite3.Connection) -> None:
            touched: dict[str, list[str]] = {table: [] for table in counting}
            writes: list[Put | Increment] = [*batch.puts, *batch.increments]
            for write in writes:
                if (table := tables[write.collection]) in touched:
                    touched[table].append(write.key)
            before = {
                table: _counted_values(conn, table, counting[table], keys)
                for table, keys in touched.items()
            }
            applied = _position(conn, batch.projection, batch.source)
            fresh = [inc for inc in batch.increments if inc.position > applied]
            by_table: dict[str, dict[str, dict[str, int]]] = {}
            for (collection, key), deltas in merge_increments(fresh).items():
                by_table.setdefault(tables[collection], {})[key] = deltas
            for table, changes in by_table.items():
                stored = _docs_by_key(conn, table, list(changes))
                counted = []
                for key, deltas in changes.items():
                    doc = stored.get(key) or {"id": key, "version": 0}
                    for name, delta in deltas.items():
                        doc[name] = doc.get(name, 0) + delta
                    counted.append((key, _dumps(doc)))
                conn.executemany(
                    f"INSERT INTO {table} (key, version, doc) VALUES (?, 0, ?) "
                    "ON CONFLICT (key) DO UPDATE SET doc = excluded.doc",
                    counted,
                )
            puts: dict[str, list[tuple[str, int, str]]] = {}
            for put in latest_puts(batch.puts):
                doc = put.doc  # a projection's puts carry their id and version already
                if doc.get("id") != put.key or doc.get("version") != put.version:
                    doc = {**doc, "id": put.key, "version": put.version}
                puts.setdefault(tables[put.collection], []).append(
                    (put.key, put.version, _dumps(doc))
                )
            for table, rows in puts.items():
                conn.executemany(
                    f"INSERT INTO {table} (key, version, doc) VALUES (?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET version = excluded.version, "
                    "doc = excluded.doc WHERE excluded.version > version",
                    rows,
                )
            for table, keys in touched.items():
                after = _counted_values(conn, table, counting[table], keys)
                _recount(conn, table, counting[table], before[table], after)
            conn.execute(
                "INSERT INTO positions (projection, source, position) VALUES (?, ?, ?) "
                "ON CONFLICT (projection, source) DO UPDATE "
                "SET position = max(position, excluded.position)",
                (batch.projection, batch.source, batch.position),
            )

        await self.db.write(txn)

    async def position(self, projection: str, source: str) -> int:
        return await self.db.read(lambda conn: _position(conn, projection, source))

    async def reset(self, projection: str, collections: Sequence[str]) -> None:
        tables = [self._table(c) for c in collections]

        # One transaction: a crash leaves everything as it was or everything gone. The
        # positions go first all the same, in the order the MongoDB adapter needs.
        specs = [self._specs[c] for c in collections]

        def txn(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM positions WHERE projection = ?", (projection,))
            for table, spec in zip(tables, specs, strict=True):
                # Without its triggers the DELETE is a truncation, not a million row
                # deletes each updating the derived indexes; those are cleared whole.
                _drop_triggers(conn, spec.name)
                conn.execute(f"DELETE FROM {table}")
                _clear_derived(conn, spec)
                _create_triggers(conn, spec)

        await self.db.write(txn)

    @contextlib.asynccontextmanager
    async def bulk_load(self, collections: Sequence[str]) -> AsyncIterator[None]:
        """Fill collections just emptied by ``reset`` (a rebuild) with their indexes and
        triggers set aside: each is dropped, and built once from the documents at the end
        (from the SQL it was created with) instead of being updated row by row; commits
        meanwhile move no counters. The search index and counters (``derived_indexes``)
        are forgotten in the same transaction, so if the process dies in between,
        ``ensure`` builds all of it again from the documents."""
        specs = [self._specs[c] for c in dict.fromkeys(collections)]
        tables = {self._table(spec.name): spec for spec in specs}

        def set_aside(conn: sqlite3.Connection) -> tuple[int, list[str]]:
            cache = conn.execute("PRAGMA cache_size").fetchone()[0]
            conn.execute(f"PRAGMA cache_size = {BULK_CACHE_SIZE}")
            saved: list[str] = []
            for table, spec in tables.items():
                for kind, name, sql in conn.execute(
                    "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ? "
                    "AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type",
                    (table,),
                ).fetchall():
                    conn.execute(f'DROP {kind.upper()} "{name}"')
                    saved.append(sql)
                conn.execute("DELETE FROM derived_indexes WHERE collection = ?", (spec.name,))
            return cache, saved

        cache, saved = await self.db.write(set_aside)

        def restore(conn: sqlite3.Connection) -> None:
            for sql in saved:  # indexes first ('index' sorts before 'trigger')
                conn.execute(sql)
            for spec in specs:  # rebuilds what the triggers keep, from the documents
                _create_collection(conn, spec)
            conn.execute(f"PRAGMA cache_size = {int(cache)}")

        self._bulk_loading.update(spec.name for spec in specs)
        try:
            yield
        finally:
            self._bulk_loading.difference_update(spec.name for spec in specs)
            await self.db.write(restore)

    async def dump(self, collection: str) -> list[dict[str, Any]]:
        table = self._table(collection)
        return await self.db.read(
            lambda conn: [
                json.loads(doc) for (doc,) in conn.execute(f"SELECT doc FROM {table} ORDER BY key")
            ]
        )


_dumps = json.JSONEncoder(ensure_ascii=False).encode
"""``json.dumps(doc, ensure_ascii=False)`` without building an encoder per call."""


def _docs_by_key(conn: sqlite3.Connection, table: str, keys: Sequence[str]) -> dict[str, Any]:
    """The stored documents of these keys."""
    rows = _by_keys(conn, f"SELECT key, doc FROM {table} WHERE key IN", keys)
    return {key: json.loads(doc) for key, doc in rows}


def _by_keys(conn: sqlite3.Connection, select: str, keys: Sequence[str]) -> Iterator[Any]:
    """The rows of ``select`` (ending in ``WHERE key IN``) for these keys, each asked for
    once, 500 keys per statement."""
    wanted = list(dict.fromkeys(keys))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        yield from conn.execute(f"{select} ({','.join('?' * len(chunk))})", chunk)


def _create_collection(conn: sqlite3.Connection, spec: CollectionSpec) -> None:
    table = f"rm_{safe_name(spec.name)}"
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} "
        "(key TEXT PRIMARY KEY, version INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL)"
    )
    for name in spec.indexes:
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS ix_{spec.name}_{safe_name(name)} "
            f"ON {table} ({_field(name)}, key)"
        )
    if spec.counts:
        # Equality on a subtree's prefix walks this in key order: a listing reads its
        # page and stops, instead of sorting every institution of a province.
        for length in spec.counts.prefix_lengths:
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS ix_{spec.name}_{safe_name(spec.counts.prefix_field)}"
                f"_{int(length)} ON {table} ({_prefix_of(spec.counts.prefix_field, length)}, key)"
            )
    signature = json.dumps(
        {"layout": 2, "search": spec.search, "counts": spec.counts and asdict(spec.counts)}
    )
    row = conn.execute(
        "SELECT spec FROM derived_indexes WHERE collection = ?", (spec.name,)
    ).fetchone()
    if row is None or row[0] != signature:
        # New, or declared differently than when built: (re)built from the documents.
        _drop_triggers(conn, spec.name)
        conn.execute(f"DROP TABLE IF EXISTS sx_{spec.name}")
        conn.execute(f"DROP TABLE IF EXISTS cx_{spec.name}")
        _create_derived(conn, spec)
        _backfill_derived(conn, spec)
        conn.execute(
            "INSERT INTO derived_indexes (collection, spec) VALUES (?, ?) "
            "ON CONFLICT (collection) DO UPDATE SET spec = excluded.spec",
            (spec.name, signature),
        )
    else:  # a data dir's older triggers (they kept the counts too) give way to these
        _drop_triggers(conn, spec.name)
    _create_triggers(conn, spec)


# --- derived indexes: n-gram search and counts ------------------------------------------

GRAM_POSITIONS = 1024
"""Characters of a searched field that are indexed; text beyond is not found by search."""


def _create_gram_positions(conn: sqlite3.Connection) -> None:
    """1..GRAM_POSITIONS: triggers cannot use a recursive CTE, so they join this instead."""
    conn.execute("CREATE TABLE IF NOT EXISTS gram_positions (n INTEGER PRIMARY KEY)")
    conn.execute(
        "INSERT OR IGNORE INTO gram_positions (n) "
        "WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < ?) "
        "SELECT n FROM k",
        (GRAM_POSITIONS,),
    )


def _grams(field: str, row: str) -> str:
    """SQL: the tokens of a searched field of ``row`` (``new``, ``old`` or a table).

    One token per character position: the hex of the (folded) character and the next one,
    the last character alone. Hex tokenizes the same under any tokenizer whatever the
    script or punctuation; consecutive bigrams as a phrase find exactly the substrings of
    two characters or more, and a token prefix (``_gram_match``) single characters.
    """
    text = f"json_extract({row}.doc, '$.{safe_name(field)}')"
    # LIMIT 1 keeps SQLite from flattening the subquery into the join, which would parse
    # the document again at every position.
    return (
        "(SELECT group_concat(g, ' ') FROM (SELECT hex(substr(t, n, 2)) AS g "
        f"FROM (SELECT lower({text}) AS t LIMIT 1), gram_positions WHERE n <= length(t) "
        "ORDER BY n))"
    )


def _gram_match(field: str, text: str) -> str:
    """The FTS5 query for ``text`` in ``field``, in the tokens of ``_grams``."""
    chars = fold(text)
    if len(chars) == 1:
        return f'{{g_{field}}} : "{chars.encode().hex()}" *'
    bigrams = " ".join((a + b).encode().hex() for a, b in itertools.pairwise(chars))
    return f'{{g_{field}}} : "{bigrams}"'


def _counted_fields(counts: CountSpec | None) -> list[str]:
    return [counts.prefix_field, *counts.fields] if counts else []


def _search_columns(spec: CollectionSpec) -> list[str]:
    """The FTS5 columns: grams of each searched field, then (with ``counts``) one of
    facet tokens per counted field, so a search is counted within a region, a status...
    by the index alone."""
    columns = [f"g_{safe_name(f)}" for f in spec.search]
    return columns + [f"k_{safe_name(f)}" for f in _counted_fields(spec.counts)]


def _search_values(spec: CollectionSpec, row: str) -> list[str]:
    """SQL: the FTS5 row of ``row``'s document; facets read ``v`` (``_extract`` of the
    counted fields). A facet token is ``x`` and the hex of the value (of each prefix of
    the prefix field, of the JSON of the others), as ``_facet`` asks for it."""
    values = [_grams(f, row) for f in spec.search]
    if spec.counts:
        prefixes = [f"'x' || hex(substr(v ->> 0, 1, {int(n)}))" for n in spec.counts.prefix_lengths]
        values.append(" || ' ' || ".join(prefixes) or "''")
        values += [
            f"'x' || hex(json_quote(v ->> {i}))" for i in range(1, len(spec.counts.fields) + 1)
        ]
    return values


def _prefix_of(field: str, length: int) -> str:
    return f"substr({_field(field)}, 1, {int(length)})"


def _extract(row: str, fields: Sequence[str]) -> str:
    """SQL: the fields of ``row``'s document as one JSON array, parsing the document once
    (every ``json_extract`` parses the whole document; triggers run one per write)."""
    paths = [f"'$.{safe_name(f)}'" for f in fields]
    if len(paths) == 1:
        paths *= 2  # one path would answer the value itself, not an array
    return f"json_extract({row}.doc, {', '.join(paths)})"


def _count_rows(counts: CountSpec, documents: str) -> str:
    """SQL: the counters each row of ``documents`` counts in, ``k`` times each: one per
    prefix length. ``documents`` is a FROM item with a column ``v`` (``_extract`` of the
    counted fields) and a column ``k``; ``_counted_once`` makes one of documents. Values are
    JSON text, ``null`` for absent: a key column cannot be NULL and still be unique."""
    lengths = " UNION ALL ".join(f"SELECT {n} AS len" for n in _count_lengths(counts))
    values = [
        "l.len",
        "ifnull(substr(v ->> 0, 1, l.len), '')",
        *(f"json_quote(v ->> {i})" for i in range(1, len(counts.fields) + 1)),
    ]
    named = ", ".join(f"{v} AS {c}" for v, c in zip(values, _count_columns(counts), strict=True))
    return f"SELECT {named}, k FROM {documents}, ({lengths}) AS l"


def _counted_once(values: str) -> str:
    """SQL: a FROM item for ``_count_rows`` of ``values`` (a query of one column ``v``):
    each distinct ``v`` once, with how many times it occurs. A million institutions fall
    into a few thousand distinct combinations, so the counters are worked out per
    combination, not per institution."""
    return f"(SELECT v, count(*) AS k FROM ({values}) GROUP BY v)"


def _count_columns(counts: CountSpec) -> list[str]:
    return ["len", "prefix", *(f"f_{safe_name(f)}" for f in counts.fields)]


def _count_lengths(counts: CountSpec) -> list[int]:
    return [0, *(int(n) for n in counts.prefix_lengths)]


def _counted_values(
    conn: sqlite3.Connection, table: str, counts: CountSpec, keys: Sequence[str]
) -> dict[str, str]:
    """What each stored document of ``keys`` is counted by: the JSON array of its counted
    fields as ``_extract`` spells it (absent documents are left out)."""
    extract = _extract("d", _counted_fields(counts))
    return dict(_by_keys(conn, f"SELECT key, {extract} FROM {table} AS d WHERE key IN", keys))


def _recount(
    conn: sqlite3.Connection,
    table: str,
    counts: CountSpec,
    before: dict[str, str],
    after: dict[str, str],
) -> None:
    """Move the counts of the documents a commit changed from what they were counted by
    ``before`` to ``after``: one grouped upsert each way per commit, so a run of 500
    approvals in one province updates a few dozen counters once, not each one 500 times."""
    gone = [values for key, values in before.items() if after.get(key) != values]
    came = [values for key, values in after.items() if before.get(key) != values]
    key = ", ".join(_count_columns(counts))
    for sign, changed in ((-1, gone), (1, came)):
        if not changed:
            continue
        # Each element of the array parameter is one document's counted fields (``v``).
        documents = _counted_once("SELECT value AS v FROM json_each(?)")
        conn.execute(
            f"INSERT INTO cx_{table.removeprefix('rm_')} ({key}, n) "
            f"SELECT {key}, {sign} * sum(k) FROM ({_count_rows(counts, documents)}) "
            f"WHERE true GROUP BY {key} ON CONFLICT ({key}) DO UPDATE SET n = n + excluded.n",
            ("[" + ",".join(changed) + "]",),
        )


def _create_derived(conn: sqlite3.Connection, spec: CollectionSpec) -> None:
    if spec.search:
        columns = ", ".join(_search_columns(spec))
        conn.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS sx_{spec.name} USING fts5({columns}, "
            "content='', columnsize=0, tokenize='ascii')"
        )
    if spec.counts:
        columns = ", ".join(f"{c} NOT NULL" for c in _count_columns(spec.counts))
        key = ", ".join(_count_columns(spec.counts))
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS cx_{spec.name} ({columns}, n INTEGER NOT NULL, "
            f"PRIMARY KEY ({key})) WITHOUT ROWID"
        )


def _backfill_derived(conn: sqlite3.Connection, spec: CollectionSpec) -> None:
    table = f"rm_{spec.name}"
    if spec.search:
        columns = ", ".join(_search_columns(spec))
        values = ", ".join(_search_values(spec, "d"))
        counted = f", {_extract(table, _counted_fields(spec.counts))} AS v" if spec.counts else ""
        conn.execute(
            f"INSERT INTO sx_{spec.name} (rowid, {columns}) SELECT id, {values} "
            f"FROM (SELECT rowid AS id, doc{counted} FROM {table}) AS d"
        )
    if spec.counts:
        counts = spec.counts
        columns = ", ".join(_count_columns(counts))
        documents = _counted_once(
            f"SELECT {_extract(table, _counted_fields(counts))} AS v FROM {table}"
        )
        conn.execute(
            f"INSERT INTO cx_{spec.name} ({columns}, n) SELECT {columns}, sum(k) "
            f"FROM ({_count_rows(counts, documents)}) GROUP BY {columns}"
        )


def _clear_derived(conn: sqlite3.Connection, spec: CollectionSpec) -> None:
    if spec.search:
        conn.execute(f"INSERT INTO sx_{spec.name} (sx_{spec.name}) VALUES ('delete-all')")
    if spec.counts:
        conn.execute(f"DELETE FROM cx_{spec.name}")


_TRIGGERS = ("insert", "update", "delete")


def _drop_triggers(conn: sqlite3.Connection, name: str) -> None:
    for event in _TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS dx_{name}_{event}")


def _create_triggers(conn: sqlite3.Connection, spec: CollectionSpec) -> None:
    """Keep ``sx_`` in step with every write of ``rm_`` (an update only when a field it
    indexes changed: a searched field or a facet). The search index is keyed by the
    documents' rowid, which an upsert keeps. The counts (``cx_``) are moved by ``commit``
    itself, grouped per commit (``_recount``): per row, they were half of a write's cost."""
    if not spec.search:
        return
    name, table = spec.name, f"rm_{spec.name}"
    columns = ", ".join(_search_columns(spec))
    add: dict[str, str] = {}
    remove: dict[str, str] = {}
    for row in ("new", "old"):
        values = ", ".join(_search_values(spec, row))
        counted = (
            f" FROM (SELECT {_extract(row, _counted_fields(spec.counts))} AS v LIMIT 1)"
            if spec.counts
            else ""
        )
        add[row] = f"INSERT INTO sx_{name} (rowid, {columns}) SELECT {row}.rowid, {values}{counted}"
        remove[row] = (
            f"INSERT INTO sx_{name} (sx_{name}, rowid, {columns}) "
            f"SELECT 'delete', {row}.rowid, {values}{counted}"
        )
    fields = list(dict.fromkeys([*spec.search, *_counted_fields(spec.counts)]))
    changed = f"{_extract('old', fields)} IS NOT {_extract('new', fields)}"
    bodies = {
        "insert": (f"AFTER INSERT ON {table}", [add["new"]]),
        "update": (f"AFTER UPDATE OF doc ON {table} WHEN {changed}", [remove["old"], add["new"]]),
        "delete": (f"AFTER DELETE ON {table}", [remove["old"]]),
    }
    for event, (when, statements) in bodies.items():
        body = "".join(f"{statement}; " for statement in statements)
        conn.execute(f"CREATE TRIGGER IF NOT EXISTS dx_{name}_{event} {when} BEGIN {body}END")


def _analyze_once(conn: sqlite3.Connection, spec: CollectionSpec) -> None:
    """Planner statistics for a collection that has grown without any (a bulk load, an
    upgrade): with them SQLite walks the most selective index in key order."""
    if not spec.counts:
        return
    table = f"rm_{spec.name}"
    has_stats = (
        conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone()
        and conn.execute("SELECT 1 FROM sqlite_stat1 WHERE tbl = ?", (table,)).fetchone()
    )
    if has_stats:
        return
    size = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 10000)").fetchone()[0]
    if size >= 10_000:
        conn.execute("PRAGMA analysis_limit = 1000")
        conn.execute(f"ANALYZE {table}")


def _position(conn: sqlite3.Connection, projection: str, source: str) -> int:
    row = conn.execute(
        "SELECT position FROM positions WHERE projection = ? AND source = ?",
        (projection, source),
    ).fetchone()
    return row[0] if row else 0


def _field(name: str) -> str:
    return f"json_extract(doc, '$.{safe_name(name)}')"


def _sql_value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _narrow_prefixes(
    filters: Sequence[Filter | AnyOf], counts: CountSpec | None
) -> list[Filter | AnyOf] | None:
    """Of nested prefixes of the counted field (a scope and a chosen region) the longest
    alone says the same; prefixes that are not nested match nothing (``None``)."""
    if counts is None:
        return list(filters)
    prefixes = [
        f.prefix for f in filters if isinstance(f, Prefix) and f.field == counts.prefix_field
    ]
    if len(prefixes) < 2:
        return list(filters)
    longest = max(prefixes, key=len)
    if not all(longest.startswith(p) for p in prefixes):
        return None
    rest = [f for f in filters if not (isinstance(f, Prefix) and f.field == counts.prefix_field)]
    return [Prefix(counts.prefix_field, longest), *rest]


def _counted(
    filters: Sequence[Filter | AnyOf], spec: CollectionSpec
) -> tuple[str, list[Any]] | None:
    """The total from ``cx_`` when every filter is one it counts by, else ``None``."""
    counts = spec.counts
    if counts is None:
        return None
    length, prefix = 0, ""
    conditions: list[str] = []
    params: list[Any] = []
    for flt in filters:
        match flt:
            case Prefix(field=field, prefix=p) if (
                field == counts.prefix_field and len(p) in counts.prefix_lengths and not length
            ):
                length, prefix = len(p), p
            case Eq(field=field, value=value) if field in counts.fields:
                conditions.append(f" AND f_{safe_name(field)} = json_quote(?)")
                params.append(_sql_value(value))
            case _:
                return None
    return (
        f"SELECT coalesce(sum(n), 0) FROM cx_{spec.name} WHERE len = ? AND prefix = ?"
        + "".join(conditions),
        [length, prefix, *params],
    )


@dataclass(frozen=True)
class _SearchQuery:
    """A search (or'ed with ``others``, such as an exact credit code) among filters that
    the counters count by (``rest``): counted and paged by ``_by_search``."""

    search: Search
    others: tuple[Filter, ...]
    rest: tuple[Filter | AnyOf, ...]


def _search_query(filters: Sequence[Filter | AnyOf], spec: CollectionSpec) -> _SearchQuery | None:
    if spec.counts is None:
        return None
    driving = [n for n, flt in enumerate(filters) if _searches(flt, spec)]
    if len(driving) != 1:
        return None
    flt = filters[driving[0]]
    alternatives = flt.alternatives if isinstance(flt, AnyOf) else (flt,)
    searches = [alt for alt in alternatives if _searches(alt, spec)]
    rest = tuple(f for n, f in enumerate(filters) if n != driving[0])
    if len(searches) != 1 or _counted(rest, spec) is None:
        return None
    search = searches[0]
    assert isinstance(search, Search)
    others = tuple(alt for alt in alternatives if alt is not search)
    return _SearchQuery(search, others, rest)


def _facet_match(conn: sqlite3.Connection, spec: CollectionSpec, query: _SearchQuery) -> str:
    """The FTS5 query of the search within the counted filters (tokens of
    ``_search_values``)."""
    parts = [_gram_match(query.search.field, query.search.text)]
    for flt in query.rest:
        if isinstance(flt, Prefix):
            if _covers_all(conn, spec, flt):
                continue  # a province holding every document: merging its tokens is waste
            parts.append(f"{{k_{safe_name(flt.field)}}} : x{flt.prefix.encode().hex()}")
        elif isinstance(flt, Eq):
            value = [_sql_value(flt.value)]
            token = conn.execute("SELECT 'x' || hex(json_quote(?))", value).fetchone()[0]
            parts.append(f"{{k_{safe_name(flt.field)}}} : {token}")
    return " AND ".join(parts)


def _covers_all(conn: sqlite3.Connection, spec: CollectionSpec, prefix: Prefix) -> bool:
    """Whether every document of the collection has this prefix (by the counters)."""
    counted = f"SELECT coalesce(sum(n), 0) FROM cx_{spec.name} WHERE len = ? AND prefix = ?"
    everything = conn.execute(counted, [0, ""]).fetchone()[0]
    return bool(
        conn.execute(counted, [len(prefix.prefix), prefix.prefix]).fetchone()[0] == everything
    )


def _by_search(
    conn: sqlite3.Connection,
    spec: CollectionSpec,
    query: _SearchQuery,
    limit: int,
    after: str | None,
) -> tuple[int, str, list[Any]]:
    """The total of a search, and the condition of its page (in key order).

    The total is the search index's count of its matches within the counted filters, plus
    the other alternatives' matches it does not hold (a credit code: an index lookup).
    The page takes one of two ways, whichever reads fewer documents: a rare term sorts
    its matches; a common one (``培训``: a third of all names) walks the listing without
    the search in key order, checking each document, and stops at the page's end.
    """
    name = spec.name
    base = conn.execute(*_counted(query.rest, spec) or ("SELECT 0", [])).fetchone()[0]
    match = _facet_match(conn, spec, query)
    fts = f"SELECT rowid FROM sx_{name} WHERE sx_{name} MATCH ?"
    total = conn.execute(f"SELECT count(*) FROM ({fts})", [match]).fetchone()[0]
    loose, loose_params = _where(query.rest, spec, searching=True)
    alternatives = [_clause(alt, spec) for alt in query.others]
    either = "(" + " OR ".join(sql for sql, _ in alternatives) + ")"
    either_params = [p for _, values in alternatives for p in values]
    if alternatives:
        outside = " AND ".join(
            [
                either,
                *loose,
                f"NOT EXISTS (SELECT 1 FROM sx_{name} WHERE sx_{name} MATCH ? AND rowid = d.rowid)",
            ]
        )
        total += conn.execute(
            f"SELECT count(*) FROM rm_{name} AS d WHERE {outside}",
            [*either_params, *loose_params, match],
        ).fetchone()[0]
    if total * total > limit * base:
        listing, params = _where(query.rest, spec)
        checks = [_clause(alt, spec, indexed=False) for alt in (query.search, *query.others)]
        cond = [*listing, "(" + " OR ".join(sql for sql, _ in checks) + ")"]
        params += [p for _, values in checks for p in values]
        if after is not None:
            cond.append("key > ?")
            params.append(after)
    else:
        selects, params = [fts], [match]
        if alternatives:
            selects.append(f"SELECT rowid FROM rm_{name} WHERE {' AND '.join([either, *loose])}")
            params += [*either_params, *loose_params]
        cond = [f"rowid IN ({' UNION '.join(selects)})"]
        if after is not None:
            cond.append("+key > ?")
            params.append(after)
    return total, " AND ".join(cond), params


def _searches(flt: Filter | AnyOf, spec: CollectionSpec) -> bool:
    """Whether the filter is (or has an alternative that is) an index-assisted search."""
    if isinstance(flt, AnyOf):
        return any(_searches(alt, spec) for alt in flt.alternatives)
    return isinstance(flt, Search) and flt.field in spec.search and bool(flt.text)


def _where(
    filters: Sequence[Filter | AnyOf], spec: CollectionSpec, searching: bool = False
) -> tuple[list[str], list[Any]]:
    """SQL conditions. When a search is among them it drives the query: the other
    conditions are written so that no index serves them (``+expr``) and SQLite does not
    walk, say, a whole province checking each institution against the search."""
    clauses: list[str] = []
    params: list[Any] = []
    for flt in filters:
        if isinstance(flt, AnyOf) and _searches(flt, spec):
            # Each alternative through its own index, united: an OR in one WHERE would
            # make SQLite scan for the alternative that the search index answers.
            selects = []
            for alt in flt.alternatives:
                sql, values = _rowids(alt, spec)
                selects.append(sql)
                params += values
            clauses.append(f"rowid IN ({' UNION '.join(selects)})")
        elif isinstance(flt, AnyOf):
            parts = [_clause(alt, spec, not searching) for alt in flt.alternatives]
            clauses.append("(" + (" OR ".join(p[0] for p in parts) or "0") + ")")
            for part in parts:
                params += part[1]
        elif _searches(flt, spec):
            sql, values = _rowids(flt, spec)
            clauses.append(f"rowid IN ({sql})")
            params += values
        else:
            clause, values = _clause(flt, spec, not searching)
            clauses.append(clause)
            params += values
    return clauses, params


def _rowids(flt: Filter, spec: CollectionSpec) -> tuple[str, list[Any]]:
    """SQL selecting the rowids of the documents ``flt`` matches, through an index."""
    if isinstance(flt, Search) and _searches(flt, spec):
        return f"SELECT rowid FROM sx_{spec.name} WHERE sx_{spec.name} MATCH ?", [
            _gram_match(flt.field, flt.text)
        ]
    clause, values = _clause(flt, spec, True)
    return f"SELECT rowid FROM rm_{spec.name} WHERE {clause}", values


def _clause(flt: Filter, spec: CollectionSpec, indexed: bool = True) -> tuple[str, list[Any]]:
    column = "key" if flt.field == "id" else _field(flt.field)
    if not indexed:
        column = f"+{column}"
    counts = spec.counts
    match flt:
        case Eq(value=None):
            return f"{column} IS NULL", []
        case Eq(value=value):
            return f"{column} = ?", [_sql_value(value)]
        case In(values=values):
            if not values:
                return "0", []
            return f"{column} IN ({','.join('?' * len(values))})", [_sql_value(v) for v in values]
        case NotIn(values=values):
            if not values:
                return "1", []
            marks = ",".join("?" * len(values))
            return f"({column} IS NULL OR {column} NOT IN ({marks}))", [
                _sql_value(v) for v in values
            ]
        case Prefix(field=field, prefix=prefix) if (
            counts and field == counts.prefix_field and len(prefix) in counts.prefix_lengths
        ):
            plus = "" if indexed else "+"
            return f"{plus}{_prefix_of(field, len(prefix))} = ?", [prefix]
        case Prefix(prefix=prefix):
            # A range on the index instead of LIKE, which SQLite cannot index here.
            return f"({column} >= ? AND {column} < ?)", [prefix, prefix + "\U0010ffff"]
        case Contains(text=text):
            return f"instr({column}, ?) > 0", [text]
        case Search(text=text):
            return f"instr(lower({column}), ?) > 0", [fold(text)]
        case Range(gte=gte, lt=lt):
            parts: list[str] = []
            bounds: list[Any] = []
            if gte is not None:
                parts.append(f"{column} >= ?")
                bounds.append(_sql_value(gte))
            if lt is not None:
                parts.append(f"{column} < ?")
                bounds.append(_sql_value(lt))
            return "(" + (" AND ".join(parts) or "1") + ")", bounds
    raise TypeError(f"unknown filter {flt!r}")
