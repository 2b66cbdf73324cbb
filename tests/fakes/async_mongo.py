"""An in-process stand-in for PyMongo's async API (``AsyncMongoClient``), over mongomock.

Only the subset the adapters in ``services/common/mongo.py`` use, with PyMongo's calling
conventions: ``find()`` returns a cursor without awaiting, everything that talks to the
server is a coroutine. Each coroutine yields to the event loop once before doing its
work, so concurrent callers interleave between operations as they would against a
server; each operation itself is atomic, as a single-document write is on a server.

Where it differs from a server: mongomock compares a unique index on an array field as
a whole array, while a server indexes each element; ``_multikey_uniques`` adds the
per-element check (ignoring sparse and partial index options). ``DuplicateKeyError``
carries no ``details``.

``AsyncFakeClient(replica_set=True)`` acts as a replica set: ``hello`` reports a
``setName`` and ``with_transaction`` runs its callback as a transaction. A transaction
snapshots each collection the first time its session touches it and restores those
snapshots when it aborts, so an aborted transaction leaves no trace. Unlike a server,
transactions are serialised rather than optimistic (a second one waits for the first
instead of meeting a write conflict), and an operation outside the transaction waits
until it ends instead of reading the last committed snapshot; either way nobody sees a
transaction half done. As on a server, an operation that fails inside a transaction
aborts it, and later operations in it fail with a ``TransientTransactionError``. An
operation without ``session=`` made while its own task runs a transaction would, on a
server, run outside that transaction; here it raises ``AssertionError``. Without the
option ``hello`` reports a standalone server, which has no transactions.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import mongomock
from mongomock import helpers
from pymongo.errors import DuplicateKeyError, InvalidOperation, OperationFailure, PyMongoError

Doc = dict[str, Any]
T = TypeVar("T")
# PyMongo retries a transient transaction error for up to two minutes; the fake counts.
TRANSACTION_ATTEMPTS = 10


async def _turn() -> None:
    await asyncio.sleep(0)


class AsyncFakeCursor:
    """``AsyncCursor``: options are chainable and synchronous, fetching is awaited."""

    def __init__(
        self,
        cursor: mongomock.collection.Cursor,
        collection: AsyncFakeCollection,
        session: AsyncFakeSession | None,
    ) -> None:
        self._cursor = cursor
        self._collection = collection
        self._session = session

    def sort(self, key_or_list: Any, direction: int | None = None) -> Self:
        self._cursor.sort(key_or_list, direction)
        return self

    def limit(self, limit: int) -> Self:
        self._cursor.limit(limit)
        return self

    def skip(self, skip: int) -> Self:
        self._cursor.skip(skip)
        return self

    async def to_list(self, length: int | None = None) -> list[Doc]:
        if length is not None and length < 1:
            raise ValueError("to_list() length must be greater than 0")
        rows: Iterator[Doc] = self._cursor
        return await self._collection._run(
            self._session, lambda: list(itertools.islice(rows, length))
        )

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Doc:
        row = await self._collection._run(self._session, lambda: next(self._cursor, None))
        if row is None:
            raise StopAsyncIteration
        return row

    async def close(self) -> None:
        self._cursor.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncFakeCollection:
    """``AsyncCollection``: each method awaits one turn, then runs mongomock's.

    Every method takes ``session=``: inside a transaction the operation joins it.
    """

    def __init__(self, collection: mongomock.Collection, client: AsyncFakeClient) -> None:
        self._sync = collection
        self._client = client
        _multikey_uniques(collection)

    @property
    def name(self) -> str:
        return str(self._sync.name)

    async def _run(self, session: AsyncFakeSession | None, operation: Callable[[], T]) -> T:
        await _turn()
        await self._client._enter(session)
        if session is None or not session.in_transaction:
            return operation()
        session._touch(self._sync)
        try:
            return operation()
        except BaseException:
            session._aborted = True  # as on a server: a failed operation ends the transaction
            raise

    def find(
        self, *args: Any, session: AsyncFakeSession | None = None, **kwargs: Any
    ) -> AsyncFakeCursor:
        return AsyncFakeCursor(self._sync.find(*args, **kwargs), self, session)

    async def find_one(
        self,
        filter: Any = None,
        *args: Any,
        session: AsyncFakeSession | None = None,
        **kwargs: Any,
    ) -> Doc | None:
        return await self._run(session, lambda: self._sync.find_one(filter, *args, **kwargs))

    async def insert_one(
        self, document: Doc, *, session: AsyncFakeSession | None = None, **kwargs: Any
    ) -> Any:
        return await self._run(session, lambda: self._sync.insert_one(document, **kwargs))

    async def insert_many(
        self, documents: list[Doc], *, session: AsyncFakeSession | None = None, **kwargs: Any
    ) -> Any:
        return await self._run(session, lambda: self._sync.insert_many(documents, **kwargs))

    async def update_one(
        self,
        filter: Mapping[str, Any],
        update: Any,
        upsert: bool = False,
        *,
        session: AsyncFakeSession | None = None,
        **kwargs: Any,
    ) -> Any:
        return await self._run(
            session, lambda: self._sync.update_one(filter, update, upsert=upsert, **kwargs)
        )

    async def update_many(
        self,
        filter: Mapping[str, Any],
        update: Any,
        upsert: bool = False,
        *,
        session: AsyncFakeSession | None = None,
        **kwargs: Any,
    ) -> Any:
        return await self._run(
            session, lambda: self._sync.update_many(filter, update, upsert=upsert, **kwargs)
        )

    async def replace_one(
        self,
        filter: Mapping[str, Any],
        replacement: Doc,
        upsert: bool = False,
        *,
        session: AsyncFakeSession | None = None,
        **kwargs: Any,
    ) -> Any:
        return await self._run(
            session, lambda: self._sync.replace_one(filter, replacement, upsert=upsert, **kwargs)
        )

    async def find_one_and_update(
        self,
        filter: Mapping[str, Any],
        update: Any,
        *args: Any,
        session: AsyncFakeSession | None = None,
        **kwargs: Any,
    ) -> Doc | None:
        return await self._run(
            session, lambda: self._sync.find_one_and_update(filter, update, *args, **kwargs)
        )

    async def count_documents(
        self, filter: Mapping[str, Any], *, session: AsyncFakeSession | None = None, **kwargs: Any
    ) -> int:
        return await self._run(session, lambda: int(self._sync.count_documents(filter, **kwargs)))

    async def delete_one(
        self, filter: Mapping[str, Any], *, session: AsyncFakeSession | None = None, **kwargs: Any
    ) -> Any:
        return await self._run(session, lambda: self._sync.delete_one(filter, **kwargs))

    async def delete_many(
        self, filter: Mapping[str, Any], *, session: AsyncFakeSession | None = None, **kwargs: Any
    ) -> Any:
        return await self._run(session, lambda: self._sync.delete_many(filter, **kwargs))

    async def create_index(
        self, keys: Any, *, session: AsyncFakeSession | None = None, **kwargs: Any
    ) -> str:
        return await self._run(session, lambda: str(self._sync.create_index(keys, **kwargs)))

    async def drop(self, *, session: AsyncFakeSession | None = None) -> None:
        await self._run(session, self._sync.drop)


class AsyncFakeDatabase:
    """``AsyncDatabase``: ``db[name]`` and ``get_collection`` hand out collections."""

    def __init__(self, database: mongomock.Database, client: AsyncFakeClient) -> None:
        self._sync = database
        self._client = client
        self._collections: dict[str, AsyncFakeCollection] = {}

    @property
    def name(self) -> str:
        return str(self._sync.name)

    @property
    def client(self) -> AsyncFakeClient:
        return self._client

    def get_collection(self, name: str, **_options: Any) -> AsyncFakeCollection:
        if name not in self._collections:
            self._collections[name] = AsyncFakeCollection(
                self._sync.get_collection(name), self._client
            )
        return self._collections[name]

    def __getitem__(self, name: str) -> AsyncFakeCollection:
        return self.get_collection(name)

    async def command(self, command: str | Mapping[str, Any], **kwargs: Any) -> Doc:
        """``hello`` answers as the deployment the client plays; the rest go to mongomock."""
        await _turn()
        spec = {command: 1} if isinstance(command, str) else dict(command)
        if next(iter(spec)) == "hello":
            return self._client._hello()
        return dict(self._sync.command(spec, **kwargs))

    async def drop_collection(self, name: str) -> None:
        await _turn()
        await self._client._enter(None)
        self._sync.drop_collection(name)


class AsyncFakeSession:
    """``AsyncClientSession``: at most one transaction at a time, as in PyMongo.

    A transaction remembers each collection its operations touched as it was before the
    first one; aborting puts those contents back.
    """

    def __init__(self, client: AsyncFakeClient) -> None:
        self.client = client
        self.has_ended = False
        self._snapshots: dict[int, tuple[Any, Any]] | None = None
        self._aborted = False

    @property
    def in_transaction(self) -> bool:
        return self._snapshots is not None

    async def start_transaction(self, *_args: Any, **_kwargs: Any) -> None:
        if self.has_ended:
            raise InvalidOperation("Cannot use ended session")
        if self.in_transaction:
            raise InvalidOperation("Transaction already in progress")
        if not self.client.replica_set:
            raise OperationFailure(
                "Transaction numbers are only allowed on a replica set member or mongos",
                code=20,
            )
        await self.client._begin()
        self._snapshots = {}
        self._aborted = False

    async def commit_transaction(self) -> None:
        if not self.in_transaction:
            raise InvalidOperation("No transaction started")
        if self._aborted:
            self._end(restore=True)
            raise _no_such_transaction()
        self._end(restore=False)

    async def abort_transaction(self) -> None:
        if not self.in_transaction:
            raise InvalidOperation("No transaction started")
        self._end(restore=True)

    async def with_transaction(
        self, callback: Callable[[AsyncFakeSession], Awaitable[T]], *_args: Any, **_kwargs: Any
    ) -> T:
        """PyMongo's loop: a ``TransientTransactionError`` runs the whole callback again."""
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            await self.start_transaction()
            try:
                result = await callback(self)
            except BaseException as exc:
                if self.in_transaction:
                    await self.abort_transaction()
                if _transient(exc) and attempt < TRANSACTION_ATTEMPTS:
                    continue
                raise
            if not self.in_transaction:
                return result
            try:
                await self.commit_transaction()
            except PyMongoError as exc:
                if _transient(exc) and attempt < TRANSACTION_ATTEMPTS:
                    continue
                raise
            return result
        raise AssertionError("unreachable")

    async def end_session(self) -> None:
        if self.in_transaction:
            await self.abort_transaction()
        self.has_ended = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.end_session()

    def _touch(self, collection: mongomock.Collection) -> None:
        assert self._snapshots is not None
        store = collection._store
        if id(store) not in self._snapshots:
            self._snapshots[id(store)] = (store, copy.deepcopy(store._documents))

    def _end(self, *, restore: bool) -> None:
        snapshots, self._snapshots = self._snapshots or {}, None
        if restore:
            for store, documents in snapshots.values():
                store._documents = documents
        self.client._finish()

    def _check_alive(self) -> None:
        if self._aborted:
            raise _no_such_transaction()


