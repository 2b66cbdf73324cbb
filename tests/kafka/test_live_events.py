"""Live events from the Kafka topics: ``KafkaTail`` and the distributed gateway's subscription.

Against the suite's broker (``brokers.py``: a real Kafka where Java and Maven exist), each
test with its own topic prefix. Every wait
is on a condition under a deadline; "the tail is live" (``wait_live``) is the moment
after which whatever is published must reach the subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import uvicorn
import websockets
from aiokafka import AIOKafkaProducer
from starlette.types import ASGIApp
from structlog.testing import capture_logs

from services.bootstrap import MODULES, Commands, gateway_app, service_settings
from services.common.auth import Role, TokenVerifier
from services.common.config import Settings
from services.common.envelope import Envelope
from services.common.errors import Unavailable
from services.common.kafka import KafkaBus, KafkaTail, TailSubscription, events_topic
from services.common.regions import RegionTree
from services.common.sqlite import SQLiteReadStore
from services.gateway.app import create_app
from services.gateway.remote import DistributedBackend
from services.registry.module import MODULE as REGISTRY
from tests.conftest import SECRET, bearer
from tests.factories import commit, envelope
from tests.kafka.brokers import Broker
from tests.kafka.proxy import TcpProxy, closed_port, first_address

SUBSCRIBE = "subscription($r: String!) { events(region: $r) { id type stream region } }"
BOUND = 10.0  # no test step may take longer than this


def unique_prefix() -> str:
    return f"t{uuid4().hex[:12]}"


def interleaved(streams: int, per_stream: int) -> list[Envelope]:
    """``per_stream`` events of each stream, round-robin: s0v1, s1v1, …, s0v2, …"""
    commits = [commit(f"s{n}-{uuid4().hex[:6]}", 0, per_stream) for n in range(streams)]
    return [c[i] for i in range(per_stream) for c in commits]


def make_bus(bootstrap: str, prefix: str) -> KafkaBus:
    return KafkaBus(
        bootstrap, topic_prefix=prefix, partitions=3, request_timeout_ms=2_000, publish_timeout=5.0
    )


def make_tail(bootstrap: str, prefix: str, **overrides: Any) -> KafkaTail:
    """A tail on the registry topic that notices new topics and reconnects quickly."""
    options: dict[str, Any] = {
        "request_timeout_ms": 5_000,
        "discovery_interval": 0.1,
        "poll_timeout": 0.1,
        "max_backoff": 0.2,
        **overrides,
    }
    return KafkaTail(bootstrap, [events_topic(prefix, "registry")], **options)


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition``; the caller bounds the wait with its deadline."""
    while not condition():  # noqa: ASYNC110 - changed by background tasks, nothing to await
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(
    kafka_bootstrap: str, prefix: str, **overrides: Any
) -> AsyncIterator[tuple[KafkaTail, KafkaBus]]:
    tail, bus = make_tail(kafka_bootstrap, prefix, **overrides), make_bus(kafka_bootstrap, prefix)
    await bus.start()
    try:
        yield tail, bus
    finally:
        async with asyncio.timeout(BOUND):
            await tail.close()
            await bus.close()


async def collect(
    subscription: TailSubscription, until: Callable[[list[Envelope]], bool]
) -> list[Envelope]:
    """Events in arrival order, up to the first moment ``until`` holds."""
    got: list[Envelope] = []
    async with asyncio.timeout(BOUND):
        async for event in subscription:
            got.append(event)
            if until(got):
                return got
    raise AssertionError(f"the subscription ended after {len(got)} events")


def has_all(expected: Sequence[Envelope]) -> Callable[[list[Envelope]], bool]:
    wanted = {e.id for e in expected}
    return lambda got: wanted <= {e.id for e in got}


