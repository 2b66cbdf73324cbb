"""The Kafka adapter of the Bus port against a real Kafka-protocol broker (Guarantee 4).

The broker is the suite's (``brokers.py``: a real Apache Kafka where Java and Maven exist,
librdkafka's mock cluster elsewhere): every test uses its own topic prefix, so the tests
do not see each other's messages on the shared broker.

Order is checked the way a projection consumes: per key (stream), a version is applied if
it is the next one, skipped if already applied (a redelivery), and anything else, a gap
or a step back past what was applied, is an error.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.common.envelope import Envelope
from services.common.errors import Unavailable
from services.common.kafka import KafkaBus, dead_letter_topic, events_topic
from services.common.relay import OutboxRelay
from services.common.sqlite import SQLiteEventStore
from tests.factories import commit, envelope
from tests.kafka.brokers import Broker
from tests.kafka.proxy import TcpProxy, closed_port, first_address

# Short timeouts keep the outage tests to a few seconds; production uses the defaults.
FAST: dict[str, Any] = {"request_timeout_ms": 2_000, "publish_timeout": 3.0}
BOUND = 10.0  # no test step may take longer than this


def unique_prefix() -> str:
    return f"t{uuid4().hex[:12]}"


def make_bus(bootstrap: str, prefix: str, **overrides: Any) -> KafkaBus:
    options: dict[str, Any] = {"topic_prefix": prefix, "partitions": 3, **FAST, **overrides}
    return KafkaBus(bootstrap, **options)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteEventStore]:
    store = SQLiteEventStore(tmp_path / "registry.events.db")
    await store.start()
    yield store
    await store.close()


async def read_topics(bootstrap: str, topics: Sequence[str]) -> list[ConsumerRecord]:
    """Every record now in ``topics``: consumes from the start up to the end offsets.

    Publish returned only after the broker acknowledged, so the end offsets read here
    cover everything published; no waiting for "long enough".
    """
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,  # no group: the consumer is assigned every partition of the topics
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=5_000,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(BOUND):
            while True:
                for batch in (await consumer.getmany(timeout_ms=100)).values():
                    records += batch
                assigned = consumer.assignment()
                known = {
                    TopicPartition(topic, p)
                    for topic in topics
                    for p in consumer.partitions_for_topic(topic) or ()
                }
                if not known or {tp.topic for tp in known} != set(topics) or assigned != known:
                    continue  # metadata or assignment not there yet
                end = await consumer.end_offsets(list(assigned))
                positions = {tp: await consumer.position(tp) for tp in assigned}
                if all(positions[tp] >= end[tp] for tp in assigned):
                    return records
    finally:
        await consumer.stop()


def versions_by_stream(records: Sequence[ConsumerRecord]) -> dict[str, list[int]]:
    """Versions per key, in the order a consumer of each partition sees them."""
    ordered = sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
    seen: dict[str, list[int]] = defaultdict(list)
    for record in ordered:
        assert record.key is not None
        seen[record.key.decode()].append(Envelope.from_json(record.value).version)
    return dict(seen)


def apply_in_order(versions: Sequence[int]) -> int:
    """What a version-guarded projection does; returns the last applied version."""
    applied = 0
    for version in versions:
        if version <= applied:
            continue  # redelivered: already applied
        assert version == applied + 1, f"version {version} arrived before {applied + 1}"
        applied = version
    return applied


def interleaved(streams: int, per_stream: int) -> list[Envelope]:
    """``per_stream`` events of each stream, round-robin: s0v1, s1v1, …, s0v2, …"""
    commits = [commit(f"s{n}-{uuid4().hex[:6]}", 0, per_stream) for n in range(streams)]
    return [c[i] for i in range(per_stream) for c in commits]


def test_topic_names() -> None:
    assert events_topic("shuangjian", "registry") == "shuangjian.registry.events"
    assert dead_letter_topic("shuangjian") == "shuangjian.dead-letters"


async def test_publish_delivers_every_event_keyed_by_stream_in_stream_order(
    kafka_bootstrap: str,
) -> None:
    prefix = unique_prefix()
    batch = interleaved(streams=4, per_stream=5)
    # Another service's events go to that service's topic.
    visits = commit(f"v-{uuid4().hex[:6]}", 0, 3, type="inspections.VisitRecorded")
    batch += visits
    bus = make_bus(kafka_bootstrap, prefix, services=("registry", "inspections"))
    await bus.start()
    try:
        async with asyncio.timeout(BOUND):
            await bus.publish(batch)
    finally:
        await bus.close()

    registry, inspections = events_topic(prefix, "registry"), events_topic(prefix, "inspections")
    records = await read_topics(kafka_bootstrap, [registry, inspections])
    assert len(records) == len(batch)
    sent = {e.id: e for e in batch}
    for record in records:
        event = Envelope.from_json(record.value)
        assert event == sent[event.id]
        assert record.topic == (inspections if event.service == "inspections" else registry)
        assert record.key == event.stream.encode()
        headers = dict(record.headers)
        assert headers["type"] == event.type.encode()
        assert headers["schema_version"] == str(event.schema_version).encode()
        assert headers["id"] == str(event.id).encode()
    expected = {e.stream: list(range(1, 6)) for e in batch if e.service == "registry"}
    expected[visits[0].stream] = [1, 2, 3]
    assert versions_by_stream(records) == expected


async def test_relay_over_kafka_publishes_every_stored_event_in_stream_order(
    kafka_bootstrap: str, store: SQLiteEventStore
) -> None:
    prefix = unique_prefix()
    streams = [f"inst-{n}-{uuid4().hex[:6]}" for n in range(3)]
    for version in range(4):  # commits of different streams interleave in the store
        for stream in streams:
            await store.append(commit(stream, version * 2, 2), expected_version=version * 2)
    bus = make_bus(kafka_bootstrap, prefix)
    await bus.start()
    try:
        async with asyncio.timeout(BOUND):
            await OutboxRelay(store, bus, name="registry", batch_size=7).drain()
    finally:
        await bus.close()

    assert await store.unpublished() == []
    records = await read_topics(kafka_bootstrap, [events_topic(prefix, "registry")])
    stored = await store.read_all()
    assert sorted(Envelope.from_json(r.value).id for r in records) == sorted(e.id for e in stored)
    assert versions_by_stream(records) == {s: list(range(1, 9)) for s in streams}


class WatchedKafkaBus(KafkaBus):
    """Counts refused publishes, so a test can wait for them instead of sleeping."""

    def __init__(self, bootstrap: str, **options: Any) -> None:
        super().__init__(bootstrap, **options)
        self.refused = 0
        self.delivered = 0
        self._changed = asyncio.Condition()

    async def publish(self, events: Sequence[Envelope]) -> None:
        try:
            await super().publish(events)
        except Unavailable:
            self.refused += 1
            raise
        else:
            self.delivered += len(events)
        finally:
            async with self._changed:
                self._changed.notify_all()

    async def wait_refused(self, times: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.refused >= times)

    async def wait_delivered(self, events: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.delivered >= events)


async def append_commands(store: SQLiteEventStore, relay: OutboxRelay, streams: list[str]) -> None:
    """One event per stream, as commands would, waking the relay each time."""
    for stream in streams:
        current = len(await store.read_stream(stream))
        await store.append(commit(stream, current, 1), expected_version=current)
        relay.notify()


async def test_unreachable_broker_keeps_events_in_the_outbox_until_kafka_takes_them(
    kafka_bootstrap: str, store: SQLiteEventStore
) -> None:
    prefix = unique_prefix()
    dead = WatchedKafkaBus(f"127.0.0.1:{closed_port()}", topic_prefix=prefix, **FAST)
    async with asyncio.timeout(BOUND):
        await dead.start()  # the platform starts although Kafka is down
        with pytest.raises(Unavailable):
            await dead.publish(commit("lonely", 0, 1))

    streams = [f"inst-{n}-{uuid4().hex[:6]}" for n in range(3)]
    relay = OutboxRelay(store, dead, name="registry", poll_interval=0.05, max_backoff=0.1)
    relay.start()
    try:
        async with asyncio.timeout(BOUND):
            await append_commands(store, relay, streams)
            await dead.wait_refused(3)
            # Commands are still accepted while the relay keeps failing.
            await append_commands(store, relay, streams)
            await dead.wait_refused(dead.refused + 2)
    finally:
        await relay.stop()
        await dead.close()
    assert dead.delivered == 0
    outbox = await store.unpublished()
    assert [e.position for e in outbox] == [e.position for e in await store.read_all()]
    assert len(outbox) == 6

    # Kafka is back (here: a bus on the live cluster over the same store).
    live = make_bus(kafka_bootstrap, prefix)
    await live.start()
    try:
        async with asyncio.timeout(BOUND):
            await OutboxRelay(store, live, name="registry").drain()
    finally:
        await live.close()
    assert await store.unpublished() == []
    records = await read_topics(kafka_bootstrap, [events_topic(prefix, "registry")])
    assert sorted(Envelope.from_json(r.value).id for r in records) == sorted(e.id for e in outbox)
    assert versions_by_stream(records) == {s: [1, 2] for s in streams}


async def test_the_same_bus_connects_once_kafka_becomes_reachable(
    kafka_bootstrap: str, store: SQLiteEventStore
) -> None:
    """Kafka down when the platform starts, up later: the one KafkaBus instance recovers.

    The proxy is the bus's only bootstrap address; while it is off the bus cannot learn
    any broker, so every publish really fails. Once it is on, the bus's next publish
    bootstraps through it (and then talks to the advertised brokers directly).
    """
    prefix = unique_prefix()
    proxy = TcpProxy(closed_port())
    bus = WatchedKafkaBus(proxy.address, topic_prefix=prefix, partitions=3, **FAST)
    streams = [f"inst-{n}-{uuid4().hex[:6]}" for n in range(3)]
    relay = OutboxRelay(store, bus, name="registry", poll_interval=0.05, max_backoff=0.1)
    await bus.start()
    relay.start()
    try:
        async with asyncio.timeout(BOUND):
            await append_commands(store, relay, streams)
            await bus.wait_refused(2)
            await append_commands(store, relay, streams)
            await bus.wait_refused(bus.refused + 1)
            assert bus.delivered == 0
            assert len(await store.unpublished()) == 6

            await proxy.start(first_address(kafka_bootstrap))
            await append_commands(store, relay, streams)
            await bus.wait_delivered(9)
    finally:
        await relay.stop()
        await bus.close()
        await proxy.stop()

    records = await read_topics(kafka_bootstrap, [events_topic(prefix, "registry")])
    assert len(records) == 9
    assert versions_by_stream(records) == {s: [1, 2, 3] for s in streams}


async def test_losing_the_brokers_mid_session_fails_publish_in_bounded_time_and_recovers(
    kafka_broker: Broker,
) -> None:
    """The connected producer's brokers vanish: its buffered sends would retry forever.

    ``publish`` must give up within its timeout, throw that producer away without
    hanging (aiokafka's idempotent producer never expires a batch) and, once the broker
    is back, the same bus instance must deliver through a new producer.
    """
    prefix = unique_prefix()
    topic = events_topic(prefix, "registry")
    bus = make_bus(kafka_broker.bootstrap, prefix)
    await bus.start()
    before, after = interleaved(3, 2), interleaved(3, 2)
    try:
        async with asyncio.timeout(BOUND):
            await bus.publish(before)
        kafka_broker.down()  # every broker the producer is connected to goes away
        async with asyncio.timeout(BOUND):
            with pytest.raises(Unavailable):
                await bus.publish(after)
        await asyncio.to_thread(kafka_broker.up)
        async with asyncio.timeout(BOUND):
            await bus.publish(after)
        records = await read_topics(kafka_broker.bootstrap, [topic])
        assert sorted(Envelope.from_json(r.value).id for r in records) == sorted(
            e.id for e in [*before, *after]
        )
        assert all(v == [1, 2] for v in versions_by_stream(records).values())
    finally:
        async with asyncio.timeout(BOUND):
            await bus.close()


async def test_a_retried_batch_arrives_twice_but_never_out_of_order(kafka_bootstrap: str) -> None:
    """At least once: when the relay retries a batch the broker did take, it is duplicated.

    The second copy follows the first in each partition, so a consumer that skips
    versions it already applied sees every stream in order and applies each event once.
    """
    prefix = unique_prefix()
    batch = interleaved(streams=3, per_stream=4)
    bus = make_bus(kafka_bootstrap, prefix)
    await bus.start()
    try:
        async with asyncio.timeout(BOUND):
            await bus.publish(batch)
            await bus.publish(batch)  # e.g. the ack was lost and the relay sent it again
            await bus.publish([envelope(batch[0].stream, 5)])  # and the stream goes on
    finally:
        await bus.close()

    records = await read_topics(kafka_bootstrap, [events_topic(prefix, "registry")])
    assert len(records) == 2 * len(batch) + 1
    by_stream = versions_by_stream(records)
    for stream, versions in by_stream.items():
        copy = [1, 2, 3, 4]
        assert versions == (copy + copy + [5] if stream == batch[0].stream else copy + copy)
        assert apply_in_order(versions) == max(versions)


async def test_close_without_ever_connecting_and_publishing_nothing_are_no_ops() -> None:
    bus = KafkaBus(f"127.0.0.1:{closed_port()}", **FAST)
    async with asyncio.timeout(BOUND):
        await bus.start()
        await bus.publish([])
        await bus.close()
        with pytest.raises(Unavailable):
            await bus.publish(commit("s", 0, 1))
