"""The distributed set-up as separate OS processes: the registry, inspections and finance
services, the projector (with the process managers) and the gateway.

Each runs the real ``shuangjian`` console script with its configuration in ``SHUANGJIAN_*``
variables, as a Kubernetes deployment would: Kafka transport (the suite's broker, see
``brokers.py``), SQLite stores in a shared data dir (the projector writes the read models
the gateway reads), or MongoDB for both when given a ``mongodb_uri``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, TopicPartition
from pydantic import SecretStr

from services.bootstrap import (
    MODULES,
    build_event_store,
    build_projections,
    build_read_store,
    service_settings,
)
from services.common.auth import Role, issue_token
from services.common.config import Settings
from services.common.kafka import dead_letter_topic, events_topic
from services.common.ports import EventStore, ReadStore
from services.common.projection import Projection, collections_of
from services.processes import PROCESSES
from tests.kafka.brokers import Broker
from tests.kafka.readmodels import REGIONS, Snapshot, replayed, snapshot
from tests.processes import Process, clean_env, free_port, stop_all

SECRET = "kafka-suite-secret-long-enough-for-hs256"
PARTITIONS = 3
SERVICES = tuple(module.name for module in MODULES)  # registry, inspections, finance
DEADLINE = 60.0  # generous: CI machines are slow; the tests never wait a fixed time


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = DEADLINE
) -> None:
    """Poll ``condition`` (plain or async) until it holds; fail naming ``what`` at the deadline."""

    async def holds() -> bool:
        result = condition()
        return bool(await result) if inspect.isawaitable(result) else bool(result)

    try:
        async with asyncio.timeout(timeout):
            while not await holds():  # noqa: ASYNC110 - state lives in other processes
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


def _env(value: Any) -> str:
    """A setting as an environment variable holds it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)


