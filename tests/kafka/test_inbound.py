"""District systems send commands over Kafka (``services/common/inbound.py``): one result
per command on the results topic, applied once whatever Kafka redelivers, scoped by each
message's token, and poison parked on the dead-letter topic while the stream goes on.

On the suite's broker, into an embedded platform (its ``execute``, as the HTTP ingest)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from services.bootstrap import MODULES, Platform, build_platform
from services.common.auth import Role, TokenVerifier, issue_token
from services.common.config import Settings
from services.common.inbound import InboundCommands, commands_topic, results_topic
from services.common.ingest import Catalog
from services.common.kafka_security import KafkaSecurity
from services.common.topology import dead_letter_topic
from tests.conftest import SECRET
from tests.integration.test_ingest import mixed, registration
from tests.kafka.brokers import Broker
from tests.kafka.deployment import DEADLINE, eventually, read_topic, topic_ends

PARTITIONS = 3
IMPORTER = issue_token(SECRET, "district-640400", role=Role.IMPORTER, region="640400")

Message = tuple[bytes | None, bytes | None, int]  # key, value, partition


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    running = build_platform(Settings(data_dir=tmp_path / "d", _env_file=None))  # type: ignore[call-arg]
    await running.start()
    yield running
    await running.stop()


def consumer_of(platform: Platform, broker: Broker, prefix: str) -> InboundCommands:
    """The registry's inbound commands under ``prefix``, into the embedded platform."""
    return InboundCommands(
        broker.bootstrap,
        "registry",
        prefix,
        Catalog({module.name: module.commands for module in MODULES}),
        platform.execute,
        TokenVerifier(platform.regions, secret=SECRET),
        KafkaSecurity(),
        partitions=PARTITIONS,
        replication=broker.replication,
        create_topics=broker.creates_topics,
        poll_timeout=0.1,
    )


@contextlib.asynccontextmanager
async def running(inbound: InboundCommands) -> AsyncIterator[InboundCommands]:
    """Started, with its partitions assigned; closed (within a bounded time) afterwards."""
    inbound.start()
    try:
        async with asyncio.timeout(DEADLINE):
            await inbound.wait_ready()
        yield inbound
    finally:
        async with asyncio.timeout(30):
            await inbound.close()


@pytest.fixture
async def inbound(platform: Platform, kafka_broker: Broker) -> AsyncIterator[InboundCommands]:
    """The registry's inbound commands under a fresh prefix, its consumer in the group."""
    prefix = f"t{uuid4().hex[:12]}"
    if not kafka_broker.creates_topics:  # the mock: topics are the operator's
        topics = [commands_topic(prefix, "registry"), results_topic(prefix, "registry")]
        await kafka_broker.create_topics([*topics, dead_letter_topic(prefix)], PARTITIONS)
    async with running(consumer_of(platform, kafka_broker, prefix)) as started:
        yield started


async def rewind(bootstrap: str, group: str, topic: str) -> None:
    """Set the (idle) group's committed offsets back to the start: Kafka redelivers all."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await topic_ends(bootstrap, topic)]
        consumer.assign(partitions)
        await consumer.commit({tp: 0 for tp in partitions})
    finally:
        await consumer.stop()


def message(request: dict[str, Any], number: int, token: str = IMPORTER) -> Message:
    """A request as a district system sends it: keyed by its idempotency key, and in the
    partition of its aggregate, so that an aggregate's commands apply in order."""
    aggregate = request["input"]["id"]
    key = request.get("idempotencyKey") or f"{request['command']}:{aggregate}"
    value = {
        "requestId": f"r-{number}",
        "command": request["command"],
        "input": request["input"],
        "token": token,
    }
    partition = zlib.crc32(aggregate.encode()) % PARTITIONS
    return key.encode(), json.dumps(value, ensure_ascii=False).encode(), partition


async def send(bootstrap: str, topic: str, messages: Sequence[Message]) -> None:
    """Produce every message, in order, and wait until all are acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        deliveries = [
            await producer.send(topic, value=value, key=key, partition=partition)
            for key, value, partition in messages
        ]
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()


class Results:
    """Reads the results topic from its beginning as the answers come in."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.topic = topic
        self.seen: list[dict[str, Any]] = []
        self.keys: list[bytes | None] = []

    async def __aenter__(self) -> Results:
        await self.consumer.start()
        partitions = await topic_ends(self.bootstrap, self.topic)
        self.consumer.assign([TopicPartition(self.topic, p) for p in partitions])
        await self.consumer.seek_to_beginning()
        return self

    async def _read(self, timeout_ms: int) -> None:
        for records in (await self.consumer.getmany(timeout_ms=timeout_ms)).values():
            for record in records:
                self.keys.append(record.key)
                self.seen.append(json.loads(record.value or b"null"))

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()

    async def take(self, count: int, within: float = DEADLINE) -> list[dict[str, Any]]:
        """The next ``count`` results (and fails if more than that arrive meanwhile);
        ``within`` bounds a hang, it is not a measurement."""
        start = len(self.seen)
        async with asyncio.timeout(within):
            while len(self.seen) < start + count:
                await self._read(200)
        await asyncio.sleep(0.5)  # nothing beyond: one result per command
        await self._read(200)
        assert len(self.seen) == start + count, self.seen[start + count :]
        return self.seen[start:]