def versions_by_stream(events: Sequence[Envelope]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for event in events:
        seen.setdefault(event.stream, []).append(event.version)
    return seen


async def test_a_subscriber_gets_what_is_published_after_it_subscribed_in_order_and_once(
    kafka_bootstrap: str,
) -> None:
    prefix = unique_prefix()
    async with running(kafka_bootstrap, prefix) as (tail, bus):
        async with asyncio.timeout(BOUND):
            earlier = interleaved(streams=2, per_stream=2)
            await bus.publish(earlier)  # on the topic before anyone subscribed
            subscription = tail.subscribe()
            await tail.wait_live()
            batch = interleaved(streams=3, per_stream=4)
            await bus.publish(batch)
            await bus.publish(batch)  # the relay sent it again (at least once)
            # Each stream's last event is behind both copies in its partition.
            last = [envelope(stream, 5) for stream in dict.fromkeys(e.stream for e in batch)]
            await bus.publish(last)
        received = await collect(subscription, has_all(last))
    assert not {e.id for e in earlier} & {e.id for e in received}
    assert versions_by_stream(received) == {e.stream: [1, 2, 3, 4, 5] for e in last}
    sent = {e.id: e for e in [*batch, *last]}
    assert all(event == sent[event.id] for event in received)


async def test_every_subscriber_gets_every_event_even_on_topics_created_after_it_subscribed(
    kafka_bootstrap: str,
) -> None:
    prefix = unique_prefix()  # nothing published yet: the topic does not exist
    async with running(kafka_bootstrap, prefix) as (tail, bus):
        first, second = tail.subscribe(), tail.subscribe()
        async with asyncio.timeout(BOUND):
            await tail.wait_live()
            batch = interleaved(streams=3, per_stream=3)
            await bus.publish(batch)  # creates the topic
        one, other = await collect(first, has_all(batch)), await collect(second, has_all(batch))
    assert tail.subscribers == 0  # close() ended both
    expected = {e.stream: [1, 2, 3] for e in batch}
    assert versions_by_stream(one) == versions_by_stream(other) == expected


async def test_a_topic_created_while_following_others_costs_them_nothing(
    kafka_bootstrap: str,
) -> None:
    """A new topic means a new assignment, which forgets every position: the tail must
    put each followed partition back where it was, or what was published just before
    (here: while the tail looks for topics) would be skipped."""
    prefix = unique_prefix()
    stream = f"s-{uuid4().hex[:6]}"
    visit = envelope(f"v-{uuid4().hex[:6]}", 1, type="inspections.VisitRecorded")
    meanwhile = [visit, envelope(stream, 2), envelope(stream, 3)]
    bus = make_bus(kafka_bootstrap, prefix)
    race = asyncio.Event()

    class Racing(KafkaTail):
        async def _assign(self, consumer: Any, assigned: Any, progress: Any) -> Any:
            if race.is_set():
                race.clear()
                await bus.publish(meanwhile)  # creates the inspections topic
            return await super()._assign(consumer, assigned, progress)

    topics = [events_topic(prefix, "registry"), events_topic(prefix, "inspections")]
    tail = Racing(kafka_bootstrap, topics, discovery_interval=0.1, poll_timeout=0.1)
    await bus.start()
    try:
        subscription = tail.subscribe()
        async with asyncio.timeout(BOUND):
            await tail.wait_live()
            first = [envelope(stream, 1)]
            await bus.publish(first)
            await collect(subscription, has_all(first))
            race.set()
        received = await collect(subscription, has_all(meanwhile))
    finally:
        async with asyncio.timeout(BOUND):
            await tail.close()
            await bus.close()
    assert sorted(received, key=lambda e: e.type) == sorted(meanwhile, key=lambda e: e.type)
    assert versions_by_stream(received)[stream] == [2, 3]


async def test_a_malformed_message_is_skipped_and_later_events_still_arrive(
    kafka_broker: Broker,
) -> None:
    kafka_bootstrap = kafka_broker.bootstrap
    prefix = unique_prefix()
    topic = events_topic(prefix, "registry")
    await kafka_broker.create_topics([topic], 3)  # the garbage goes in before any event
    good = envelope(f"s-{uuid4().hex[:6]}", 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        async with running(kafka_bootstrap, prefix) as (tail, bus):
            with capture_logs() as logs:
                subscription = tail.subscribe()
                async with asyncio.timeout(BOUND):
                    await tail.wait_live()
                    # Same key as the good event: one partition, so both come before it.
                    key = good.stream.encode()
                    await producer.send_and_wait(topic, b"{not json", key=key)
                    await producer.send_and_wait(topic, b'{"id": "no envelope"}', key=key)
                    await bus.publish([good])
                received = await collect(subscription, has_all([good]))
    finally:
        await producer.stop()
    assert received == [good]
    skipped = [entry for entry in logs if entry["event"] == "kafka.tail.skipped"]
    assert len(skipped) == 2
    assert all(e["log_level"] == "warning" and e["topic"] == topic for e in skipped)


async def test_a_subscriber_that_falls_behind_is_dropped_and_the_others_go_on(
    kafka_bootstrap: str,
) -> None:
    prefix = unique_prefix()
    stream = f"s-{uuid4().hex[:6]}"
    async with running(kafka_bootstrap, prefix, capacity=2) as (tail, bus):
        slow, fast = tail.subscribe(), tail.subscribe()
        with capture_logs() as logs:
            async with asyncio.timeout(BOUND):
                await tail.wait_live()
                first = [envelope(stream, 1), envelope(stream, 2)]
                await bus.publish(first)  # fills the slow subscriber's queue
                await collect(fast, has_all(first))
                then = [envelope(stream, 3)]
                await bus.publish(then)  # one too many for the slow one
                await collect(fast, has_all(then))
        assert tail.subscribers == 1
        with pytest.raises(Unavailable, match="fell behind"):
            await anext(slow)
        with pytest.raises(Unavailable):
            await anext(slow)  # and it stays dropped
    assert [e["event"] for e in logs].count("kafka.tail.subscriber_dropped") == 1


async def test_the_consumer_stops_with_the_last_subscriber_and_starts_from_now_again(
    kafka_bootstrap: str,
) -> None:
    prefix = unique_prefix()
    stream = f"s-{uuid4().hex[:6]}"
    async with running(kafka_bootstrap, prefix) as (tail, bus):
        async with asyncio.timeout(BOUND):
            async with tail.subscribe():
                await tail.wait_live()
            assert (tail.subscribers, tail.live) == (0, False)
            await bus.publish([envelope(stream, 1)])  # nobody is listening
            again = tail.subscribe()
            await tail.wait_live()
            later = [envelope(stream, 2)]
            await bus.publish(later)
        assert await collect(again, has_all(later)) == later


async def test_subscribing_while_kafka_is_unreachable_waits_and_delivers_once_connected(
    kafka_bootstrap: str,
) -> None:
    """The tail's only bootstrap is a proxy that is off: subscribing must neither hang nor
    fail; once the proxy forwards to the broker, the same subscription gets the events."""
    prefix = unique_prefix()
    proxy = TcpProxy(closed_port())
    tail = make_tail(proxy.address, prefix)
    bus = make_bus(kafka_bootstrap, prefix)
    await bus.start()
    try:
        with capture_logs() as logs:
            async with asyncio.timeout(BOUND):
                subscription = tail.subscribe()  # returns at once
                await until(lambda: [e["event"] for e in logs].count("kafka.tail.unavailable") > 1)
                assert not tail.live
                await proxy.start(first_address(kafka_bootstrap))
                await tail.wait_live()
                batch = interleaved(streams=2, per_stream=2)
                await bus.publish(batch)
            received = await collect(subscription, has_all(batch))
    finally:
        async with asyncio.timeout(BOUND):
            await tail.close()
            await bus.close()
            await proxy.stop()
    assert versions_by_stream(received) == {e.stream: [1, 2] for e in batch}


# --- through the gateway, over WebSocket (graphql-transport-ws) ---------------------------


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, lifespan: str = "off") -> AsyncIterator[str]:
    """``app`` under uvicorn in this event loop; yields the GraphQL WebSocket URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan=lifespan, log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(BOUND):
            while not server.started:
                if task.done():
                    task.result()  # startup failed: raise why
                await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        async with asyncio.timeout(BOUND):
            await task
        sock.close()


@contextlib.asynccontextmanager
async def subscribed(url: str, authorization: str, region: str) -> AsyncIterator[Any]:
    """A graphql-transport-ws connection with one ``events`` subscription (id "1")."""
    init = {"type": "connection_init", "payload": {"Authorization": authorization}}
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(ws.recv(), BOUND))["type"] == "connection_ack"
        subscribe = {"query": SUBSCRIBE, "variables": {"r": region}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        yield ws


@pytest.fixture
async def read_store(tmp_path: Path) -> AsyncIterator[SQLiteReadStore]:
    store = SQLiteReadStore(tmp_path / "read-models.db")
    yield store
    await store.close()


async def test_a_city_viewer_gets_its_citys_events_from_kafka_through_the_gateway(
    kafka_bootstrap: str, read_store: SQLiteReadStore
) -> None:
    regions = RegionTree.load()
    prefix = unique_prefix()
    remote = REGISTRY.client("http://registry.invalid")  # no mutations in this test
    viewer = bearer(Role.VIEWER, "640400", subject="guyuan-viewer")
    try:
        async with running(kafka_bootstrap, prefix) as (tail, bus):
            backend = DistributedBackend(
                regions,
                read_store,
                Commands(MODULES, {"registry": remote}),
                service_settings(),
                live_events=tail.events,
            )
            app = create_app(backend, TokenVerifier(regions, secret=SECRET))
            async with serving(app) as url, subscribed(url, viewer, "640400") as ws:
                async with asyncio.timeout(BOUND):
                    await until(lambda: tail.subscribers == 1)  # the subscription reached it
                    async with tail.subscribe() as probe:  # sees what the gateway's one sees
                        await tail.wait_live()
                        tianjin = envelope(f"tj-{uuid4().hex[:6]}", 1, region="120101")
                        await bus.publish([tianjin])
                        # The gateway's subscriber has it queued now, ahead of the next one.
                        assert await collect(probe, has_all([tianjin])) == [tianjin]
                    yuanzhou = envelope(f"yz-{uuid4().hex[:6]}", 1, region="640402")
                    await bus.publish([yuanzhou])
                    message = json.loads(await ws.recv())
    finally:
        await remote.close()
    assert message["type"] == "next" and message["id"] == "1"
    assert message["payload"]["data"]["events"] == {
        "id": str(yuanzhou.id),
        "type": "registry.InstitutionRegistered",
        "stream": yuanzhou.stream,
        "region": "640402",
    }


async def test_the_gateway_entry_point_serves_subscriptions_from_the_topics(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``gateway_app`` with a Kafka bootstrap: the wiring ``shuangjian gateway`` runs."""
    prefix = unique_prefix()
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path,
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic_prefix=prefix,
        jwt_secret=SECRET,
        _env_file=None,
    )
    bus = make_bus(kafka_bootstrap, prefix)
    await bus.start()
    try:
        async with (
            serving(gateway_app(settings), lifespan="on") as url,
            subscribed(url, bearer(Role.VIEWER, "640400"), "640400") as ws,
        ):
            receiving = asyncio.ensure_future(ws.recv())
            async with asyncio.timeout(BOUND):
                # The tail starts with this subscription at some point: publish until then.
                while not receiving.done():
                    await bus.publish(
                        [
                            envelope(f"tj-{uuid4().hex[:6]}", 1, region="120101"),
                            envelope(f"yz-{uuid4().hex[:6]}", 1, region="640402"),
                        ]
                    )
                    await asyncio.wait([receiving], timeout=0.2)
            message = json.loads(receiving.result())
    finally:
        await bus.close()
    assert message["payload"]["data"]["events"]["region"] == "640402"


async def test_without_kafka_the_distributed_gateway_refuses_subscriptions_clearly(
    read_store: SQLiteReadStore,
) -> None:
    remote = REGISTRY.client("http://registry.invalid")
    commands = Commands(MODULES, {"registry": remote})
    backend = DistributedBackend(RegionTree.load(), read_store, commands, service_settings())
    with pytest.raises(Unavailable, match="SHUANGJIAN_KAFKA_BOOTSTRAP"):
        backend.live_events()
    await remote.close()
