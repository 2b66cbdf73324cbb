"""Ports: what the services, projections and gateway need from the outside world.

Each port has one abstract class here and one adapter per back end (``sqlite.py``,
``mongo.py``, ``memory.py``). Every adapter of a port passes the same contract suite in
``tests/contract``.
"""

from __future__ import annotations

import abc
import base64
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from services.common.envelope import Envelope
from services.common.errors import BadInput


class EventStore(abc.ABC):
    """Append-only log of one service's events with an outbox of what is not yet published.

    * ``append`` writes one commit (events of one stream) all-or-nothing, only if the
      stream is at ``expected_version``; otherwise ``ConcurrencyConflict``.
    * Appending events whose ids are already stored is a no-op that returns the stored
      events (a retried command), provided it is the same commit.
    * Every stored event gets a global ``position``, increasing in commit order.
    """

    @abc.abstractmethod
    async def append(self, events: Sequence[Envelope], expected_version: int) -> list[Envelope]:
        """Store one commit; return the events with their positions."""

    @abc.abstractmethod
    async def read_stream(
        self, stream: str, after_version: int = 0, to_version: int | None = None
    ) -> list[Envelope]:
        """Events of one stream in version order."""

    @abc.abstractmethod
    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Envelope]:
        """Events of every stream in position order, starting after ``after_position``."""

    async def decide_and_append(
        self, stream: str, decide: Callable[[list[Envelope]], Sequence[Envelope]]
    ) -> list[Envelope]:
        """Read ``stream``, let ``decide`` say which events follow what it read, append them.

        ``decide`` is plain code (no I/O) and may raise: nothing is appended then. What it
        returns continues the stream it was given (versions from the last one read + 1),
        and is appended as by ``append`` with that expectation, so a writer that got there
        first makes it a ``ConcurrencyConflict``. An adapter that can read and append in
        one transaction overrides this, so the read costs no extra trip and the decision
        cannot be overtaken. Returns the stored events (none when ``decide`` returned none).
        """
        stored = await self.read_stream(stream)
        new = decide(stored)
        if not new:
            return []
        return await self.append(new, expected_version=stored[-1].version if stored else 0)

    @abc.abstractmethod
    async def get_event(self, event_id: UUID) -> Envelope | None: ...

    @abc.abstractmethod
    async def max_position(self) -> int: ...

    @abc.abstractmethod
    async def unpublished(self, limit: int = 500) -> list[Envelope]:
        """The outbox: stored events not yet handed to the bus, in position order."""

    @abc.abstractmethod
    async def mark_published(self, events: Sequence[Envelope]) -> None:
        """Record that ``events`` (a prefix of ``unpublished()``) reached the bus."""

    async def start(self) -> None:
        """Create tables / indexes. Idempotent."""

    async def close(self) -> None:
        """Release connections."""


class Bus(abc.ABC):
    """Where committed events go after the store: in-process queues or Kafka topics."""

    @abc.abstractmethod
    async def publish(self, events: Sequence[Envelope]) -> None:
        """Hand ``events`` over; returns once the bus has accepted every one of them.

        Raises ``Unavailable`` when the bus cannot take them now; the relay retries.
        """

    async def start(self) -> None: ...

    async def close(self) -> None: ...


# --- read models ----------------------------------------------------------------------


@dataclass(frozen=True)
class CountSpec:
    """Exact document counts a store keeps for a collection, so a listing's total is a sum
    over a few hundred counters instead of a scan of the matches.

    Counted per prefix of ``prefix_field`` of each of ``prefix_lengths`` (region subtrees:
    province, city, district) and per value of each of ``fields``. A query whose filters are
    only such prefixes and ``Eq`` on these fields is counted from them.
    """

    prefix_field: str
    prefix_lengths: tuple[int, ...] = ()
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class CollectionSpec:
    """A read-model collection and the top-level fields it can filter and sort on.

    ``search``: string fields with a substring index (character n-grams) that answers
    ``Search`` without a scan. ``counts``: the counters behind ``Page.total``.
    """

    name: str
    indexes: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    counts: CountSpec | None = None


@dataclass(frozen=True)
class Put:
    """Replace a document, but only if ``version`` is newer than the stored one."""

    collection: str
    key: str
    doc: Mapping[str, Any]
    version: int


@dataclass(frozen=True)
class Increment:
    """Add ``deltas`` to integer counters of a document (created at zero when absent).

    ``position`` is the source position of the event that causes it: an increment at or
    below what the document already absorbed from that source is ignored, so a
    redelivered event never counts twice.
    """

    collection: str
    key: str
    deltas: Mapping[str, int]
    position: int


@dataclass
class Batch:
    """What one projection writes for a run of events from one source, with its position."""

    projection: str
    source: str
    position: int
    puts: list[Put] = field(default_factory=list)
    increments: list[Increment] = field(default_factory=list)

    @property
    def guard(self) -> str:
        return f"{self.projection}|{self.source}"


