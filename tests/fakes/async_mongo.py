"""An in-process stand-in for PyMongo's async API (``AsyncMongoClient``), over mongomock.

Only the subset the adapters in ``services/common/mongo.py`` use, with PyMongo's calling
conventions: ``find()`` returns a cursor without awaiting, everything that talks to the
server is a coroutine. Each coroutine yields to the event loop once before doing its
work, so concurrent callers interleave between operations as they would against a
server; each operation itself is atomic, as a single-document write is on a server.

Where it differs from a server: mongomock compares a unique index on an array field as
a whole array, while a server indexes each element; ``_multikey_uniques`` adds the
per-element check (ignoring sparse and partial index options). ``DuplicateKeyError``
carries no ``details``. There are no sessions or transactions.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, Self

import mongomock
from mongomock import helpers
from pymongo.errors import DuplicateKeyError

Doc = dict[str, Any]


async def _turn() -> None:
    await asyncio.sleep(0)


class AsyncFakeCursor:
    """``AsyncCursor``: options are chainable and synchronous, fetching is awaited."""

    def __init__(self, cursor: mongomock.collection.Cursor) -> None:
        self._cursor = cursor

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
        await _turn()
        rows: Iterator[Doc] = self._cursor
        return list(itertools.islice(rows, length))

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Doc:
        await _turn()
        try:
            return next(self._cursor)
        except StopIteration:
            raise StopAsyncIteration from None

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
    """``AsyncCollection``: each method awaits one turn, then runs mongomock's."""

    def __init__(self, collection: mongomock.Collection) -> None:
        self._sync = collection
        _multikey_uniques(collection)

    @property
    def name(self) -> str:
        return str(self._sync.name)

    def find(self, *args: Any, **kwargs: Any) -> AsyncFakeCursor:
        return AsyncFakeCursor(self._sync.find(*args, **kwargs))

    async def find_one(self, filter: Any = None, *args: Any, **kwargs: Any) -> Doc | None:
        await _turn()
        return self._sync.find_one(filter, *args, **kwargs)

    async def insert_one(self, document: Doc, **kwargs: Any) -> Any:
        await _turn()
        return self._sync.insert_one(document, **kwargs)

    async def insert_many(self, documents: list[Doc], **kwargs: Any) -> Any:
        await _turn()
        return self._sync.insert_many(documents, **kwargs)

    async def update_one(
        self, filter: Mapping[str, Any], update: Any, upsert: bool = False, **kwargs: Any
    ) -> Any:
        await _turn()
        return self._sync.update_one(filter, update, upsert=upsert, **kwargs)

    async def update_many(
        self, filter: Mapping[str, Any], update: Any, upsert: bool = False, **kwargs: Any
    ) -> Any:
        await _turn()
        return self._sync.update_many(filter, update, upsert=upsert, **kwargs)

    async def replace_one(
        self, filter: Mapping[str, Any], replacement: Doc, upsert: bool = False, **kwargs: Any
    ) -> Any:
        await _turn()
        return self._sync.replace_one(filter, replacement, upsert=upsert, **kwargs)

    async def find_one_and_update(
        self, filter: Mapping[str, Any], update: Any, *args: Any, **kwargs: Any
    ) -> Doc | None:
        await _turn()
        return self._sync.find_one_and_update(filter, update, *args, **kwargs)

    async def count_documents(self, filter: Mapping[str, Any], **kwargs: Any) -> int:
        await _turn()
        return int(self._sync.count_documents(filter, **kwargs))

    async def delete_one(self, filter: Mapping[str, Any], **kwargs: Any) -> Any:
        await _turn()
        return self._sync.delete_one(filter, **kwargs)

    async def delete_many(self, filter: Mapping[str, Any], **kwargs: Any) -> Any:
        await _turn()
        return self._sync.delete_many(filter, **kwargs)

    async def create_index(self, keys: Any, **kwargs: Any) -> str:
        await _turn()
        return str(self._sync.create_index(keys, **kwargs))

    async def drop(self) -> None:
        await _turn()
        self._sync.drop()


class AsyncFakeDatabase:
    """``AsyncDatabase``: ``db[name]`` and ``get_collection`` hand out collections."""

    def __init__(self, database: mongomock.Database) -> None:
        self._sync = database
        self._collections: dict[str, AsyncFakeCollection] = {}

    @property
    def name(self) -> str:
        return str(self._sync.name)

    def get_collection(self, name: str, **_options: Any) -> AsyncFakeCollection:
        if name not in self._collections:
            self._collections[name] = AsyncFakeCollection(self._sync.get_collection(name))
        return self._collections[name]

    def __getitem__(self, name: str) -> AsyncFakeCollection:
        return self.get_collection(name)

    async def drop_collection(self, name: str) -> None:
        await _turn()
        self._sync.drop_collection(name)


class AsyncFakeClient:
    """``AsyncMongoClient`` without a server: every client has its own data."""

    def __init__(self) -> None:
        self._sync = mongomock.MongoClient()
        self._databases: dict[str, AsyncFakeDatabase] = {}

    def get_database(self, name: str, **_options: Any) -> AsyncFakeDatabase:
        if name not in self._databases:
            self._databases[name] = AsyncFakeDatabase(self._sync.get_database(name))
        return self._databases[name]

    def __getitem__(self, name: str) -> AsyncFakeDatabase:
        return self.get_database(name)

    async def drop_database(self, name: str) -> None:
        await _turn()
        self._sync.drop_database(name)
        self._databases.pop(name, None)

    async def close(self) -> None:
        self._sync.close()


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
