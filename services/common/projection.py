"""Projections: read models built from events, resumable, idempotent, rebuildable.

A ``Projection`` says what one event does to its documents through a ``ProjectionUnit``.
The unit collects puts and increments for a run of events and the runner commits them
with the position of the last event in one ``ReadStore.commit``. The same projection
code runs under the embedded ``ProjectionRunner`` and under the Kafka workers.

Roll-ups use *contributions*: each document says which counters it adds to (for example
an approved SUBJECT institution adds 1 to ``active`` and ``subject`` of its district, city
and province). Applying an event recomputes the document and increments every counter by
``after - before``, so roll-ups always equal a recount of the documents.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import gc
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Sequence,
)
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import structlog

from services.common.envelope import Envelope
from services.common.errors import MalformedEvent
from services.common.memory import InProcessBus
from services.common.metrics import DEAD_LETTERS as DEAD_LETTERS_TOTAL
from services.common.metrics import PROJECTION_LAG
from services.common.ports import (
    Batch,
    CollectionSpec,
    EventStore,
    Increment,
    Put,
    Query,
    ReadStore,
)

log = structlog.get_logger(__name__)

DEAD_LETTERS = CollectionSpec("dead_letters", indexes=("projection",))
# Each projector replica's lag, refreshed every few seconds (``ReplicaLag``): how far the
# read models are behind, for readiness in processes that do not run the projections.
REPLICAS = CollectionSpec("projector_replicas")
FRESH_WITHIN = timedelta(seconds=30)
VERSIONS = CollectionSpec("projection_versions")
"""Which ``Projection.version`` built each projection's read models."""


class ReplicaLag:
    """One projector replica's heartbeat in the read store, and the sum a reader sees."""

    def __init__(self, store: ReadStore, replica: str) -> None:
        self.store = store
        self.replica = replica

    async def publish(self, lag: int, now: datetime) -> None:
        stamp = int(now.timestamp() * 1000)  # a heartbeat is newer than the one before
        doc = {"lag": lag, "at": now.isoformat()}
        put = Put(REPLICAS.name, self.replica, doc, stamp)
        await self.store.commit(Batch("projector.heartbeat", self.replica, stamp, puts=[put]))

    @staticmethod
    async def total(store: ReadStore, now: datetime) -> int | None:
        """The lag of every replica heard from lately, summed; None when none was."""
        page = await store.find(Query(REPLICAS.name, first=1000))
        fresh = [
            int(doc["lag"])
            for doc in page.items
            if now - datetime.fromisoformat(doc["at"]) <= FRESH_WITHIN
        ]
        return sum(fresh) if fresh else None


class RetryLater(Exception):
    """A projection cannot apply an event *yet*: what it needs is unavailable for now (a
    service it sends a command to is down, a race it lost). Unlike any other failure the
    event is not parked: ``project()`` lets this through, so the position does not move
    past the event, and the runner or Kafka worker tries the run again later."""


_MISSING: Any = object()

CounterKey = tuple[str, str, str]
"""(collection, document key, counter field)."""
D = TypeVar("D", bound=Mapping[str, Any])
"""A read-model document, as a projection types it."""


class Contribution(Mapping[CounterKey, int]):
    """What one document adds to counters at every level of a region's lineage, in the
    form it is described in: ``parts`` maps ``(collection, key suffix)`` to counters, each
    counted under the key ``code + suffix`` for every code of ``codes`` (``region_stats``
    of ``640402`` has the suffix "", its month bucket ``640402:2023-05`` ":2023-05").

    As a mapping it is every ``(collection, key, counter)`` with its value, spelt out when
    first read. ``contribution_deltas`` of two with the same ``codes`` compares the parts
    and spells out only what changed.
    """

    __slots__ = ("_flat", "codes", "parts")

    def __init__(self, codes: tuple[str, ...], parts: dict[tuple[str, str], dict[str, int]]):
        self.codes = codes
        self.parts = parts  # values never zero
        self._flat: dict[CounterKey, int] | None = None

    def _spelt(self) -> dict[CounterKey, int]:
        if self._flat is None:
            self._flat = {
                (collection, code + suffix, name): value
                for code in self.codes
                for (collection, suffix), counts in self.parts.items()
                for name, value in counts.items()
            }
        return self._flat

    def __getitem__(self, ckey: CounterKey) -> int:
        return self._spelt()[ckey]

    def __iter__(self) -> Iterator[CounterKey]:
        return iter(self._spelt())

    def __len__(self) -> int:
        return len(self._spelt())

    def __contains__(self, ckey: object) -> bool:
        return ckey in self._spelt()

    def keys(self) -> KeysView[CounterKey]:
        return self._spelt().keys()

    def items(self) -> ItemsView[CounterKey, int]:
        return self._spelt().items()

    def __repr__(self) -> str:
        return f"Contribution({self._spelt()!r})"


