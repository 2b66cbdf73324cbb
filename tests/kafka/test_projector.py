"""The faust projection workers against the suite's Kafka (a real broker where Java exists).

Registry events are made by the real command handlers, published to the registry topic
the way the outbox relay does (key = stream, value = envelope JSON), and projected by the
worker running in this process. The read models must equal what the embedded
``ProjectionRunner`` builds from the same events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import faust
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from services.bootstrap import build_projections
from services.common.application import CommandContext
from services.common.audit import INSTITUTION_EVENTS
from services.common.config import Settings
from services.common.envelope import Envelope
from services.common.kafka import dead_letter_topic, events_topic
from services.common.ports import ReadStore
from services.common.projection import DEAD_LETTERS
from services.common.sqlite import SQLiteEventStore, SQLiteReadStore
from services.projector import build_projector
from services.registry.domain.commands import (
    ApproveInstitution,
    IssueWarningCard,
    SuspendInstitution,
)
from services.registry.handlers import Registry
from services.registry.module import no_rectifications
from services.registry.projections import (
    INSTITUTIONS,
)
from tests.factories import envelope, numbered_registration
from tests.kafka.deployment import eventually
from tests.kafka.readmodels import POLICY, REGIONS, Snapshot, prepare, replayed, snapshot
from tests.processes import free_port
from tests.rollups import recount, stored_rollups

DEADLINE = 15.0  # seconds a worker gets to catch up; the tests never sleep a fixed time


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    return kafka_settings


@pytest.fixture
async def read_store(tmp_path: Path) -> AsyncIterator[SQLiteReadStore]:
    store = SQLiteReadStore(tmp_path / "kafka-read-models.db")
    yield store
    await store.close()


async def registry_events(settings: Settings, path: Path, count: int = 12) -> list[Envelope]:
    """Events of ``count`` institutions from the real command handlers, in store order."""
    store = SQLiteEventStore(path)
    await store.start()
    try:
        registry = Registry(store, REGIONS, POLICY, rectification_overdue=no_rectifications)
        ctx = CommandContext(actor="test")
        for n in range(count):
            ident = f"i{n:03d}"
            await registry.handle(numbered_registration(n), ctx)
            if n % 2 == 0:
                await registry.handle(ApproveInstitution(id=ident, license_no=f"L{n}"), ctx)
            if n % 4 == 0:
                await registry.handle(
                    IssueWarningCard(id=ident, color="YELLOW", reason="late refund"), ctx
                )
            if n % 6 == 0:
                await registry.handle(SuspendInstitution(id=ident, reason="inspection"), ctx)
        return await store.read_all(limit=10_000)
    finally:
        await store.close()


async def embedded_snapshot(settings: Settings, events_db: Path) -> Snapshot:
    """What the embedded runner makes of the same events, read from their event store."""
    store = SQLiteEventStore(events_db)
    await store.start()
    try:
        return await replayed(settings, store, events_db.with_name("embedded-read-models.db"))
    finally:
        await store.close()


Message = tuple[bytes | None, bytes]


def messages_of(events: Sequence[Envelope]) -> list[Message]:
    return [(e.stream.encode(), e.to_json().encode()) for e in events]


async def publish(bootstrap: str, topic: str, messages: Sequence[Message]) -> dict[int, int]:
    """Send in order, one at a time (per-key order kept); the next offset per partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    ends: dict[int, int] = {}
    try:
        for key, value in messages:
            meta = await producer.send_and_wait(topic, key=key, value=value)
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    finally:
        await producer.stop()
    return ends


@asynccontextmanager
async def running(app: faust.App) -> AsyncIterator[faust.App]:
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def caught_up(store: ReadStore, settings: Settings, topic: str, ends: dict[int, int]) -> Any:
    """Every projection has committed every partition up to its end."""
    names = [p.name for p in build_projections(settings, REGIONS) if "registry" in p.sources]

    async def check() -> bool:
        for partition, end in ends.items():
            for name in names:
                if await store.position(name, f"{topic}:{partition}") < end:
                    return False
        return True

    return check


async def test_projects_what_the_embedded_runner_projects(
    settings: Settings, read_store: SQLiteReadStore, tmp_path: Path
) -> None:
    events = await registry_events(settings, tmp_path / "registry.events.db")
    expected = await embedded_snapshot(settings, tmp_path / "registry.events.db")
    topic = events_topic(settings.kafka_topic_prefix, "registry")
    ends = await publish(settings.kafka_bootstrap or "", topic, messages_of(events))
    await prepare(read_store, settings)

    port = free_port()
    app = build_projector(settings, read_store=read_store, batch_within=0.2, web_port=port)
    async with running(app):
        await eventually(caught_up(read_store, settings, topic, ends), "the worker", DEADLINE)
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text

    assert await snapshot(read_store) == expected
    docs = await read_store.dump(INSTITUTIONS.name)
    assert len(docs) == 12
    assert await stored_rollups(read_store) == recount(docs, REGIONS, POLICY)
    assert expected[INSTITUTION_EVENTS.name] and not expected[DEAD_LETTERS.name]
    for partition in ends:
        labels = {"topic": topic, "partition": str(partition)}
        assert REGISTRY.get_sample_value("shuangjian_projector_lag", labels) == 0
    served = {
        (sample.labels["topic"], sample.labels["partition"]): sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "shuangjian_projector_lag"
        for sample in family.samples
    }
    assert {(topic, str(p)): 0.0 for p in ends}.items() <= served.items()


