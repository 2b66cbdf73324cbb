"""MongoDB adapters on PyMongo's async API, for a standalone server or a replica set.

Event store (DESIGN.md): one document per commit makes an append atomic and
optimistically concurrent by itself (unique indexes do the refusing), so it uses no
transactions on any deployment. Its other writes do span documents, harmlessly: the
position counter is bumped before the commit is inserted, so a refused insert or a crash
in between leaves a gap that ``_void`` fills at once or ``read_all`` waits out; and
``mark_published`` only moves each commit's ``sent`` forward, so a run cut short hands
some events to the bus again, which at-least-once delivery allows. Wrapping counter and
insert in a transaction would close those gaps but make every concurrent append write to
the one counter document and conflict, serialising appends through retries.

Read store: a batch spans documents (counters, documents, the projection position).
Every write in it is idempotent by itself, so a batch interrupted part-way is completed
by replaying it. Where the deployment supports transactions (a replica set or a sharded
cluster; ``transactions="auto"`` detects one, ``"on"`` insists on it) the whole batch
also commits in one multi-document transaction, so a reader sees all of it or none. On a
standalone server (or ``"off"``) a reader can see a batch half applied.

The same code runs against ``tests/fakes/async_mongo.py`` in CI, which can play either,
and against FerretDB (standalone-like, no transactions; ``tests/brokers/FERRETDB.md``).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal
from uuid import UUID

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.common.envelope import Envelope
from services.common.errors import BadInput, ConcurrencyConflict, Conflict, Unavailable
from services.common.ports import (
    AnyOf,
    Batch,
    CollectionSpec,
    Contains,
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
    safe_name,
)

Doc = dict[str, Any]
_POSITIONS = "_positions"
# Compare-and-set loops only lose to a concurrent writer of the same document; this many
# losses in a row means something is wrong, and the caller should retry the whole batch.
_ATTEMPTS = 20

Transactions = Literal["auto", "on", "off"]


# --- event store ------------------------------------------------------------------------


class MongoEventStore(EventStore):
    """One document per commit in ``<service>_commits``; positions from ``<service>_counters``.

    A commit document holds its events, the stream slot it fills (unique on
    ``(stream, first_version)``: a stale writer is refused by the index), its event ids
    (unique multikey: an id is never stored twice), a contiguous block of global
    positions taken from a counter before the insert, and the outbox state: ``sent``
    (how many of its leading events reached the bus) and ``published`` (all of them).

    ``append`` also looks up all of a commit's ids before taking positions, so a reused
    id is refused without leaving a gap; the index remains what refuses one reused by a
    concurrent writer. (FerretDB's unique indexes compare an array as a whole, not per
    element, so there only the look-up and the unique ``_id``, the first id, refuse.)

    Positions are allocated before the insert, so a refused commit leaves a gap and two
    concurrent commits can become visible out of position order (see ``read_all``).
    """

    def __init__(
        self,
        db: AsyncDatabase[Any],
        service: str,
        *,
        gap_grace: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.commits: AsyncCollection[Doc] = db[f"{safe_name(service)}_commits"]
        self.counters: AsyncCollection[Doc] = db[f"{service}_counters"]
        self.gap_grace = gap_grace
        self.clock = clock

    async def start(self) -> None:
        await self.commits.create_index(
            [("stream", 1), ("first_version", 1)], unique=True, name="stream_slot"
        )
        await self.commits.create_index([("ids", 1)], unique=True, name="event_ids")
        await self.commits.create_index([("published", 1), ("position", 1)], name="outbox")
        await self.commits.create_index([("last_position", 1)], name="global_order")

    async def append(self, events: Sequence[Envelope], expected_version: int) -> list[Envelope]:
        check_commit(events, expected_version)
        first = events[0]
        ids = [str(e.id) for e in events]
        stored = await self.commits.find_one({"ids": {"$in": ids}})
        if stored is not None:
            return _same_commit(stored, events)
        current = await self._stream_version(first.stream)
        if current != expected_version:
            raise ConcurrencyConflict(
                f"stream {first.stream} is at version {current}, "
                f"not the expected {expected_version}"
            )
        counter = await self.counters.find_one_and_update(
            {"_id": "positions"},
            {"$inc": {"value": len(events)}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert counter is not None  # upsert with AFTER always returns the document
        last = int(counter["value"])
        start = last - len(events) + 1
        try:
            await self.commits.insert_one(
                {
                    "_id": ids[0],
                    "stream": first.stream,
                    "first_version": first.version,
                    "last_version": events[-1].version,
                    "ids": ids,
                    "position": start,
                    "last_position": last,
                    "events": [e.model_dump(mode="json", exclude={"position"}) for e in events],
                    "sent": 0,
                    "published": False,
                    "stored_at": self.clock(),
                }
            )
        except DuplicateKeyError:
            await self._void(start, last)
            return await self._refused(events)
        return [e.with_position(start + i) for i, e in enumerate(events)]

    async def _void(self, start: int, last: int) -> None:
        """Fill the positions of a refused commit, so readers need not wait at the gap."""
        key = f"void-{start}"
        await self.commits.insert_one(
            {
                "_id": key,
                "stream": f"\x00{key}",  # unique slot, never a real stream
                "first_version": 0,
                "last_version": 0,
                "ids": [key],
                "position": start,
                "last_position": last,
                "events": [],
                "sent": 0,
                "published": True,
                "stored_at": self.clock(),
                "void": True,
            }
        )

    async def _refused(self, events: Sequence[Envelope]) -> list[Envelope]:
        """Tell which unique index refused the insert: the fake's error names none."""
        first = events[0]
        stored = await self.commits.find_one({"ids": str(first.id)})
        if stored is not None:
            return _same_commit(stored, events)
        slot = {"stream": first.stream, "first_version": first.version}
        if await self.commits.find_one(slot, {"_id": 1}) is not None:
            raise ConcurrencyConflict(
                f"stream {first.stream} already has version {first.version}: "
                "another writer committed first"
            )
        raise Conflict("an event id of this commit is already stored in another commit")

    async def _stream_version(self, stream: str) -> int:
        last = await self.commits.find_one(
            {"stream": stream}, {"last_version": 1}, sort=[("first_version", -1)]
        )
        return int(last["last_version"]) if last else 0

    async def read_stream(
        self, stream: str, after_version: int = 0, to_version: int | None = None
    ) -> list[Envelope]:
        upper = to_version if to_version is not None else 2**62
        cursor = self.commits.find(
            {
                "stream": stream,
                "last_version": {"$gt": after_version},
                "first_version": {"$lte": upper},
            }
        ).sort("first_version", 1)
        return [
            event
            for doc in await cursor.to_list()
            for event in _events(doc)
            if after_version < event.version <= upper
        ]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Envelope]:
        """Events after ``after_position`` in position order, never skipping one for good.

        Positions are taken before the insert, so the commit holding position N may become
        visible after the one holding N+1. Reading stops at such a gap until the commit
        behind it is ``gap_grace`` seconds old: by then the missing positions belong to a
        refused commit and will never appear. A reader that resumes from the highest
        position it saw therefore misses nothing.
        """
        if limit <= 0:
            return []
        found: list[Envelope] = []
        expected = after_position + 1
        cursor = (
            self.commits.find({"last_position": {"$gt": after_position}})
            .sort("last_position", 1)
            .limit(limit)
        )
        try:
            async for doc in cursor:
                if doc["position"] > expected and not self._settled(doc):
                    break
                found += [e for e in _events(doc) if (e.position or 0) > after_position]
                expected = doc["last_position"] + 1
                if len(found) >= limit:
                    break
        finally:
            await cursor.close()
        return found[:limit]

    def _settled(self, doc: Doc) -> bool:
        return self.clock() - float(doc.get("stored_at", 0.0)) > self.gap_grace

    async def get_event(self, event_id: UUID) -> Envelope | None:
        doc = await self.commits.find_one({"ids": str(event_id)})
        if doc is None:
            return None
        return _events(doc)[doc["ids"].index(str(event_id))]

    async def max_position(self) -> int:
        last = await self.commits.find_one(
            {"void": {"$ne": True}}, {"last_position": 1}, sort=[("last_position", -1)]
        )
        return int(last["last_position"]) if last else 0

    async def unpublished(self, limit: int = 500) -> list[Envelope]:
        """Unsent events of unpublished commits; every such commit has one, so ``limit``
        commits are always enough."""
        if limit <= 0:
            return []
        cursor = self.commits.find({"published": False}).sort("position", 1).limit(limit)
        pending: list[Envelope] = []
        try:
            async for doc in cursor:
                pending += _events(doc)[doc.get("sent", 0) :]
                if len(pending) >= limit:
                    break
        finally:
            await cursor.close()
        return pending[:limit]

    async def mark_published(self, events: Sequence[Envelope]) -> None:
        """Advance each commit's ``sent`` over the events given, in order from where it was.

        A commit is flagged ``published`` once all its events are sent; only the prefix
        that follows on from ``sent`` counts, so an event left out is handed out again.
        """
        if not events:
            return
        given = {str(e.id) for e in events}
        docs = await self.commits.find(
            {"ids": {"$in": sorted(given)}, "published": False}, {"ids": 1, "sent": 1}
        ).to_list()
        done: list[str] = []
        for doc in docs:
            ids: list[str] = doc["ids"]
            sent = start = doc.get("sent", 0)
            while sent < len(ids) and ids[sent] in given:
                sent += 1
            if sent == len(ids):
                done.append(doc["_id"])
            elif sent > start:
                await self.commits.update_one({"_id": doc["_id"]}, {"$max": {"sent": sent}})
        if done:
            await self.commits.update_many({"_id": {"$in": done}}, {"$set": {"published": True}})