def contribution_deltas(
    before: Mapping[CounterKey, int], after: Mapping[CounterKey, int]
) -> dict[tuple[str, str], dict[str, int]]:
    """Counter changes needed to go from one document state to the next, per document."""
    lineage = _lineage_deltas(before, after)
    if lineage is not None:
        codes, changed = lineage
        return {  # one dict for every level: an increment's deltas are only ever read
            (collection, code + suffix): counts
            for code in codes
            for (collection, suffix), counts in changed.items()
        }
    deltas: dict[tuple[str, str], dict[str, int]] = {}
    for ckey, value in after.items():
        change = value - before.get(ckey, 0)
        if change:
            collection, key, name = ckey
            deltas.setdefault((collection, key), {})[name] = change
    for ckey, value in before.items():
        if value and ckey not in after:
            collection, key, name = ckey
            deltas.setdefault((collection, key), {})[name] = -value
    return deltas


def _lineage_deltas(
    before: Mapping[CounterKey, int], after: Mapping[CounterKey, int]
) -> tuple[tuple[str, ...], dict[tuple[str, str], dict[str, int]]] | None:
    """``contribution_deltas`` as the codes of a lineage and the changes of the parts
    counted at each of them (``_part_deltas``), when ``after`` is a ``Contribution`` and
    ``before`` one over the same lineage or none; otherwise None."""
    if isinstance(after, Contribution):
        if isinstance(before, Contribution) and before.codes == after.codes:
            return after.codes, _part_deltas(before.parts, after)
        if not before:  # a new document
            return after.codes, _part_deltas({}, after)
    return None


def _part_deltas(
    before: Mapping[tuple[str, str], Mapping[str, int]], after: Contribution
) -> dict[tuple[str, str], dict[str, int]]:
    """How the parts of a contribution over the same lineage (or none) change to those of
    ``after``, per ``(collection, key suffix)``: compared once, added at every level."""
    # Most events change no counter: one comparison in C (none when the projection hands
    # back the very parts it counted before, as a remembered contribution is).
    if before is after.parts or before == after.parts:
        return {}
    changed: dict[tuple[str, str], dict[str, int]] = {}
    for part, counts in after.parts.items():
        old = before.get(part)
        for name, value in counts.items():
            change = value - old.get(name, 0) if old else value
            if change:
                changed.setdefault(part, {})[name] = change
    for part, gone in before.items():
        new = after.parts.get(part)
        for name, value in gone.items():
            if new is None or name not in new:
                changed.setdefault(part, {})[name] = -value
    return changed


