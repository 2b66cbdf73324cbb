"""The distributed path over Kafka: publishing registry events and projecting them.

The broker is librdkafka's mock cluster (3 brokers, in this process, on loopback ports;
``tests.kafka.mock``), or a real Kafka when ``SHUANGJIAN_BENCH_KAFKA_BOOTSTRAP`` names one.
Every topic has 3 partitions and a fresh, unique name.

The events come from the real command path: ``Registry.handle`` of the registrations and
approvals of ``bench.projection.make_commands`` (back-dated before 2021-07-24), repeated
with fresh ids and credit codes until there are ``EVENTS`` of them.

1. Publish, ``PUBLISH_BATCH`` events per request, in event-store order:
   * baseline: a raw ``AIOKafkaProducer`` with the bus's producer settings (idempotent,
     acks=all, linger 5 ms, 256 KiB batches) sending the same bytes (key = stream, JSON
     value, the same headers, serialised before the clock starts): ``send`` per event,
     then ``gather`` per batch;
   * the same with aiokafka's default batching (linger 0, 16 KiB batches);
   * ``KafkaBus.publish``;
   * ``OutboxRelay`` over a ``SQLiteEventStore`` that holds the events: its ``drain()``
     loop (``relay_once`` until nothing is left), timed per ``relay_once``.
   Each case opens its own producer, whose first batch (connecting) is not timed. The
   cases take turns over ``ROUNDS`` rounds; the median round is reported, and p50/p95 of
   the per-batch latency over every round.
2. Projection of the first round's relay topic (exactly the ``EVENTS`` events), for
   each ``batch_size`` in ``PROJECTOR_BATCHES``:
   * peer: the embedded ``ProjectionRunner`` (``batch_size`` events per ``read_all`` and
     per commit) catching up from the SQLite event store into a fresh SQLite read store,
     with both platform projections, as the projector runs them;
   * the faust projector (``services.projector.build_projector``) in this process,
     started with ``app.start()``, with its own consumer group and a fresh SQLite read
     store. events/s counts from the first batch handed to ``Projector.apply`` until the
     batch holding every partition's last offset is applied; the group join before it is
     reported on its own, and so are the ``apply`` calls (records, p50/p95, share).
   Then two floors: the faust agent with ``Projector.apply`` replaced by a no-op (what
   faust and aiokafka cost by themselves), and a raw ``AIOKafkaConsumer`` that only
   fetches the same messages and decodes them with ``Envelope.from_json``.
   Every read store is then checked against the runner's at batch 500, document by
   document (the Kafka suite's snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.table import Table

from bench._common import (
    Stopwatch,
    console,
    percentile,
    print_machine,
    quiet_logs,
    verdict,
)
from bench.projection import make_commands
from services.bootstrap import build_projections, topology
from services.common.application import CommandContext
from services.common.config import Settings
from services.common.envelope import Envelope
from services.common.kafka import KafkaBus, dead_letter_topic, events_topic, headers_of
from services.common.projection import ProjectionRunner
from services.common.regions import RegionTree
from services.common.relay import OutboxRelay
from services.common.sqlite import SQLiteDatabase, SQLiteEventStore, SQLiteReadStore
from services.demo import credit_code
from services.projector import Record, build_projector
from services.registry.domain.commands import ApproveInstitution, RegisterInstitution
from services.registry.handlers import Registry
from services.registry.module import no_rectifications
from services.registry.settings import RegistrySettings

SEED = 20261123
EVENTS = 12_000  # about 3 MB per partition: the mock cluster keeps 5 MB of each
REGISTRATION_EVENTS = 2  # the credit code's reservation and the registration
PUBLISH_BATCH = 500
PARTITIONS = 3
ROUNDS = 3
PROJECTOR_BATCHES = (100, 500, 2000)
BATCH_WITHIN = 0.1  # seconds take_events waits to fill a batch (only the tail waits)
DEADLINE = 120.0  # seconds any one case may take before the benchmark gives up
ACTOR = "bench"
BOOTSTRAP_ENV = "SHUANGJIAN_BENCH_KAFKA_BOOTSTRAP"

Message = tuple[str, bytes, bytes, list[tuple[str, bytes]]]  # topic, key, value, headers


# --- broker ------------------------------------------------------------------------------


@dataclass
class Broker:
    """Where the topics live: the mock cluster, or a real Kafka."""

    bootstrap: str
    real: bool
    create: Callable[[str, int], Awaitable[None]]
    created: list[str] = field(default_factory=list)

    async def topic(self, name: str, partitions: int = PARTITIONS) -> str:
        await self.create(name, partitions)
        self.created.append(name)
        return name


@contextlib.asynccontextmanager
async def broker() -> AsyncIterator[Broker]:
    real = os.environ.get(BOOTSTRAP_ENV)
    if real:
        admin = AIOKafkaAdminClient(bootstrap_servers=real, client_id="shuangjian-bench")
        await admin.start()
        brokers = len((await admin.describe_cluster())["brokers"])

        async def create_real(name: str, partitions: int) -> None:
            await admin.create_topics([NewTopic(name, partitions, min(3, brokers))])

        found = Broker(real, True, create_real)
        try:
            yield found
        finally:
            with contextlib.suppress(Exception):
                await admin.delete_topics(found.created)
            await admin.close()
        return

    from tests.kafka.mock import MockCluster  # the test suite's ctypes handle on librdkafka

    cluster = MockCluster(brokers=3)

    async def create_mock(name: str, partitions: int) -> None:
        cluster.create_topic(name, partitions, 3)  # the mock answers no CreateTopics

    try:
        yield Broker(cluster.bootstrap, False, create_mock)
    finally:
        cluster.close()


def fresh_prefix(label: str) -> str:
    return f"bench-{label}-{uuid.uuid4().hex[:8]}"


# --- workload ----------------------------------------------------------------------------


class SetupEventStore(SQLiteEventStore):
    """The event store the workload is written into: synchronous=NORMAL, setup only.

    Every measurement reopens the file as a plain (FULL) ``SQLiteEventStore``.
    """

    def __init__(self, path: Path) -> None:
        self.db = SQLiteDatabase(path, durable=False)


def make_workload(
    regions: RegionTree, events: int
) -> list[RegisterInstitution | ApproveInstitution]:
    """``bench.projection``'s registrations then approvals, round after round with fresh
    ids and credit codes, cut where they make ``events`` events: a registration makes two
    (the credit code's reservation in its own stream, then the registration), an approval
    one."""
    registers, approves = make_commands(regions)
    rng = random.Random(SEED + 7)
    templates: list[RegisterInstitution | ApproveInstitution] = [*registers, *approves]
    commands: list[RegisterInstitution | ApproveInstitution] = []
    registered: set[str] = set()
    made = round_no = 0
    while made < events:
        for cmd in templates:
            ident = f"{cmd.id}-{round_no}"
            if isinstance(cmd, RegisterInstitution):
                if made + REGISTRATION_EVENTS > events:
                    continue
                commands.append(replace(cmd, id=ident, credit_code=credit_code(rng, cmd.region)))
                registered.add(ident)
                made += REGISTRATION_EVENTS
            elif ident in registered:
                commands.append(replace(cmd, id=ident))
                made += 1
            if made == events:
                break
        round_no += 1
    return commands


async def write_events(path: Path, regions: RegionTree, settings: Settings) -> list[Envelope]:
    """Send the workload down ``Registry.handle``; the stored events, in position order."""
    store = SetupEventStore(path)
    await store.start()
    try:
        registry = Registry(
            store,
            regions,
            RegistrySettings().policy(),  # type: ignore[call-arg]
            rectification_overdue=no_rectifications,
        )
        ctx = CommandContext(actor=ACTOR)
        for cmd in make_workload(regions, EVENTS):
            await registry.handle(cmd, ctx)
        stored: list[Envelope] = []
        after = 0
        while page := await store.read_all(after_position=after, limit=5000):
            stored += page
            after = page[-1].position or 0
    finally:
        await store.close()
    assert len(stored) == EVENTS, len(stored)
    return stored


def copy_database(source: Path, target: Path) -> None:
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def batches_of(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --- publish cases -----------------------------------------------------------------------


@dataclass
class Run:
    """One case in one round: per-request seconds (the first, connecting one excluded)."""

    samples: list[float]
    events: int

    @property
    def seconds(self) -> float:
        return sum(self.samples)


def raw_producer(bootstrap: str, tuned: bool) -> AIOKafkaProducer[Any, Any]:
    if tuned:  # exactly KafkaBus's producer settings
        return AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_batch_size=256 * 1024,
        )
    return AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")


async def publish_raw(bootstrap: str, messages: Sequence[Message], tuned: bool) -> Run:
    producer = raw_producer(bootstrap, tuned)
    await producer.start()
    samples: list[float] = []
    try:
        for n, batch in enumerate(batches_of(messages, PUBLISH_BATCH)):
            start = time.perf_counter()
            deliveries = [
                await producer.send(topic, value=value, key=key, headers=headers)
                for topic, key, value, headers in batch
            ]
            await asyncio.gather(*deliveries)
            if n:
                samples.append(time.perf_counter() - start)
    finally:
        await producer.stop()
    return Run(samples, len(messages) - PUBLISH_BATCH)


async def publish_bus(bootstrap: str, prefix: str, events: Sequence[Envelope]) -> Run:
    bus = KafkaBus(bootstrap, topic_prefix=prefix, partitions=PARTITIONS)
    await bus.start()
    samples: list[float] = []
    try:
        for n, batch in enumerate(batches_of(events, PUBLISH_BATCH)):
            start = time.perf_counter()
            await bus.publish(batch)
            if n:
                samples.append(time.perf_counter() - start)
    finally:
        await bus.close()
    return Run(samples, len(events) - PUBLISH_BATCH)


async def publish_relay(bootstrap: str, prefix: str, events_db: Path) -> Run:
    """``OutboxRelay.drain()``'s loop (``relay_once`` until 0), one request per batch."""
    store = SQLiteEventStore(events_db)
    await store.start()
    bus = KafkaBus(bootstrap, topic_prefix=prefix, partitions=PARTITIONS)
    await bus.start()
    relay = OutboxRelay(store, bus, name="registry", batch_size=PUBLISH_BATCH)
    samples: list[float] = []
    try:
        await relay.relay_once()  # connects: not timed
        while True:
            start = time.perf_counter()
            sent = await relay.relay_once()
            if not sent:
                break
            samples.append(time.perf_counter() - start)
    finally:
        await bus.close()
        await store.close()
    assert relay.published == EVENTS, relay.published
    return Run(samples, EVENTS - PUBLISH_BATCH)


# --- projection cases --------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    records: int
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Projected:
    """One projection case: events over seconds, plus what the table shows beside them."""

    case: str
    events: int
    seconds: float
    calls: list[Call] = field(default_factory=list)  # Projector.apply calls
    join: float | None = None  # start() until the first batch reached Projector.apply
    read_store: Path | None = None  # checked against the peer's when set
    peer: str | None = None  # the case this row is compared with; None: a peer itself

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    def busy(self) -> float:
        """Seconds with at least one ``apply`` call in progress (overlaps counted once)."""
        total, reached = 0.0, 0.0
        for call in sorted(self.calls, key=lambda c: c.start):
            if call.end > reached:
                total += call.end - max(call.start, reached)
                reached = call.end
        return total

    def most_at_once(self) -> int:
        """The most ``apply`` calls in progress at the same time (1 when sequential)."""
        edges = sorted([(c.start, 1) for c in self.calls] + [(c.end, -1) for c in self.calls])
        most = level = 0
        for _, step in edges:
            level += step
            most = max(most, level)
        return most


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
    finally:
        await consumer.stop()
    # librdkafka's mock cluster keeps about 5 MB per partition and drops the oldest
    # segments past it: a topic that lost its head would be projected short.
    lost = {tp.partition: offset for tp, offset in starts.items() if offset}
    assert not lost, f"{topic}: the broker dropped the head of partitions {lost}"
    return {tp.partition: offset for tp, offset in ends.items()}


def runner_case(batch_size: int) -> str:
    return f"ProjectionRunner, batch {batch_size}"


async def project_runner(
    settings: Settings, regions: RegionTree, events_db: Path, read_db: Path, batch_size: int
) -> Projected:
    """The embedded runner catching up from the event store into a fresh read store."""
    store = SQLiteEventStore(events_db)
    await store.start()
    read_store = SQLiteReadStore(read_db)
    try:
        projections = build_projections(settings, regions)
        runner = ProjectionRunner(
            projections, read_store, {"registry": store}, batch_size=batch_size
        )
        await runner.prepare()
        with Stopwatch() as sw:
            await runner.catch_up()
        assert all(
            runner.position(p.name, "registry") == EVENTS
            for p in projections
            if "registry" in p.sources
        )
    finally:
        await read_store.close()
        await store.close()
    return Projected(runner_case(batch_size), EVENTS, sw.seconds, read_store=read_db)


async def project_faust(
    settings: Settings,
    regions: RegionTree,
    topic: str,
    ends: dict[int, int],
    read_db: Path,
    batch_size: int,
    *,
    no_op: bool = False,
) -> Projected:
    """The faust projector in this process; with ``no_op``, ``Projector.apply`` is replaced
    by a function that does nothing, which leaves faust's and aiokafka's own work."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # faust makes only its own dir
    read_store = SQLiteReadStore(read_db)
    app = build_projector(
        settings,
        read_store=read_store,
        regions=regions,
        # A group of its own per run: each starts from the beginning of the topic.
        group_id=f"{settings.kafka_topic_prefix}-{uuid.uuid4().hex[:8]}",
        batch_size=batch_size,
        batch_within=BATCH_WITHIN,
    )
    inner = app.projector.apply
    calls: list[Call] = []
    applied = dict.fromkeys(ends, 0)  # next offset per partition
    moments: dict[str, float] = {}
    done = asyncio.Event()

    async def timed(service: str, records: Sequence[Record]) -> None:
        start = time.perf_counter()
        moments.setdefault("first", start)
        if not no_op:
            await inner(service, records)
        calls.append(Call(len(records), start, time.perf_counter()))
        for record in records:
            applied[record.partition] = max(applied[record.partition], record.offset + 1)
        if all(applied[p] >= end for p, end in ends.items()):
            moments["last"] = time.perf_counter()
            done.set()

    app.projector.apply = timed  # type: ignore[method-assign]
    started = time.perf_counter()
    try:
        await app.start()
        try:
            async with asyncio.timeout(DEADLINE):
                await done.wait()
        except TimeoutError:
            raise RuntimeError(
                f"batch_size={batch_size}: after {DEADLINE:.0f} s, applied up to {applied} "
                f"of {ends} ({len(calls)} batches)"
            ) from None
        finally:
            await app.stop()
        # Caught up as the tests define it: every projection's stored position, per
        # partition, at that partition's end.
        for projection in [] if no_op else build_projections(settings, regions):
            if "registry" not in projection.sources:
                continue
            for partition, end in ends.items():
                got = await read_store.position(projection.name, f"{topic}:{partition}")
                assert got == end, (projection.name, partition, got, end)
    finally:
        await read_store.close()
    if no_op:
        case = f"faust, apply a no-op, batch {batch_size}"
    else:
        case = f"faust projector, batch {batch_size}"
    return Projected(
        case,
        sum(ends.values()),
        moments["last"] - moments["first"],
        calls=calls,
        join=moments["first"] - started,
        read_store=None if no_op else read_db,
        peer=runner_case(batch_size),
    )


async def consume_raw(bootstrap: str, topic: str, ends: dict[int, int]) -> Projected:
    # earliest: a fetch that starts before seek_to_beginning lands must not skip records.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    decoded = 0
    try:
        partitions = [TopicPartition(topic, p) for p in ends]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        position = dict.fromkeys(ends, 0)
        async with asyncio.timeout(DEADLINE):
            with Stopwatch() as sw:
                while any(position[p] < end for p, end in ends.items()):
                    fetched = await consumer.getmany(timeout_ms=100)
                    for tp, records in fetched.items():
                        for record in records:
                            assert record.value is not None
                            Envelope.from_json(record.value)
                            decoded += 1
                            position[tp.partition] = record.offset + 1
    finally:
        await consumer.stop()
    return Projected(
        "floor: raw consumer + decode",
        decoded,
        sw.seconds,
        peer=runner_case(500),
    )


async def read_models(path: Path, settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Every document of every read model (the Kafka suite's snapshot: the audit trail's
    event positions, offset + 1 over Kafka, left out)."""
    from tests.kafka.readmodels import prepare, snapshot

    store = SQLiteReadStore(path)
    try:
        await prepare(store, settings)
        return await snapshot(store)
    finally:
        await store.close()


# --- tables ------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1e3:.1f}"


def publish_table(rows: Sequence[tuple[str, list[Run], str | None]]) -> Table:
    table = Table(
        title=(
            f"Publish ({EVENTS:,} registry events in batches of {PUBLISH_BATCH} to a "
            f"{PARTITIONS}-partition topic; the first, connecting batch of each case is not "
            f"timed; median of {ROUNDS} interleaved rounds, p50/p95 per batch over all rounds)"
        ),
        title_justify="left",
    )
    for name in ("case", "events", "seconds", "events/s", "p50 ms", "p95 ms", "vs baseline"):
        table.add_column(name, justify="left" if name == "case" else "right")
    rates: dict[str, float] = {}
    for case, runs, baseline in rows:
        median = statistics.median(run.seconds for run in runs)
        rate = runs[0].events / median
        rates[case] = rate
        samples = [s for run in runs for s in run.samples]
        table.add_row(
            case,
            f"{runs[0].events:,}",
            f"{median:.3f}",
            f"{rate:,.0f}",
            ms(percentile(samples, 50)),
            ms(percentile(samples, 95)),
            "baseline" if baseline is None else f"{rate / rates[baseline]:.2f}×",
        )
    return table


def projection_table(rows: Sequence[Projected]) -> Table:
    """events/s; vs peer (the runner at the same batch size; the floor: batch 500); the
    projector's join (``start()`` to its first batch) and its ``Projector.apply`` calls:
    mean records per call, p50/p95 ms per call, and the share of the row's seconds with a
    call in progress (overlapping calls counted once; the agent should never overlap them)."""
    table = Table(
        title=(
            f"Projection of {EVENTS:,} registry events into a SQLite read store (runner: from "
            f"the event store; faust: from the {PARTITIONS}-partition relay topic, "
            f"batch_within={BATCH_WITHIN} s; p50/p95 per Projector.apply call)"
        ),
        title_justify="left",
    )
    by_case = {row.case: row for row in rows}
    columns = ("case", "seconds", "events/s", "vs peer", "join s", "per call")
    for name in (*columns, "p50 ms", "p95 ms", "in apply"):
        table.add_column(name, justify="left" if name == "case" else "right")
    for row in rows:
        assert row.events == EVENTS, (row.case, row.events)
        if row.calls:
            sizes = [call.records for call in row.calls]
            times = [call.seconds for call in row.calls]
            calls = (
                f"{statistics.mean(sizes):,.0f}",
                ms(percentile(times, 50)),
                ms(percentile(times, 95)),
                f"{row.busy() / row.seconds:.0%}",
            )
        else:
            calls = ("—",) * 4
        table.add_row(
            row.case,
            f"{row.seconds:.3f}",
            f"{row.rate:,.0f}",
            "peer" if row.peer is None else f"{row.rate / by_case[row.peer].rate:.2f}×",
            "—" if row.join is None else f"{row.join:.2f}",
            *calls,
        )
    return table


# --- benchmark ---------------------------------------------------------------------------


async def publish_phase(
    kafka: Broker, events: Sequence[Envelope], copies: Sequence[Path]
) -> list[tuple[str, str]]:
    """Every publish case, ``ROUNDS`` times in turn; prints the table and returns each
    round's relay (prefix, topic): those topics hold every event exactly once."""
    raw_tuned = "raw AIOKafkaProducer, the bus's settings"
    raw_default = "raw AIOKafkaProducer, default batching"
    bus_case = "KafkaBus.publish"
    relay_case = "OutboxRelay.drain() from SQLiteEventStore"
    runs: dict[str, list[Run]] = {
        name: [] for name in (raw_tuned, raw_default, bus_case, relay_case)
    }
    relay_topics: list[tuple[str, str]] = []
    payloads = [(e.stream.encode(), e.to_json().encode(), headers_of(e)) for e in events]
    for round_no in range(ROUNDS):
        for name in runs:
            prefix = fresh_prefix(f"p{round_no}")
            topic = await kafka.topic(events_topic(prefix, "registry"))
            if name in (raw_tuned, raw_default):
                messages = [(topic, *payload) for payload in payloads]
                run = await publish_raw(kafka.bootstrap, messages, name == raw_tuned)
            elif name == bus_case:
                run = await publish_bus(kafka.bootstrap, prefix, events)
            else:
                await kafka.topic(dead_letter_topic(prefix), 1)
                run = await publish_relay(kafka.bootstrap, prefix, copies[round_no])
                relay_topics.append((prefix, topic))
            runs[name].append(run)
    console.print(
        publish_table(
            [
                (raw_tuned, runs[raw_tuned], None),
                (raw_default, runs[raw_default], raw_tuned),
                (bus_case, runs[bus_case], raw_tuned),
                (relay_case, runs[relay_case], raw_tuned),
            ]
        )
    )
    return relay_topics


async def projection_phase(
    kafka: Broker,
    prefix: str,
    topic: str,
    events_db: Path,
    root: Path,
    setup: Settings,
    regions: RegionTree,
) -> list[Projected]:
    """The runner and the projector per batch size, then the two floors; prints the table."""
    ends = await end_offsets(kafka.bootstrap, topic)
    assert sum(ends.values()) == EVENTS, ends
    if not kafka.real:  # the projector's other topics (empty here), made as faust cannot
        topics = topology(projector_settings(kafka.bootstrap, prefix, root, kafka.real))
        for name in [*map(topics.events, topics.services), topics.dead_letters]:
            if name not in kafka.created:
                await kafka.topic(name)
    rows: list[Projected] = []
    for batch_size in PROJECTOR_BATCHES:
        read_db = root / f"runner-{batch_size}.db"
        rows.append(await project_runner(setup, regions, events_db, read_db, batch_size))
        data_dir = root / f"faust-{batch_size}"
        settings = projector_settings(kafka.bootstrap, prefix, data_dir, kafka.real)
        read_db = data_dir / "read.db"
        rows.append(await project_faust(settings, regions, topic, ends, read_db, batch_size))
    data_dir = root / "faust-no-op"
    settings = projector_settings(kafka.bootstrap, prefix, data_dir, kafka.real)
    read_db = data_dir / "read.db"
    rows.append(await project_faust(settings, regions, topic, ends, read_db, 500, no_op=True))
    rows.append(await consume_raw(kafka.bootstrap, topic, ends))
    console.print(projection_table(rows))
    by_case = {row.case: row for row in rows}
    projector = by_case["faust projector, batch 500"]
    no_op = by_case["faust, apply a no-op, batch 500"]
    share = projector.rate / no_op.rate
    verdict(
        "faust projector within 1.5× of faust's no-op (batch 500)",
        f"{share:.2f}× of the no-op ({projector.rate:,.0f} against {no_op.rate:,.0f} events/s)",
        share >= 1 / 1.5,
        "the projection's own cost",
    )
    for row in rows:
        if row.most_at_once() > 1:  # the agent is meant to await each batch in turn
            console.print(
                f"[yellow]{row.case}: up to {row.most_at_once()} Projector.apply calls were "
                "in progress at once[/yellow]",
                highlight=False,
            )
    return rows


async def check_read_models(rows: Sequence[Projected], reference: Path, setup: Settings) -> None:
    """Every run's read store must hold what the embedded runner at batch 500 made."""
    expected = await read_models(reference, setup)
    checked = [row for row in rows if row.read_store not in (None, reference)]
    for row in checked:
        assert row.read_store is not None
        got = await read_models(row.read_store, setup)
        if got != expected:
            differ = [name for name in expected if got.get(name) != expected[name]]
            console.print(f"[red]{row.case}: read models differ in {differ}[/red]")
            return
    documents = sum(len(docs) for docs in expected.values())
    console.print(
        f"read-model check: {len(checked)} other runs equal the runner's at batch 500 "
        f"({len(expected)} collections, {documents:,} documents).",
        highlight=False,
    )


async def main() -> None:
    quiet_logs()
    # The mock cluster names no controller, so every KafkaBus connection warns that it
    # could not create topics (they are pre-created here); errors still show.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    regions = RegionTree.load()

    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp:
        root = Path(tmp)
        setup = Settings(data_dir=root, _env_file=None)  # type: ignore[call-arg]
        with Stopwatch() as writing:
            events = await write_events(root / "registry.events.db", regions, setup)
        copies = [root / f"relay-{n}.events.db" for n in range(ROUNDS)]
        for copy in copies:
            copy_database(root / "registry.events.db", copy)
        wall(f"workload: {EVENTS:,} events from Registry.handle (setup)", writing.seconds)

        async with broker() as kafka:
            where = (
                f"real Kafka at {kafka.bootstrap}"
                if kafka.real
                else "librdkafka mock cluster, 3 brokers in this process on loopback ports"
            )
            console.print(f"broker: {where}", style="dim", highlight=False)
            with Stopwatch() as publishing:
                relay_topics = await publish_phase(kafka, events, copies)
            wall("publish", publishing.seconds)
            prefix, topic = relay_topics[0]
            with Stopwatch() as projecting:
                rows = await projection_phase(kafka, prefix, topic, copies[0], root, setup, regions)
            wall("projection", projecting.seconds)
        with Stopwatch() as checking:
            await check_read_models(rows, root / "runner-500.db", setup)
        wall("read-model check", checking.seconds)


def wall(phase: str, seconds: float) -> None:
    console.print(f"{phase}: {seconds:.1f} s wall", style="dim", highlight=False)


def projector_settings(bootstrap: str, prefix: str, data_dir: Path, real: bool) -> Settings:
    return Settings(  # type: ignore[call-arg]
        kafka_bootstrap=bootstrap,
        kafka_topic_prefix=prefix,
        data_dir=data_dir,
        # The mock cluster names no controller, so nothing can create topics through it:
        # the benchmark makes them (``Broker.topic``), as the Kafka suite does.
        kafka_create_topics=real,
        _env_file=None,
    )


if __name__ == "__main__":
    print_machine()
    asyncio.run(main())