def _events(doc: Doc) -> list[Envelope]:
    return [
        Envelope.model_validate({**body, "position": doc["position"] + offset})
        for offset, body in enumerate(doc["events"])
    ]


def _same_commit(doc: Doc, events: Sequence[Envelope]) -> list[Envelope]:
    """A retried commit: the same event ids in the same stream slots, or a conflict."""
    stored = _events(doc)
    same = len(stored) == len(events) and all(
        (s.id, s.stream, s.version, s.type) == (e.id, e.stream, e.version, e.type)
        for s, e in zip(stored, events, strict=True)
    )
    if not same:
        reused = sorted(set(doc["ids"]) & {str(e.id) for e in events})
        raise Conflict(f"event id {reused[0]} is already stored with another commit")
    return stored


# --- read store -------------------------------------------------------------------------


class MongoReadStore(ReadStore):
    """One MongoDB collection per read-model collection, plus ``_positions``.

    A stored document is ``{_id: key, id: key, version, ...fields, _pos: {guard: n}}``:
    ``_pos`` records, per projection and source, the last source position whose
    increments the document absorbed. A collection with ``search`` fields also keeps
    ``_grams`` (``grams``), under a multikey index: a ``Search`` asks for all of the text's
    grams there, then checks the substring with an (escaped) regex. Readers never see
    ``_id``, ``_pos`` or ``_grams``. Totals are ``count_documents`` (on a server, a
    ``COUNT_SCAN`` of the filter's index), not counters: ``CountSpec`` is SQLite's.

    ``transactions``: ``"auto"`` commits each batch in a transaction when the deployment
    supports them (asked once, at the first commit), ``"on"`` refuses to commit without
    them, ``"off"`` never uses them.
    """

    def __init__(self, db: AsyncDatabase[Any], *, transactions: Transactions = "auto") -> None:
        if transactions not in ("auto", "on", "off"):
            raise ValueError(f"transactions must be auto, on or off, not {transactions!r}")
        self.db = db
        self.positions: AsyncCollection[Doc] = db[_POSITIONS]
        self.transactions = transactions
        self._supported: bool | None = None  # whether the deployment has transactions
        self._specs: dict[str, CollectionSpec] = {}

    async def ensure(self, specs: Sequence[CollectionSpec]) -> None:
        await self.positions.create_index([("projection", 1)], name="by_projection")  # reset()
        for spec in specs:
            if safe_name(spec.name) == _POSITIONS:
                raise ValueError(f"{_POSITIONS} is the adapter's own collection")
            coll = self.db[spec.name]
            for name in spec.indexes:
                await coll.create_index([(safe_name(name), 1), ("_id", 1)], name=f"by_{name}")
            if spec.search:
                await coll.create_index([("_grams", 1)], name="by_grams")
                await _backfill_grams(coll, spec.search)
        self._specs.update({spec.name: spec for spec in specs})

    def _coll(self, collection: str) -> AsyncCollection[Doc]:
        if collection not in self._specs:
            raise KeyError(f"unknown collection {collection!r}: call ensure() first")
        return self.db[collection]

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        doc = await self._coll(collection).find_one({"_id": key}, _HIDDEN)
        return _public(doc) if doc else None

    async def get_many(self, collection: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        docs = await self._coll(collection).find({"_id": {"$in": wanted}}, _HIDDEN).to_list()
        return {doc["_id"]: _public(doc) for doc in docs}

    async def find(self, query: Query) -> Page:
        coll = self._coll(query.collection)
        where = _where(query.filters, self._specs[query.collection].search)
        order = "_id" if query.order_by == "id" else safe_name(query.order_by)
        page = where
        if query.after:
            value, key = decode_cursor(query.after)
            after = _after(order, value, key)
            page = {"$and": [where, after]} if where else after
        first = max(query.first, 0)
        sort = [("_id", 1)] if order == "_id" else [(order, 1), ("_id", 1)]
        docs = await coll.find(page, _HIDDEN).sort(sort).limit(first + 1).to_list()
        total = await coll.count_documents(where)
        has_next = len(docs) > first
        docs = docs[:first]
        cursor = encode_cursor(docs[-1].get(order), docs[-1]["_id"]) if docs else None
        return Page([_public(doc) for doc in docs], total, has_next, cursor)

    async def commit(self, batch: Batch) -> None:
        """Apply a batch: counters, then documents, then the position; in a transaction
        when the deployment has them.

        Every step is idempotent by itself: an increment counts only when its position is
        above what that document recorded for this projection and source (checked and
        recorded in the same single-document update), and a put only replaces an older
        version. So without a transaction, after a crash following step 1 or 2, replaying
        from the stored position skips the increments already counted and re-applies the
        puts, ending where an uninterrupted commit ends; meanwhile a reader can see the
        batch half applied. Counters go before documents because that is the order SQLite
        applies them in (a put replaces a document's counters); the position goes last so
        it never claims more than the documents hold.

        In a transaction the same steps run inside it, so the batch is all or nothing for
        readers too. A write conflict with a concurrent batch is a transient error that
        ``with_transaction`` retries; a duplicate key (a document a concurrent batch
        inserted after this one's snapshot) aborts the transaction on the server, so the
        whole batch is retried here.
        """
        colls = {c: self._coll(c) for c in {p.collection for p in batch.puts}}
        colls.update({c: self._coll(c) for c in {i.collection for i in batch.increments}})
        if not await self._in_transactions():
            await self._apply(batch, colls, None)
            return

        async def apply(session: AsyncClientSession) -> None:
            await self._apply(batch, colls, session)

        async with self.db.client.start_session() as session:
            for _ in range(_ATTEMPTS):
                try:
                    await session.with_transaction(apply)
                    return
                except DuplicateKeyError:
                    continue
        raise Unavailable("read-model documents kept changing under the batch; retry it")

    async def _in_transactions(self) -> bool:
        if self.transactions == "off":
            return False
        if self._supported is None:
            hello = await self.db.client.admin.command("hello")
            self._supported = "setName" in hello or hello.get("msg") == "isdbgrid"
        if self.transactions == "on" and not self._supported:
            raise Unavailable(
                "mongodb_transactions is 'on' (SHUANGJIAN_MONGODB_TRANSACTIONS) but this "
                "MongoDB deployment is a standalone server, which has no transactions: "
                "use a replica set, or set it to 'auto' or 'off'"
            )
        return self._supported

    async def _apply(
        self,
        batch: Batch,
        colls: dict[str, AsyncCollection[Doc]],
        session: AsyncClientSession | None,
    ) -> None:
        guard = _guard(batch.projection, batch.source)
        await self._increment(colls, guard, batch.increments, session)
        for put in latest_puts(batch.puts):
            await self._put(colls[put.collection], put, session)
        await self.positions.update_one(
            {"_id": guard},
            {
                "$max": {"position": batch.position},
                "$set": {"projection": batch.projection, "source": batch.source},
            },
            upsert=True,
            session=session,
        )

    async def _increment(
        self,
        colls: dict[str, AsyncCollection[Doc]],
        guard: str,
        increments: Sequence[Increment],
        session: AsyncClientSession | None,
    ) -> None:
        grouped: dict[str, dict[str, list[Increment]]] = {}
        for inc in increments:
            for name in inc.deltas:
                safe_name(name)
            grouped.setdefault(inc.collection, {}).setdefault(inc.key, []).append(inc)
        for collection, by_key in grouped.items():
            coll = colls[collection]
            docs = await coll.find(
                {"_id": {"$in": list(by_key)}}, {"_pos": 1}, session=session
            ).to_list()
            stored = {doc["_id"]: _applied(doc, guard) for doc in docs}
            for key, incs in by_key.items():
                await self._add(coll, key, guard, incs, stored.get(key), session)

    async def _add(
        self,
        coll: AsyncCollection[Doc],
        key: str,
        guard: str,
        incs: Sequence[Increment],
        applied: int | None,
        session: AsyncClientSession | None,
    ) -> None:
        """Compare-and-set on the document's ``_pos.<guard>``; a lost race re-reads it.

        In a transaction a lost race (a duplicate key) has aborted the transaction on the
        server, so it is raised for ``commit`` to retry the batch instead.
        """
        field = f"_pos.{guard}"
        for _ in range(_ATTEMPTS):
            fresh = [i for i in incs if applied is None or i.position > applied]
            if not fresh:
                return
            deltas: dict[str, int] = {}
            for inc in fresh:
                for name, delta in inc.deltas.items():
                    deltas[name] = deltas.get(name, 0) + delta
            update: Doc = {
                "$set": {field: max(i.position for i in fresh), "id": key},
                "$setOnInsert": {"version": 0},
            }
            if deltas:
                update["$inc"] = deltas
            expect = {"$exists": False} if applied is None else applied
            try:
                await coll.update_one(
                    {"_id": key, field: expect}, update, upsert=True, session=session
                )
                return
            except DuplicateKeyError:
                if session is not None:
                    raise
                applied = _applied(await coll.find_one({"_id": key}, {"_pos": 1}), guard)
        raise Unavailable(f"read-model document {key!r} kept changing; retry the batch")

    async def _put(
        self, coll: AsyncCollection[Doc], put: Put, session: AsyncClientSession | None
    ) -> None:
        """Replace the document if ``put`` is newer, keeping its ``_pos`` (compare-and-set).

        As in ``_add``, a duplicate key inside a transaction is raised, not retried here.
        """
        if "_id" in put.doc or "_pos" in put.doc:
            raise ValueError("_id and _pos are the adapter's own fields")
        body = {**put.doc, "id": put.key, "version": put.version}
        if searched := self._specs[coll.name].search:
            body["_grams"] = grams(body, searched)
        for _ in range(_ATTEMPTS):
            current = await coll.find_one(
                {"_id": put.key}, {"version": 1, "_pos": 1}, session=session
            )
            if current is None:
                try:
                    await coll.insert_one({"_id": put.key, **body}, session=session)
                    return
                except DuplicateKeyError:
                    if session is not None:
                        raise
                    continue
            if current.get("version", 0) >= put.version:
                return
            pos = current.get("_pos")
            replacement = body if pos is None else {**body, "_pos": pos}
            expect = {"$exists": False} if pos is None else pos
            done = await coll.replace_one(
                {"_id": put.key, "version": {"$lt": put.version}, "_pos": expect},
                replacement,
                session=session,
            )
            if done.matched_count:
                return
        raise Unavailable(f"read-model document {put.key!r} kept changing; retry the batch")

    async def position(self, projection: str, source: str) -> int:
        doc = await self.positions.find_one({"_id": _guard(projection, source)})
        return int(doc["position"]) if doc else 0

    async def reset(self, projection: str, collections: Sequence[str]) -> None:
        """Drop a projection's positions and documents, in an order any crash can survive.

        The steps are separate writes, so a crash can stop the reset anywhere; whatever it
        leaves, replaying from the stored positions (a restart) ends where an uninterrupted
        replay does, and running the reset again finishes it:

        1. The positions go first: from then on a restart replays everything. (Documents
           first would leave positions claiming events applied to documents now gone,
           which no replay would restore.)
        2. Then the documents without counters. One left behind still holds its latest
           version, so the replay's puts skip it, and the counters it contributed to are
           all still there.
        3. Then the counter documents. One left behind records (``_pos``) the last source
           position it absorbed, so the replay adds to it only what came after, while
           every document it is counted from is gone and is applied afresh.
        """
        colls = [self._coll(c) for c in collections]
        await self.positions.delete_many({"projection": projection})
        for coll in colls:
            await coll.delete_many({"_pos": {"$exists": False}})
        for coll in colls:
            await coll.delete_many({})

    async def dump(self, collection: str) -> list[dict[str, Any]]:
        docs = await self._coll(collection).find({}, _HIDDEN).sort("_id", 1).to_list()
        return [_public(doc) for doc in docs]


def _guard(projection: str, source: str) -> str:
    """``projection|source`` usable as one field name: no dots, no ``$``, no ambiguity."""
    escape = re.compile(r"[%.$|]")
    return "|".join(escape.sub(lambda m: f"%{ord(m[0]):02X}", p) for p in (projection, source))


def _applied(doc: Doc | None, guard: str) -> int | None:
    return (doc or {}).get("_pos", {}).get(guard)


_HIDDEN = {"_pos": 0, "_grams": 0}


def _public(doc: Doc) -> dict[str, Any]:
    doc.pop("_id", None)
    doc.pop("_pos", None)
    doc.pop("_grams", None)
    return doc


def grams(doc: Doc, fields: Sequence[str]) -> list[str]:
    """``field:gram`` for every character and every two consecutive characters of the
    searched fields (folded as ``Search`` compares)."""
    found: dict[str, None] = {}
    for field in fields:
        text = doc.get(field)
        if isinstance(text, str):
            chars = fold(text)
            found.update(dict.fromkeys(f"{field}:{c}" for c in chars))
            found.update(dict.fromkeys(f"{field}:{a}{b}" for a, b in itertools.pairwise(chars)))
    return list(found)


async def _backfill_grams(coll: AsyncCollection[Doc], fields: Sequence[str]) -> None:
    """Documents stored before the collection was searchable get their grams (once)."""
    for doc in await coll.find({"_grams": {"$exists": False}}, {f: 1 for f in fields}).to_list():
        await coll.update_one(
            {"_id": doc["_id"], "_grams": {"$exists": False}},
            {"$set": {"_grams": grams(doc, fields)}},
        )


_SCALAR = (str, int, float, bool, type(None))


def _after(order: str, value: Any, key: str) -> Doc:
    """Keyset condition: strictly after ``(value, key)`` in ``(order, _id)`` order."""
    if order == "_id":
        return {"_id": {"$gt": key}}
    if not isinstance(value, _SCALAR):
        raise BadInput("not a cursor this server issued", field="after")
    if value is None:
        return {"$or": [{order: None, "_id": {"$gt": key}}, {order: {"$ne": None}}]}
    return {"$or": [{order: {"$gt": value}}, {order: value, "_id": {"$gt": key}}]}


def _where(filters: Sequence[Filter | AnyOf], searched: Sequence[str] = ()) -> Doc:
    clauses = [
        _any(flt, searched) if isinstance(flt, AnyOf) else _clause(flt, searched) for flt in filters
    ]
    return {"$and": clauses} if clauses else {}


def _any(flt: AnyOf, searched: Sequence[str]) -> Doc:
    if not flt.alternatives:
        return {"_id": {"$in": []}}
    return {"$or": [_clause(alt, searched) for alt in flt.alternatives]}


def _clause(flt: Filter, searched: Sequence[str] = ()) -> Doc:
    name = "_id" if flt.field == "id" else safe_name(flt.field)
    match flt:
        case Eq(value=value):
            return {name: {"$eq": value}}
        case In(values=values):
            return {name: {"$in": list(values)}}
        case NotIn(values=values):
            return {name: {"$nin": list(values)}}
        case Prefix(prefix=prefix):
            return {name: {"$regex": "^" + re.escape(prefix)}}
        case Contains(text=text):
            return {name: {"$regex": re.escape(text)}}
        case Search(text=text):
            # ASCII letters in either case, all else literally: the same as SQLite's lower().
            pattern = "".join(
                f"[{c}{c.upper()}]" if "a" <= c <= "z" else re.escape(c) for c in fold(text)
            )
            found = {name: {"$regex": pattern}}
            if text and name in searched:
                wanted = grams({name: text}, (name,))
                return {"$and": [{"_grams": {"$all": wanted}}, found]}
            return found
        case Range(gte=gte, lt=lt):
            bounds = {op: v for op, v in (("$gte", gte), ("$lt", lt)) if v is not None}
            return {name: bounds} if bounds else {}
    raise TypeError(f"unknown filter {flt!r}")