class ProjectionUnit:
    """A projection's view of the read store while it handles a run of events.

    Reads see the writes of earlier events in the same run. If one event fails, its
    writes are dropped and the event is parked; the run goes on.
    """

    def __init__(self, store: ReadStore, projection: str, source: str) -> None:
        self.store = store
        self.projection = projection
        self.source = source
        self.position = 0
        self._docs: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._event_docs: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._puts: list[Put] = []
        self._increments: list[Increment] = []
        self._event_puts: list[Put] = []
        self._event_increments: list[Increment] = []
        # Where in ``_event_increments`` each document's increment is: an event's changes
        # to one document are summed into one increment (``_add``).
        self._event_increment_at: dict[tuple[str, str], int] = {}
        self._event_sums: dict[int, dict[str, int]] = {}  # ``_sum_into``
        # What each document the run has put contributes, beside the document itself:
        # the next event that changes it need not count it again (``replace``).
        self._counted: dict[tuple[str, str], tuple[Mapping[str, Any], Mapping[CounterKey, int]]]
        self._counted = {}

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        """The document as the events so far leave it.

        It is shared, not copied: the unit's cache and the puts already staged hold the
        same object, so a projection must never change it in place (build a new document,
        as ``{**doc, ...}`` does, and ``put`` that). Copying every document on every read
        was the largest cost of a rebuild; ``tests/unit/test_projection_unit.py`` checks
        that no projection writes into what it reads.
        """
        ref = (collection, key)
        doc = self._event_docs.get(ref, _MISSING)
        if doc is _MISSING:
            doc = self._docs.get(ref, _MISSING)
            if doc is _MISSING:
                doc = self._docs[ref] = await self.store.get(collection, key)
        return doc

    async def prefetch(self, refs: Iterable[tuple[str, str]]) -> None:
        """Load many documents in one read per collection instead of one read each."""
        wanted: dict[str, list[str]] = {}
        for collection, key in refs:
            if (collection, key) not in self._docs:
                wanted.setdefault(collection, []).append(key)
        for collection, keys in wanted.items():
            found = await self.store.get_many(collection, keys)
            for key in keys:
                self._docs[(collection, key)] = found.get(key)

    def put(self, collection: str, key: str, doc: Mapping[str, Any], version: int) -> None:
        self._put(collection, key, doc, version)

    def _put(
        self, collection: str, key: str, doc: Mapping[str, Any], version: int
    ) -> dict[str, Any]:
        stored = {**doc, "id": key, "version": version}
        self._event_docs[(collection, key)] = stored
        self._event_puts.append(Put(collection, key, stored, version))
        return stored

    def replace(
        self,
        collection: str,
        key: str,
        before: D | None,
        after: D,
        version: int,
        counters: Callable[[D | None], Mapping[CounterKey, int]],
    ) -> None:
        """Put ``after`` where ``before`` was (what ``get`` returned, or None) and move the
        document's contributions from ``counters(before)`` to ``counters(after)``.

        ``counters`` must depend on the document's fields alone (not ``id`` or
        ``version``). What it said of the stored document is kept with it, so a run that
        changes one document many times counts each state once instead of twice.
        """
        ref = (collection, key)
        known = self._counted.get(ref)
        old = known[1] if known is not None and known[0] is before else counters(before)
        new = counters(after)
        self.contribute(old, new)
        # Kept even if this event is parked: the next ``get`` then returns another object.
        self._counted[ref] = (self._put(collection, key, after, version), new)

    def increment(self, collection: str, key: str, deltas: Mapping[str, int]) -> None:
        if any(deltas.values()):
            self._add(collection, key, dict(deltas))

    def contribute(self, before: Mapping[CounterKey, int], after: Mapping[CounterKey, int]) -> None:
        lineage = _lineage_deltas(before, after)
        if lineage is None:
            for (collection, key), deltas in contribution_deltas(before, after).items():
                self._add(collection, key, deltas)  # fresh and never zero
            return
        # ``_add`` of what ``contribution_deltas`` would give, in the same order, without
        # the dict it builds; inlined, as this runs for every counted document of every
        # level of every event (half a million times in a rebuild of inspections).
        codes, changed = lineage
        increments, at_of = self._event_increments, self._event_increment_at
        position = self.position
        for code in codes:
            for (collection, suffix), deltas in changed.items():  # ``deltas`` only ever read
                ref = (collection, code + suffix)
                if ref in at_of:
                    self._sum_into(at_of[ref], deltas)
                else:
                    at_of[ref] = len(increments)
                    increments.append(Increment(collection, ref[1], deltas, position))

    def _add(self, collection: str, key: str, deltas: Mapping[str, int]) -> None:
        """Stage an increment of this event. A document the event already increments gets
        one increment of the sums instead (an inspection opens several orders in one
        district and month): the store would sum them anyway, as one event's they are
        counted or skipped together, and the first has the place and name order the
        store's first-seen merge gives them (a sum of zero is kept, as it creates the
        counter like the increments it replaces)."""
        ref = (collection, key)
        at = self._event_increment_at.get(ref)
        if at is not None:
            self._sum_into(at, deltas)
        else:
            self._event_increment_at[ref] = len(self._event_increments)
            self._event_increments.append(Increment(collection, key, deltas, self.position))

    def _sum_into(self, at: int, deltas: Mapping[str, int]) -> None:
        """Add ``deltas`` to this event's increment at ``at``. The first time, it is
        replaced by one with a dict of the unit's own (never into the dict it came with:
        one dict serves every level of a contribution); later sums go into that dict, which
        nothing reads before the event ends."""
        summed = self._event_sums.get(at)
        if summed is None:
            first = self._event_increments[at]
            summed = self._event_sums[at] = dict(first.deltas)
            self._event_increments[at] = Increment(
                first.collection, first.key, summed, first.position
            )
        for name, delta in deltas.items():
            summed[name] = summed.get(name, 0) + delta

    def begin(self, position: int) -> None:
        self.position = position
        self._event_docs, self._event_puts, self._event_increments = {}, [], []
        self._event_increment_at, self._event_sums = {}, {}

    def end(self) -> None:
        self._docs.update(self._event_docs)
        self._puts += self._event_puts
        self._increments += self._event_increments
        self.begin(self.position)

    def park(self, event: Envelope, reason: str) -> None:
        """Drop this event's writes and record it as a dead letter with its reason."""
        self.begin(self.position)
        key = f"{self.projection}:{event.id}"
        doc = {"projection": self.projection, "reason": reason, "event": event.to_dict()}
        self._puts.append(Put(DEAD_LETTERS.name, key, {**doc, "id": key, "version": 1}, 1))

    def batch(self) -> Batch:
        return Batch(self.projection, self.source, self.position, self._puts, self._increments)