async def test_every_event_delivered_twice_gives_identical_read_models(
    settings: Settings, read_store: SQLiteReadStore, tmp_path: Path
) -> None:
    """Guarantee 5 over Kafka: duplicates in the topic, then the whole topic redelivered."""
    events = await registry_events(settings, tmp_path / "registry.events.db", count=8)
    expected = await embedded_snapshot(settings, tmp_path / "registry.events.db")
    topic = events_topic(settings.kafka_topic_prefix, "registry")
    twice = [m for m in messages_of(events) for _ in range(2)] + messages_of(events)
    ends = await publish(settings.kafka_bootstrap or "", topic, twice)
    await prepare(read_store, settings)

    async with running(build_projector(settings, read_store=read_store, batch_within=0.2)):
        await eventually(caught_up(read_store, settings, topic, ends), "the worker", DEADLINE)
    assert await snapshot(read_store) == expected

    # Another consumer group reads the topic from the start: every message again.
    again = build_projector(
        settings, read_store=read_store, batch_within=0.2, group_id=f"{topic}-again"
    )
    consumed: list[int] = []
    inner = again.projector.apply

    async def counting(service: str, records: Sequence[Any]) -> None:
        consumed.extend(r.offset for r in records)
        await inner(service, records)

    again.projector.apply = counting  # type: ignore[method-assign]
    async with running(again):
        await eventually(lambda: len(consumed) >= sum(ends.values()), "redelivery", DEADLINE)
    assert await snapshot(read_store) == expected


async def test_malformed_messages_are_dead_lettered_and_the_stream_goes_on(
    settings: Settings, read_store: SQLiteReadStore, tmp_path: Path
) -> None:
    """Guarantee 7: a bad message is parked with its reason; later events still apply."""
    events = await registry_events(settings, tmp_path / "registry.events.db", count=8)
    expected = await embedded_snapshot(settings, tmp_path / "registry.events.db")
    topic = events_topic(settings.kafka_topic_prefix, "registry")
    good = messages_of(events)
    half = len(good) // 2
    orphan = envelope("nobody", 1, type="registry.InstitutionApproved", data={"license_no": "X"})
    bad: list[Message] = [
        (b"i000", b"not json"),  # not an envelope: dead-lettered before any projection
        (b"i001", json.dumps({"type": "registry.Nothing"}).encode()),
        (orphan.stream.encode(), orphan.to_json().encode()),  # parked by the projection
    ]
    messages = [*good[:half], *bad, *good[half:], (b"i002", b"\xff trailing garbage")]
    ends = await publish(settings.kafka_bootstrap or "", topic, messages)
    await prepare(read_store, settings)

    async with running(build_projector(settings, read_store=read_store, batch_within=0.2)):
        # Every partition moves to its end, even one whose last message is garbage.
        await eventually(caught_up(read_store, settings, topic, ends), "the worker", DEADLINE)

    got = await snapshot(read_store)
    parked = got.pop(DEAD_LETTERS.name)
    expected.pop(DEAD_LETTERS.name)
    # The audit trail takes the orphan in (it names no registered institution, but the
    # trail does not need one); every other document is the embedded runner's.
    trail = got.pop(INSTITUTION_EVENTS.name)
    assert [d for d in trail if d["id"] != str(orphan.id)] == expected.pop(INSTITUTION_EVENTS.name)
    assert got == expected
    # Each projection that reads the registry's lifecycle parks it (finance keeps its own
    # view of institutions), each with its reason.
    assert [d["event"]["id"] for d in parked] == [str(orphan.id)] * 2
    assert sorted(d["projection"] for d in parked) == ["finance.money", "registry.institutions"]
    assert all("registered" in d["reason"] for d in parked)

    letters = await consume_all(settings.kafka_bootstrap or "", settings, count=5)
    orphans = [letter for letter in letters if letter.get("value") == orphan.to_json()]
    assert sorted(letter["projection"] for letter in orphans) == [
        "finance.money",
        "registry.institutions",
    ]
    by_value = {
        letter.get("value"): letter
        for letter in letters
        if letter not in orphans or letter["projection"] == "registry.institutions"
    }
    assert by_value[b"not json".decode()]["reason"].startswith("not JSON")
    assert by_value[b"not json".decode()]["projection"] is None
    assert "stream" in by_value[bad[1][1].decode()]["reason"]
    assert by_value[orphan.to_json()]["projection"] == "registry.institutions"
    assert "not registered" in by_value[orphan.to_json()]["reason"]
    garbage = by_value[None]
    assert garbage["value_base64"] and garbage["reason"].startswith("not JSON")
    assert all(letter["topic"] == topic for letter in letters)


async def consume_all(bootstrap: str, settings: Settings, count: int) -> list[dict[str, Any]]:
    """Read ``count`` dead letters back, checking their headers against their bodies."""
    consumer = AIOKafkaConsumer(
        dead_letter_topic(settings.kafka_topic_prefix),
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    letters: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(DEADLINE):
            while len(letters) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        assert record.value is not None
                        body = json.loads(record.value)
                        headers = dict(record.headers)
                        assert headers["reason"].decode() == body["reason"][:1000]
                        assert int(headers["source-offset"]) == body["offset"]
                        letters.append(body)
    finally:
        await consumer.stop()
    assert len(letters) == count
    return letters