class Deployment:
    """Five processes over one broker; the test talks to them as clients would."""

    def __init__(
        self,
        workdir: Path,
        broker: Broker,
        *,
        mongodb_uri: str | None = None,
        bootstrap: str | None = None,
        client: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        """``bootstrap`` and ``client`` (aiokafka options) reach a secured listener;
        ``overrides`` are further settings of every process (``kafka_sasl_username``…)."""
        self.workdir = workdir
        self.broker = broker
        self.bootstrap = bootstrap or broker.bootstrap
        self.client = dict(broker.client if client is None else client)
        self.mongodb_uri = mongodb_uri
        self.prefix = f"t{uuid4().hex[:12]}"
        registry_port, inspections_port = free_port(), free_port()
        finance_port = free_port()
        gateway_port, projector_port = free_port(), free_port()
        self.registry_url = f"http://127.0.0.1:{registry_port}"
        self.inspections_url = f"http://127.0.0.1:{inspections_port}"
        self.finance_url = f"http://127.0.0.1:{finance_port}"
        self.gateway_url = f"http://127.0.0.1:{gateway_port}"
        self.projector_url = f"http://127.0.0.1:{projector_port}"
        values: dict[str, Any] = {
            "kafka_bootstrap": self.bootstrap,
            "kafka_topic_prefix": self.prefix,
            "kafka_partitions": PARTITIONS,
            "kafka_replication": broker.replication,
            # A real broker takes CreateTopics: the services and the projector create their
            # topics as in production. The mock does not: they are pre-created in start().
            "kafka_create_topics": broker.creates_topics,
            "data_dir": str(workdir / "data"),
            "jwt_secret": SECRET,
            "registry_url": self.registry_url,
            "inspections_url": self.inspections_url,
            "finance_url": self.finance_url,
            "projector_web_port": projector_port,
            # A killed projector's partitions move to its successor after this long.
            "projector_session_timeout": 6,
            "projector_commit_interval": 0.5,
            # A publish stuck on a broker that went away is retried after this long.
            "kafka_publish_timeout": 3,
        }
        if mongodb_uri:
            values |= {"mongodb_uri": mongodb_uri, "mongodb_database": f"sj_{uuid4().hex[:12]}"}
        values |= overrides
        self.settings = Settings(**values, _env_file=None)  # type: ignore[call-arg]
        env = clean_env() | {f"SHUANGJIAN_{k.upper()}": _env(v) for k, v in values.items()}
        common: dict[str, Any] = {"workdir": workdir, "env": env}
        self.registry = Process(
            "registry",
            ["serve", "registry", "--port", str(registry_port)],
            ready_url=f"{self.registry_url}/healthz",
            **common,
        )
        self.inspections = Process(
            "inspections",
            ["serve", "inspections", "--port", str(inspections_port)],
            ready_url=f"{self.inspections_url}/healthz",
            **common,
        )
        # Its working-day clock (a timer) runs in this process, as in production.
        self.finance = Process(
            "finance",
            ["serve", "finance", "--port", str(finance_port)],
            ready_url=f"{self.finance_url}/healthz",
            **common,
        )
        self.projector = Process(
            "projector", ["project"], ready_url=f"{self.projector_url}/ready", **common
        )
        self.gateway = Process(
            "gateway",
            ["gateway", "--port", str(gateway_port)],
            ready_url=f"{self.gateway_url}/healthz",
            **common,
        )
        self.processes = (
            self.registry,
            self.inspections,
            self.finance,
            self.projector,
            self.gateway,
        )
        # A second projector replica in the same consumer group (started only when asked).
        replica_port = free_port()
        self.replica_url = f"http://127.0.0.1:{replica_port}"
        self.replica = Process(
            "projector-2",
            ["project"],
            ready_url=f"{self.replica_url}/ready",
            workdir=workdir,
            env=env | {"SHUANGJIAN_PROJECTOR_WEB_PORT": str(replica_port)},
        )
        # Each service's events topic, as the services publish and the projector reads them.
        self.topics = {service: events_topic(self.prefix, service) for service in SERVICES}
        self._read_store: ReadStore | None = None
        self._topics_created = broker.creates_topics

    @property
    def topic(self) -> str:
        """The registry's events topic."""
        return self.topics["registry"]

    # --- processes ----------------------------------------------------------------------

    async def start(self, *processes: Process) -> None:
        """Start processes (all by default) and wait, without blocking the loop, for each."""
        chosen = processes or self.processes
        if not self._topics_created:  # by the operator: the platform does not create them
            topics = [*self.topics.values(), dead_letter_topic(self.prefix)]
            await self.broker.create_topics(topics, PARTITIONS)
            self._topics_created = True
        for process in chosen:
            process.start(wait=False)
        for process in chosen:
            await asyncio.to_thread(process.wait_ready)

    async def close(self) -> None:
        # Together (SIGTERM to all, then wait for each): each takes about a second to shut
        # down, and they do not depend on each other for it.
        await asyncio.to_thread(stop_all, (*self.processes, self.replica))
        if self._read_store is not None:
            await self._read_store.close()
        if self.mongodb_uri:
            from pymongo import AsyncMongoClient

            client: AsyncMongoClient[Any] = AsyncMongoClient(self.mongodb_uri)
            await client.drop_database(self.settings.mongodb_database)
            await client.close()

    @property
    def output(self) -> str:
        return "\n".join(process.output for process in (*self.processes, self.replica))

    # --- clients ------------------------------------------------------------------------

    def token(self, role: Role = Role.OPERATOR, region: str | None = None) -> str:
        return issue_token(SECRET, f"kafka-suite-{role.value}", role=role, region=region)

    async def graphql(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        """The whole GraphQL response body (data and errors)."""
        async with httpx.AsyncClient(timeout=30.0) as client:
            response = await client.post(
                f"{self.gateway_url}/graphql",
                json={"query": query, "variables": variables or {}},
                headers={"Authorization": f"Bearer {token or self.token()}"},
            )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def commands(
        self, requests: Sequence[tuple[str, dict[str, Any]]], *, token: str | None = None
    ) -> list[httpx.Response]:
        """POST each (path, body) to the registry service's command API, in order."""
        headers = {"Authorization": f"Bearer {token or self.token()}"}
        async with httpx.AsyncClient(base_url=self.registry_url, timeout=30.0) as client:
            return [await client.post(path, json=body, headers=headers) for path, body in requests]

    async def metrics(self, url: str | None = None) -> str:
        """A projector's Prometheus metrics (the first replica's by default)."""
        async with httpx.AsyncClient(timeout=10.0) as client:
            return (await client.get(f"{url or self.projector_url}/metrics")).text

    # --- stores -------------------------------------------------------------------------

    async def read_store(self) -> ReadStore:
        """The read models the projector writes and the gateway reads."""
        if self._read_store is None:
            self._read_store = build_read_store(self.settings)
            # As the projector does on start: the process managers' collections too.
            await self._read_store.ensure(collections_of(self.followers()))
        return self._read_store

    def followers(self) -> list[Projection]:
        """What the projector runs: the read models' projections, then the process managers
        (unconnected: only their names and sources are used here)."""
        own = service_settings()
        managers = [spec.build(own) for spec in PROCESSES]
        return [*build_projections(self.settings, REGIONS), *managers]

    async def positions(
        self, partitions: Sequence[int], service: str = "registry"
    ) -> dict[str, dict[int, int]]:
        """Per projection reading ``service``'s topic (the read models' and the process
        managers'), the next offset it will apply in each of these partitions of it."""
        store = await self.read_store()
        topic = self.topics[service]
        return {
            projection.name: {
                p: await store.position(projection.name, f"{topic}:{p}") for p in partitions
            }
            for projection in self.followers()
            if service in projection.sources  # a projection has positions only where it reads
        }

    async def caught_up(self) -> bool:
        """Every service's outbox is empty, and every projection and process manager has
        applied every message now in every topic it reads."""
        if not await self.published():
            return False
        for service in self.topics:
            ends = await topic_ends(self.bootstrap, self.topics[service], **self.client)
            positions = await self.positions(list(ends), service)
            if not all(
                by_partition.get(p, 0) >= end
                for by_partition in positions.values()
                for p, end in ends.items()
            ):
                return False
        return True

    async def published(self) -> bool:
        """Whether every event the services stored has been published (outboxes empty)."""
        stores = await self.event_stores()
        try:
            return all([not await store.unpublished(1) for store in stores.values()])
        finally:
            for store in stores.values():
                await store.close()

    async def snapshot(self) -> Snapshot:
        return await snapshot(await self.read_store())

    async def replay(self, events: Mapping[str, EventStore] | None = None) -> Snapshot:
        """Read models rebuilt from every service's event store (or from ``events``, each
        service's store by its name)."""
        path = self.workdir / f"replay-{uuid4().hex[:6]}.db"
        if events is not None:
            return await replayed(self.settings, events, path)
        stores = await self.event_stores()
        try:
            return await replayed(self.settings, stores, path)
        finally:
            for store in stores.values():
                await store.close()

    async def event_stores(self) -> dict[str, EventStore]:
        """Every service's event store as the services write it, started; close each."""
        stores = {service: build_event_store(self.settings, service) for service in SERVICES}
        started: list[EventStore] = []
        try:
            for store in stores.values():
                await store.start()
                started.append(store)
        except BaseException:
            for store in started:
                await store.close()
            raise
        return stores


async def committed(bootstrap: str, group: str, topic: str, **client: Any) -> dict[int, int]:
    """The consumer group's committed offset in each partition of ``topic`` (0: none)."""
    partitions = [TopicPartition(topic, p) for p in await topic_ends(bootstrap, topic, **client)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
        return {tp.partition: max(meta.offset, 0) for tp, meta in offsets.items()}
    finally:
        await admin.close()


async def topic_ends(bootstrap: str, topic: str, **client: Any) -> dict[int, int]:
    """The next offset of every partition of ``topic`` (none while it does not exist)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def read_topic(
    bootstrap: str, topic: str, **client: Any
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every message now in ``topic``, in partition then offset order."""
    ends = await topic_ends(bootstrap, topic, **client)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **client,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in ends])
        async with asyncio.timeout(DEADLINE):
            while len(records) < sum(ends.values()):
                batch = await consumer.getmany(timeout_ms=200)
                for part in batch.values():
                    records.extend(part)
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.partition, r.offset))


async def produce(
    bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes | None, Any]]
) -> None:
    """Send (key, value, headers) messages in order, each acknowledged by every replica."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers or None)
    finally:
        await producer.stop()