class Projection(abc.ABC):
    """Builds read models from events of the listed services."""

    name: ClassVar[str]
    # The services whose events it reads (an instance may set its own).
    sources: tuple[str, ...]
    collections: ClassVar[tuple[CollectionSpec, ...]]
    # Commands wait for it to reflect their events (read-your-writes). A process manager,
    # which builds no read model anybody reads back, is not waited for.
    read_model: ClassVar[bool] = True
    # Bumped whenever what it writes changes: read models an older version built are
    # rebuilt (``outdated``), since its new documents or counters are not in them.
    version: ClassVar[int] = 1

    @abc.abstractmethod
    async def apply(self, event: Envelope, unit: ProjectionUnit) -> None:
        """Record what ``event`` changes. Raise ``MalformedEvent`` for an unusable event."""

    def handles(self, event: Envelope) -> bool:
        return event.service in self.sources

    def prefetch(self, events: Sequence[Envelope]) -> Iterable[tuple[str, str]]:
        """The (collection, key) documents a run of events will read, to load them at once."""
        return ()


async def project(
    projection: Projection,
    store: ReadStore,
    source: str,
    events: Sequence[Envelope],
    start: int,
    *,
    on_parked: Callable[[Envelope, str], None] | None = None,
) -> int:
    """Apply events after position ``start`` and commit them with the last position.

    ``events`` carry their source positions (``Envelope.position``); returns the new
    position. An event that cannot be applied is parked with its reason, and the rest go on;
    except on ``RetryLater``, which propagates with nothing of the run committed.
    ``on_parked`` hears of each parked event and its reason (the Kafka workers forward them
    to the dead-letter topic once the commit holding the parked record has succeeded).
    """
    unit = ProjectionUnit(store, projection.name, source)
    unit.position = start
    parked: list[tuple[Envelope, str]] = []
    await unit.prefetch(projection.prefetch([e for e in events if (e.position or 0) > start]))
    for event in events:
        position = event.position or 0
        if position <= start:
            continue
        unit.begin(position)
        if not projection.handles(event):
            unit.end()
            continue
        try:
            await projection.apply(event, unit)
        except MalformedEvent as exc:
            log.warning("projection.parked", projection=projection.name, event_id=str(event.id))
            unit.park(event, exc.message)
            parked.append((event, exc.message))
        except RetryLater:
            raise  # not applied yet: the position must not move past it
        except Exception as exc:  # a bug must not stop every later event: park it, loudly
            log.exception("projection.failed", projection=projection.name, event_id=str(event.id))
            reason = f"{type(exc).__name__}: {exc}"
            unit.park(event, reason)
            parked.append((event, reason))
        else:
            unit.end()
    if unit.position > start:
        await store.commit(unit.batch())
    if parked:
        DEAD_LETTERS_TOTAL.labels(projection.name).inc(len(parked))
    if on_parked is not None:
        for event, reason in parked:
            on_parked(event, reason)
    return unit.position