async def streams(platform: Platform, service: str) -> set[str]:
    """Every stream one service's event store holds."""
    store, found, after = platform.event_stores[service], set(), 0
    while batch := await store.read_all(after, limit=5_000):
        found |= {event.stream for event in batch}
        after = batch[-1].position or after + len(batch)
    return found


async def heads(platform: Platform) -> dict[str, int]:
    return {name: await store.max_position() for name, store in platform.event_stores.items()}


async def test_ten_thousand_commands_each_get_one_result_and_are_stored(
    inbound: InboundCommands, platform: Platform, kafka_broker: Broker
) -> None:
    requests = mixed(10_000)
    await send(
        kafka_broker.bootstrap, inbound.topic, [message(r, n) for n, r in enumerate(requests)]
    )
    async with Results(kafka_broker.bootstrap, inbound.results) as results:
        # 10,000 commands on 2 busy cores (CI runs other modules beside this one).
        answers = await results.take(10_000, within=10 * DEADLINE)
    by_id = {answer["requestId"]: answer for answer in answers}
    assert sorted(by_id) == sorted(f"r-{n}" for n in range(10_000))  # one each
    assert [a for a in answers if a["outcome"] != "ok"] == []
    assert all(a["events"] >= 1 for a in answers)
    assert all(by_id[f"r-{n}"]["command"] == r["command"] for n, r in enumerate(requests))
    assert all(
        key == answer["requestId"].encode()
        for key, answer in zip(results.keys, answers, strict=True)
    )

    await platform.settle()
    registry, inspections = (
        await streams(platform, "registry"),
        await streams(platform, "inspections"),
    )
    for request in requests:
        stored = inspections if request["command"] == "RecordInspection" else registry
        assert request["input"]["id"] in stored
    assert sum((await heads(platform)).values()) >= sum(a["events"] for a in answers)


async def test_a_redelivered_command_is_answered_and_applies_nothing(
    inbound: InboundCommands, platform: Platform, kafka_broker: Broker
) -> None:
    messages = [message(r, n) for n, r in enumerate(mixed(200))]
    async with Results(kafka_broker.bootstrap, inbound.results) as results:
        await send(kafka_broker.bootstrap, inbound.topic, messages)
        first = await results.take(200)
        assert all(a["outcome"] == "ok" and a["events"] >= 1 for a in first)
        await platform.settle()
        before = await heads(platform)

        await send(kafka_broker.bootstrap, inbound.topic, messages)  # the same keys again
        again = await results.take(200)
        assert sorted(a["requestId"] for a in again) == sorted(a["requestId"] for a in first)
        assert all(a["outcome"] == "ok" and a["events"] == 0 for a in again)
        await platform.settle()
        assert await heads(platform) == before

        # Kafka itself redelivers: a restarted consumer finds the group back at the start.
        await inbound.close()
        await rewind(kafka_broker.bootstrap, inbound.group, inbound.topic)
        async with running(consumer_of(platform, kafka_broker, inbound.prefix)):
            replayed = await results.take(400)
        assert all(a["outcome"] == "ok" and a["events"] == 0 for a in replayed)
        await platform.settle()
        assert await heads(platform) == before


async def test_scope_tokens_and_poison_and_the_stream_goes_on(
    inbound: InboundCommands, platform: Platform, kafka_broker: Broker
) -> None:
    outside = registration(1, region="340103")  # 合肥: outside the importer's 固原
    stranger = issue_token("another-secret-that-is-long-enough-for-hs256", "x", role=Role.ADMIN)
    no_key = json.dumps({"requestId": "r-nokey", **registration(3), "token": IMPORTER})
    messages: list[Message] = [
        message(outside, 1),
        message(registration(2), 2, token=stranger),
        (None, no_key.encode(), 0),
        (b"k-garbage", b"{not json", 0),
        message(registration(4), 4),
    ]
    async with Results(kafka_broker.bootstrap, inbound.results) as results:
        await send(kafka_broker.bootstrap, inbound.topic, [(k, v, 0) for k, v, _ in messages])
        answers = {a["requestId"]: a for a in await results.take(4)}
    assert answers["r-1"]["code"] == "FORBIDDEN" and answers["r-1"]["id"] == "s-1"
    assert answers["r-2"]["code"] == "UNAUTHENTICATED"
    assert answers["r-nokey"]["outcome"] == "error" and "no key" in answers["r-nokey"]["message"]
    assert answers["r-4"]["outcome"] == "ok" and answers["r-4"]["events"] >= 1
    assert {s for s in await streams(platform, "registry") if s.startswith("s-")} == {
        "s-4"
    }  # nothing from the refused or the poison

    async def parked() -> bool:
        return sum((await topic_ends(kafka_broker.bootstrap, inbound.dead_letters)).values()) >= 2

    await eventually(parked, "two dead letters")
    letters = await read_topic(kafka_broker.bootstrap, inbound.dead_letters)
    headers = [dict(letter.headers) for letter in letters]
    reasons = sorted(h["reason"].decode() for h in headers)
    assert reasons == ["no key: the key is the idempotency key", "the value is not JSON"]
    assert {h["source-topic"] for h in headers} == {inbound.topic.encode()}
    assert sorted(h["source-offset"] for h in headers) == [b"2", b"3"]
    garbage = next(
        json.loads(r.value or b"") for r in letters if b"JSON" in dict(r.headers)["reason"]
    )
    assert garbage["value"] == "{not json" and garbage["key"] == "k-garbage"
