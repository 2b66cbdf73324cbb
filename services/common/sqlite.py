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
import json
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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
    Eq,
    EventStore,
    Filter,
    In,
    NotIn,
    Page,
    Prefix,
    Query,
    Range,
    ReadStore,
    check_commit,
    decode_cursor,
    encode_cursor,
    latest_puts,
    merge_increments,
    safe_name,
)

T = TypeVar("T")


MAX_GROUP = 512
"""Writes committed together at most (``SQLiteDatabase.write``)."""


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
    return Envelope.model_validate_json(body).with_position(position)


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
    current = conn.execute(
        "SELECT coalesce(max(version), 0) FROM events WHERE stream = ?", (first.stream,)
    ).fetchone()[0]
    if current != expected_version:
        raise ConcurrencyConflict(
            f"stream {first.stream} is at version {current}, not the expected {expected_version}"
        )
    return _insert(conn, events, bodies)


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
    """Read models as JSON documents, one table per collection, JSON-expression indexes."""

    def __init__(self, path: str | Path) -> None:
        self.db = SQLiteDatabase(path, durable=False)
        self._known: set[str] = set()

    async def ensure(self, specs: Sequence[CollectionSpec]) -> None:
        def txn(conn: sqlite3.Connection) -> None:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS positions (projection TEXT NOT NULL, "
                "source TEXT NOT NULL, position INTEGER NOT NULL, "
                "PRIMARY KEY (projection, source))"
            )
            for spec in specs:
                _create_collection(conn, spec)

        await self.db.write(txn)
        self._known.update(spec.name for spec in specs)

    async def close(self) -> None:
        await self.db.close()

    def _table(self, collection: str) -> str:
        if collection not in self._known:
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
        wanted = list(dict.fromkeys(keys))

        return await self.db.read(lambda conn: _docs_by_key(conn, table, wanted))

    async def find(self, query: Query) -> Page:
        table = self._table(query.collection)
        where, params = _where(query.filters)
        order = "key" if query.order_by == "id" else _field(query.order_by)
        page_where, page_params = list(where), list(params)
        if query.after:
            value, key = decode_cursor(query.after)
            page_where.append(f"({order}, key) > (?, ?)")
            page_params += [_sql_value(value), key]
        cond = " AND ".join(where) or "1"
        page_cond = " AND ".join(page_where) or "1"

        def run(conn: sqlite3.Connection) -> Page:
            total = conn.execute(f"SELECT count(*) FROM {table} WHERE {cond}", params).fetchone()[0]
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

        # A run of thousands of events (a rebuild) touches thousands of documents: each
        # table is read with one SELECT per 500 keys and written with one executemany.
        def txn(conn: sqlite3.Connection) -> None:
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
                doc = {**put.doc, "id": put.key, "version": put.version}
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
        def txn(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM positions WHERE projection = ?", (projection,))
            for table in tables:
                conn.execute(f"DELETE FROM {table}")

        await self.db.write(txn)

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
    """The stored documents of these keys (distinct), 500 keys per SELECT."""
    found: dict[str, Any] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for key, doc in conn.execute(f"SELECT key, doc FROM {table} WHERE key IN ({marks})", chunk):
            found[key] = json.loads(doc)
    return found


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


def _where(filters: Sequence[Filter | AnyOf]) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for flt in filters:
        if isinstance(flt, AnyOf):
            parts = [_clause(alt) for alt in flt.alternatives]
            clauses.append("(" + " OR ".join(p[0] for p in parts) + ")")
            for part in parts:
                params += part[1]
        else:
            clause, values = _clause(flt)
            clauses.append(clause)
            params += values
    return clauses, params


def _clause(flt: Filter) -> tuple[str, list[Any]]:
    column = "key" if flt.field == "id" else _field(flt.field)
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
        case Prefix(prefix=prefix):
            # A range on the index instead of LIKE, which SQLite cannot index here.
            return f"({column} >= ? AND {column} < ?)", [prefix, prefix + "\U0010ffff"]
        case Contains(text=text):
            return f"instr({column}, ?) > 0", [text]
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