def collections_of(projections: Sequence[Projection]) -> list[CollectionSpec]:
    """Every collection the projections write, and the dead letters, once each."""
    specs = [DEAD_LETTERS, REPLICAS, VERSIONS, *(c for p in projections for c in p.collections)]
    return list({c.name: c for c in specs}.values())


async def outdated(store: ReadStore, projections: Sequence[Projection]) -> list[Projection]:
    """The read models an older version of their projection built: they lack what the
    new version writes, so they must be rebuilt before they are read. Read models built
    before versions were recorded count as version 1; ones not started yet are not
    outdated."""
    found = []
    for projection in projections:
        if not projection.read_model:
            continue
        stamp = await store.get(VERSIONS.name, projection.name)
        if stamp is not None:
            built = int(stamp["built"])
        else:
            positions = [await store.position(projection.name, s) for s in projection.sources]
            if not any(positions):
                continue
            built = 1
        if built != projection.version:
            found.append(projection)
    return found


async def stamp_versions(store: ReadStore, projections: Sequence[Projection]) -> None:
    """Record that these projections' read models are their current version's."""
    for projection in projections:
        if projection.read_model:
            version = projection.version
            put = Put(VERSIONS.name, projection.name, {"built": version}, version)
            await store.commit(Batch("projection.versions", projection.name, version, [put]))


def _read_model(projection: Projection) -> bool:
    return projection.read_model


def _process_manager(projection: Projection) -> bool:
    return not projection.read_model