class AsyncFakeClient:
    """``AsyncMongoClient`` without a server: every client has its own data.

    ``replica_set=True``: a replica set with transactions; otherwise a standalone server.
    """

    def __init__(self, *, replica_set: bool = False) -> None:
        self.replica_set = replica_set
        self._sync = mongomock.MongoClient()
        self._databases: dict[str, AsyncFakeDatabase] = {}
        self._transactions = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None

    def get_database(self, name: str, **_options: Any) -> AsyncFakeDatabase:
        if name not in self._databases:
            self._databases[name] = AsyncFakeDatabase(self._sync.get_database(name), self)
        return self._databases[name]

    def __getitem__(self, name: str) -> AsyncFakeDatabase:
        return self.get_database(name)

    @property
    def admin(self) -> AsyncFakeDatabase:
        return self.get_database("admin")

    def start_session(self, **_options: Any) -> AsyncFakeSession:
        return AsyncFakeSession(self)

    async def drop_database(self, name: str) -> None:
        await _turn()
        await self._enter(None)
        self._sync.drop_database(name)
        self._databases.pop(name, None)

    async def close(self) -> None:
        self._sync.close()

    def _hello(self) -> Doc:
        reply: Doc = {"isWritablePrimary": True, "maxWireVersion": 21, "ok": 1.0}
        if self.replica_set:
            reply |= {"setName": "rs0", "hosts": ["fake:27017"], "primary": "fake:27017"}
        return reply

    async def _enter(self, session: AsyncFakeSession | None) -> None:
        """Let an operation in: into its transaction, or once no transaction is running."""
        if session is not None:
            if session.client is not self:
                raise InvalidOperation("Can only use session with the client that started it")
            if session.has_ended:
                raise InvalidOperation("Cannot use ended session")
            if session.in_transaction:
                session._check_alive()
                return
        if self._owner is not None and self._owner is asyncio.current_task():
            raise AssertionError(
                "an operation without session= inside a transaction runs outside it on a server"
            )
        async with self._transactions:
            pass

    async def _begin(self) -> None:
        if self._owner is not None and self._owner is asyncio.current_task():
            raise AssertionError("a transaction started inside another would wait for itself")
        await self._transactions.acquire()
        self._owner = asyncio.current_task()

    def _finish(self) -> None:
        self._owner = None
        self._transactions.release()