@dataclass(frozen=True)
class Eq:
    field: str
    value: Any


@dataclass(frozen=True)
class In:
    field: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class NotIn:
    """The field's value is none of ``values`` (a small set: the few to leave out)."""

    field: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Prefix:
    """String field starts with ``prefix`` (region subtrees: ``6404`` is all of Guyuan)."""

    field: str
    prefix: str


@dataclass(frozen=True)
class Contains:
    """String field contains ``text`` (not index-assisted; combine with an indexed filter)."""

    field: str
    text: str


@dataclass(frozen=True)
class Search:
    """String field contains ``text``, ASCII letters in either case (``fold``).

    Index-assisted on a field the collection declares in ``CollectionSpec.search``: one
    character or more, any script, exact (no stemming, no matching across a gap).
    """

    field: str
    text: str


@dataclass(frozen=True)
class Range:
    field: str
    gte: Any = None
    lt: Any = None


Filter = Eq | In | NotIn | Prefix | Contains | Search | Range


@dataclass(frozen=True)
class AnyOf:
    """At least one of the alternatives holds."""

    alternatives: tuple[Filter, ...]


@dataclass(frozen=True)
class Query:
    collection: str
    filters: tuple[Filter | AnyOf, ...] = ()
    order_by: str = "id"
    first: int = 20
    after: str | None = None


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    has_next: bool
    end_cursor: str | None


class ReadStore(abc.ABC):
    """Documents and counters that projections write and the gateway reads.

    Documents are JSON objects with ``id`` (their key) and ``version``. ``commit`` applies
    a batch and the projection's new position together: after a crash at any point,
    re-applying the same events from the stored position gives the same documents.
    """

    @abc.abstractmethod
    async def ensure(self, specs: Sequence[CollectionSpec]) -> None:
        """Create collections and their indexes. Idempotent."""

    @abc.abstractmethod
    async def get(self, collection: str, key: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    async def get_many(self, collection: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The documents that exist among ``keys``, by key."""

    @abc.abstractmethod
    async def find(self, query: Query) -> Page:
        """Filtered listing ordered by ``(order_by, id)`` with an opaque, stable cursor."""

    @abc.abstractmethod
    async def commit(self, batch: Batch) -> None: ...

    @abc.abstractmethod
    async def position(self, projection: str, source: str) -> int:
        """The last source position the projection committed (0 when none)."""

    @abc.abstractmethod
    async def reset(self, projection: str, collections: Sequence[str]) -> None:
        """Drop a projection's collections and positions, so it can be rebuilt by replay."""

    @abc.abstractmethod
    async def dump(self, collection: str) -> list[dict[str, Any]]:
        """Every document of a collection, ordered by id, without bookkeeping fields."""

    async def close(self) -> None: ...


# --- helpers every adapter shares -------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def safe_name(name: str) -> str:
    """Collection and top-level field names only: a dot, ``$`` or quote would change a query."""
    if not _NAME.match(name):
        raise ValueError(f"not a safe identifier: {name!r}")
    return name


def check_commit(events: Sequence[Envelope], expected_version: int) -> None:
    """A commit is non-empty, of one stream, and continues it without a gap."""
    if not events:
        raise ValueError("a commit needs at least one event")
    stream = events[0].stream
    for offset, event in enumerate(events, start=1):
        if event.stream != stream:
            raise ValueError("a commit holds events of one stream")
        if event.version != expected_version + offset:
            raise ValueError(
                f"event {event.id} has version {event.version}, "
                f"expected {expected_version + offset}: versions are gapless"
            )


def encode_cursor(value: Any, key: str) -> str:
    raw = json.dumps([value, key], ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, key = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise BadInput("not a cursor this server issued", field="after") from exc
    if not isinstance(key, str):
        raise BadInput("not a cursor this server issued", field="after")
    return value, key


_ASCII_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(text: str) -> str:
    """``Search`` compares after this: ASCII letters lowered, nothing else (SQLite's
    ``lower()`` without ICU does exactly that, so every adapter folds alike)."""
    return text.translate(_ASCII_UPPER)


def merge_increments(increments: Sequence[Increment]) -> dict[tuple[str, str], dict[str, int]]:
    """Sum the deltas per document, in first-seen order."""
    merged: dict[tuple[str, str], dict[str, int]] = {}
    for inc in increments:
        into = merged.setdefault((inc.collection, inc.key), {})
        for name, delta in inc.deltas.items():
            into[name] = into.get(name, 0) + delta
    return merged


def latest_puts(puts: Sequence[Put]) -> list[Put]:
    """The newest put per document (a batch may touch one document several times)."""
    latest: dict[tuple[str, str], Put] = {}
    for put in puts:
        known = latest.get((put.collection, put.key))
        if known is None or put.version > known.version:
            latest[(put.collection, put.key)] = put
    return list(latest.values())