class ProjectionRunner:
    """Runs projections in this process, woken by the in-process bus, reading the stores.

    The event stores are the source of truth: the runner always reads what it has not
    applied yet from them, in position order, so a full bus queue, a restart or a commit
    that becomes visible late (MongoDB) cannot make it skip an event. The bus only says
    when to look; a poll every ``poll_interval`` seconds covers writers in other processes.
    """

    def __init__(
        self,
        projections: Sequence[Projection],
        read_store: ReadStore,
        event_stores: Mapping[str, EventStore],
        bus: InProcessBus | None = None,
        *,
        batch_size: int = 500,
        replay_batch_size: int = 5000,
        poll_interval: float = 1.0,
    ) -> None:
        self.projections = list(projections)
        self.poll_interval = poll_interval
        self.read_store = read_store
        self.event_stores = dict(event_stores)
        self.bus = bus
        self.batch_size = batch_size
        # A rebuild, or the catch-up at start, replays a backlog: larger runs merge more
        # counter increments per document and pay for one commit per run (see ``project``).
        self.replay_batch_size = max(batch_size, replay_batch_size)
        self._positions: dict[tuple[str, str], int] = {}
        self._applied = asyncio.Condition()
        self._queue: asyncio.Queue[Envelope] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def prepare(self) -> None:
        await self.read_store.ensure(collections_of(self.projections))
        for projection in self.projections:
            for source in projection.sources:
                pos = await self.read_store.position(projection.name, source)
                self._positions[(projection.name, source)] = pos

    async def catch_up(
        self,
        source: str | None = None,
        *,
        batch_size: int | None = None,
        which: Callable[[Projection], bool] | None = None,
        upto: Callable[[str], int | None] | None = None,
    ) -> None:
        """Apply everything the event stores hold beyond each projection's position, in
        runs of ``batch_size`` events (``self.batch_size`` unless given).

        A projection that raises ``RetryLater`` keeps its position and sits out the rest
        of this call, so it holds up no other projection; the call then raises the first
        such ``RetryLater``, and the next call tries that projection again.

        ``which`` picks the projections to run (all by default); ``upto(source)`` bounds
        the positions applied (none when it returns ``None``).
        """
        projections = [p for p in self.projections if which is None or which(p)]
        waiting: dict[tuple[str, str], RetryLater] = {}
        for name in [source] if source else list(self.event_stores):
            store = self.event_stores.get(name)
            if store is None:
                continue
            while True:
                start = min(
                    (
                        self._positions[(p.name, name)]
                        for p in projections
                        if name in p.sources and (p.name, name) not in waiting
                    ),
                    default=None,
                )
                if start is None:
                    break
                events = await store.read_all(
                    after_position=start, limit=batch_size or self.batch_size
                )
                limit = upto(name) if upto is not None else None
                if limit is not None:
                    events = [e for e in events if (e.position or 0) <= limit]
                if not events:
                    break
                await self._apply(projections, name, events, waiting)
        await self.behind()
        if waiting:
            raise next(iter(waiting.values()))

    async def behind(self) -> int:
        """Events the furthest-behind projection has still to apply; also sets
        ``shuangjian_projection_lag_events`` for each (summed over its sources)."""
        ends = {name: await store.max_position() for name, store in self.event_stores.items()}
        furthest = 0
        for projection in self.projections:
            lag = sum(
                max(ends[source] - self._positions.get((projection.name, source), 0), 0)
                for source in projection.sources
                if source in ends
            )
            PROJECTION_LAG.labels(projection.name).set(lag)
            furthest = max(furthest, lag)
        return furthest

    async def _apply(
        self,
        projections: Sequence[Projection],
        source: str,
        events: Sequence[Envelope],
        waiting: dict[tuple[str, str], RetryLater],
    ) -> None:
        for projection in projections:
            key = (projection.name, source)
            if source not in projection.sources or key in waiting:
                continue
            try:
                new = await project(
                    projection, self.read_store, source, events, self._positions[key]
                )
            except RetryLater as exc:
                log.warning("projection.retry_later", projection=projection.name, reason=str(exc))
                waiting[key] = exc
                continue
            self._positions[key] = new
        async with self._applied:
            self._applied.notify_all()

    async def _live_read_models(self, queue: asyncio.Queue[Envelope]) -> None:
        """Woken by the bus (or every ``poll_interval``): the read models catch up."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):  # not wait_for: see relay
                    await queue.get()
            while not queue.empty():
                queue.get_nowait()
            await self._catch_up_live(_read_model)

    async def _live_process_managers(self) -> None:
        """Woken when the read models applied more: the process managers follow them, never
        past them (a command they send reads the read models, e.g. finance's view of the
        register), in a loop of their own, since each waits for the commands it sends."""

        def behind() -> bool:
            return any(
                self._positions[(p.name, source)] < (self.read_models_at(source) or 0)
                for p in self.projections
                if not p.read_model
                for source in p.sources
            )

        while True:
            async with self._applied:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval):
                        await self._applied.wait_for(behind)
            await self._catch_up_live(_process_manager, upto=self.read_models_at)

    async def _catch_up_live(
        self,
        which: Callable[[Projection], bool],
        upto: Callable[[str], int | None] | None = None,
    ) -> None:
        try:
            await self.catch_up(which=which, upto=upto)
        except RetryLater:  # logged where it happened; the poll tries it again
            await asyncio.sleep(self.poll_interval)
        except Exception:  # the read store is down: keep the position, try again
            log.exception("projection.catch_up_failed")
            await asyncio.sleep(self.poll_interval)

    def read_models_at(self, source: str) -> int | None:
        """How far every read model of ``source`` has applied (``None``: it has none)."""
        return min(
            (
                self._positions[(p.name, source)]
                for p in self.projections
                if p.read_model and source in p.sources
            ),
            default=None,
        )

    async def start(self) -> None:
        await self.prepare()
        if self.bus is not None:
            self._queue = self.bus.subscribe()
        # Something a projection needs is not there yet: the live loop tries it again.
        with contextlib.suppress(RetryLater), replaying():
            await self.rebuild_outdated()
            if behind := await self.behind():
                # At a province's scale this is minutes: say what the start is waiting for.
                log.info("projection.catching_up", events=behind)
            await self.catch_up(batch_size=self.replay_batch_size)
        # Read models and process managers follow the events in loops of their own: a
        # process manager waits for the commands it sends, and the read models (which
        # commands wait for) must not wait behind it.
        if self._queue is not None:
            self._tasks = [
                asyncio.create_task(
                    self._live_read_models(self._queue), name="projection-runner-read-models"
                ),
                asyncio.create_task(
                    self._live_process_managers(), name="projection-runner-process-managers"
                ),
            ]

    async def rebuild_outdated(self) -> list[Projection]:
        """Rebuild the read models an older version built (after an upgrade), then record
        every projection's version. Returns what was rebuilt."""
        done: list[Projection] = []
        for projection in await outdated(self.read_store, self.projections):
            if projection not in done:
                log.warning("projection.outdated", projection=projection.name, rebuilding=True)
                done += await self.rebuild(projection)
        await stamp_versions(self.read_store, self.projections)
        return done

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.bus is not None and self._queue is not None:
            self.bus.unsubscribe(self._queue)
            self._queue = None

    def position(self, projection: str, source: str) -> int:
        return self._positions.get((projection, source), 0)

    async def wait_for(self, source: str, position: int, timeout: float = 5.0) -> bool:
        """Wait until every read model of ``source`` has applied ``position`` (process
        managers are not waited for: see ``Projection.read_model``)."""

        def caught_up() -> bool:
            return all(
                self._positions[(p.name, source)] >= position
                for p in self.projections
                if source in p.sources and p.read_model
            )

        async with self._applied:
            try:
                await asyncio.wait_for(self._applied.wait_for(caught_up), timeout)
            except TimeoutError:
                return False
        return True

    def sharing(self, projection: Projection) -> list[Projection]:
        """``projection`` and every projection that writes a collection with it, directly
        or through another (the region roll-ups hold every service's counters)."""
        group = [projection]
        names = {c.name for c in projection.collections}
        grown = True
        while grown:
            grown = False
            for other in self.projections:
                if other not in group and names & {c.name for c in other.collections}:
                    group.append(other)
                    names |= {c.name for c in other.collections}
                    grown = True
        return group

    async def rebuild(self, projection: Projection) -> list[Projection]:
        """Drop a projection's read models and replay every event into them.

        A collection another projection also writes (``region_stats``) is dropped with
        that projection's share in it, so every projection that shares one is rebuilt
        with it; returns them all.
        """
        group = self.sharing(projection)
        for member in group:
            await self.read_store.reset(member.name, [c.name for c in member.collections])
            for source in member.sources:
                self._positions[(member.name, source)] = 0
        collections = list(dict.fromkeys(c.name for m in group for c in m.collections))
        with replaying():
            async with _bulk_load(self.read_store, collections):
                await self.catch_up(batch_size=self.replay_batch_size)
        return group