def _no_such_transaction() -> OperationFailure:
    return OperationFailure(
        "Transaction has been aborted.",
        code=251,
        details={"codeName": "NoSuchTransaction", "errorLabels": ["TransientTransactionError"]},
    )


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, PyMongoError) and exc.has_error_label("TransientTransactionError")


def _multikey_uniques(collection: mongomock.Collection) -> None:
    """Make unique indexes refuse a value found in two documents' arrays, as a server does.

    mongomock looks for a duplicate by querying with the new document's value; for an
    array that query matches only an equal array, so an id shared by two commits slips
    through. Wraps mongomock's private hook, which runs (with rollback) after every
    insert, update and replace.
    """
    original = collection._ensure_uniques

    def ensure_uniques(new_data: Doc) -> None:
        original(new_data)
        for index in collection._store.indexes.values():
            fields = [name for name, _ in index.get("key", ())]
            if not index.get("unique") or not any(
                isinstance(_value(new_data, f), list) for f in fields
            ):
                continue
            mine = _index_keys(new_data, fields)
            for other in collection._store.documents:
                if other.get("_id") != new_data.get("_id") and mine & _index_keys(other, fields):
                    raise DuplicateKeyError("E11000 duplicate key error (multikey)", 11000)

    collection._ensure_uniques = ensure_uniques


def _value(doc: Doc, field: str) -> Any:
    try:
        return helpers.get_value_by_dot(doc, field)
    except KeyError:
        return None


def _index_keys(doc: Doc, fields: list[str]) -> set[tuple[str, ...]]:
    """The index entries of ``doc``: one per element of an array field."""
    per_field = []
    for field in fields:
        value = _value(doc, field)
        values = value if isinstance(value, list) and value else [value]
        per_field.append([repr(v) for v in values])
    return set(itertools.product(*per_field))