REPLAY_GC_THRESHOLDS = (100_000, 50, 100)
"""``gc.set_threshold`` while a backlog is replayed; the default is (700, 10, 10)."""
_replays: list[tuple[int, int, int]] = []  # the thresholds before each replay under way


@contextlib.contextmanager
def replaying() -> Iterator[None]:
    """Run the cyclic garbage collector far less often while replaying a backlog.

    A replay allocates millions of objects that reference counting frees (decoded events,
    documents, counters) and keeps a run's documents alive meanwhile; with the default
    thresholds the collector walked those again and again, a quarter of a rebuild's CPU.
    Cyclic garbage still goes, every 100,000 allocations instead of every 700.
    """
    _replays.append(gc.get_threshold())
    gc.set_threshold(*REPLAY_GC_THRESHOLDS)
    try:
        yield
    finally:
        before = _replays.pop()
        if not _replays:  # the last replay under way puts back what was there first
            gc.set_threshold(*before)


@runtime_checkable
class BulkLoading(Protocol):
    """A read store that fills collections it has just emptied faster in bulk, setting
    aside what it keeps beside the documents (``SQLiteReadStore.bulk_load``)."""

    def bulk_load(
        self, collections: Sequence[str]
    ) -> contextlib.AbstractAsyncContextManager[None]: ...


def _bulk_load(
    store: ReadStore, collections: Sequence[str]
) -> contextlib.AbstractAsyncContextManager[None]:
    if isinstance(store, BulkLoading):
        return store.bulk_load(collections)
    return contextlib.nullcontext()
