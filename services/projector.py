"""Projection workers on faust-streaming: the embedded projections, fed from Kafka.

One agent per service topic (``<prefix>.<service>.events``) takes the messages in
batches, groups them by partition and runs ``project()`` for every projection of that
service, the same code the embedded ``ProjectionRunner`` runs over the event stores. The
source of a run is ``<topic>:<partition>`` and an event's position is its offset + 1; the
read store records that position in the same commit as the update, so a redelivered
message changes nothing (guarantee 5).

Messages that are not envelopes, and events a projection parks, go to the dead-letter
topic (``<prefix>.dead-letters``) with their reason, and the partition goes on
(guarantee 7). Consumer lag per partition is the ``shuangjian_projector_lag`` gauge,
served at ``/metrics`` when the worker's web server is on.

The workers also run the process managers (``services/processes``), which send commands
to the services' HTTP APIs (see ``build_process_managers``). One that cannot send now
(``RetryLater``) keeps its position and the batch is tried again after ``retry_delay``.

Run one with ``python -m services.projector`` (configuration from ``SHUANGJIAN_*``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import faust
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from services.bootstrap import (
    MODULES,
    Commands,
    Modules,
    build_processes,
    build_projections,
    build_read_store,
    service_settings,
    topology,
)
from services.common.auth import Principal, Role, issue_token
from services.common.config import Settings
from services.common.envelope import Envelope
from services.common.errors import MalformedEvent
from services.common.kafka_security import KafkaSecurity
from services.common.metrics import DEAD_LETTERS, PROJECTION_LAG
from services.common.module import CommandService
from services.common.ports import Batch, ReadStore
from services.common.process import ProcessManager
from services.common.projection import (
    Projection,
    ReplicaLag,
    RetryLater,
    collections_of,
    outdated,
    project,
    stamp_versions,
)
from services.common.regions import RegionTree
from services.common.remote import RemoteService
from services.common.timeutil import utc_now
from services.common.topology import TOPIC_CONFIG

log = structlog.get_logger(__name__)

HEARTBEAT_INTERVAL = 5.0  # seconds between a replica's lag reports in the read store

LAG = Gauge(
    "shuangjian_projector_lag",
    "Messages in a partition that the projector has not applied yet (highwater - next offset).",
    ["topic", "partition"],
)


@dataclass(frozen=True)
class Record:
    """One Kafka message as the projector sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}"

    @property
    def position(self) -> int:
        return self.offset + 1


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be applied, with why and where it came from."""

    record: Record
    reason: str
    projection: str | None = None  # None: not an envelope at all

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "reason": self.reason,
            "projection": self.projection,
            "topic": self.record.topic,
            "partition": self.record.partition,
            "offset": self.record.offset,
        }
        raw = self.record.value or b""
        try:
            body["value"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            body["value_base64"] = base64.b64encode(raw).decode("ascii")
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    def headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("reason", self.reason.encode()[:1000]),
            ("source-topic", self.record.topic.encode()),
            ("source-partition", str(self.record.partition).encode()),
            ("source-offset", str(self.record.offset).encode()),
        ]
        if self.projection:
            headers.append(("projection", self.projection.encode()))
        return headers


DeadLetterSink = Callable[[DeadLetter], Awaitable[None]]


class Projector:
    """Applies batches of Kafka records to the projections. Knows nothing of faust.

    Positions per (projection, source) are read from the read store once and then kept
    here; ``forget()`` drops them (a rebalance may have moved a partition elsewhere and
    back). A lock keeps one batch at a time per worker, so two agents never interleave
    read-modify-writes of the same documents.
    """

    def __init__(
        self,
        read_store: ReadStore,
        projections: Sequence[Projection],
        dead_letters: DeadLetterSink,
    ) -> None:
        self.read_store = read_store
        self.projections = list(projections)
        self.dead_letters = dead_letters
        self._positions: dict[tuple[str, str], int] = {}
        self._prepared = False
        self._lock = asyncio.Lock()
        self.assigned = False  # joined the consumer group at least once (readiness)

    def for_service(self, service: str) -> list[Projection]:
        return [p for p in self.projections if service in p.sources]

    async def prepare(self) -> None:
        if self._prepared:
            return
        await self.read_store.ensure(collections_of(self.projections))
        stale = await outdated(self.read_store, self.projections)
        if stale:
            # Replicas share the read models: one of them cannot rebuild under the others.
            raise OutdatedReadModels(
                f"the read models of {', '.join(p.name for p in stale)} were built by an "
                "older version of their projection: stop the projector replicas and run "
                "`shuangjian rebuild` (deploy/k8s/jobs/rebuild.yaml), which replays every "
                "event into them"
            )
        await stamp_versions(self.read_store, self.projections)
        self._prepared = True

    def forget(self) -> None:
        self._positions.clear()

    async def position(self, projection: str, source: str) -> int:
        key = (projection, source)
        if key not in self._positions:
            self._positions[key] = await self.read_store.position(projection, source)
        return self._positions[key]

    async def apply(self, service: str, records: Sequence[Record]) -> None:
        """Apply a batch from one service's topic, partition by partition, in offset order."""
        by_source: dict[str, list[Record]] = {}
        for record in records:
            by_source.setdefault(record.source, []).append(record)
        async with self._lock:
            await self.prepare()
            for source, run in by_source.items():
                run.sort(key=lambda r: r.offset)
                try:
                    await self._apply_partition(service, source, run)
                except BaseException:
                    # A commit may have landed before the failure: read positions again.
                    for projection in self.for_service(service):
                        self._positions.pop((projection.name, source), None)
                    raise

    async def _apply_partition(self, service: str, source: str, run: Sequence[Record]) -> None:
        projections = self.for_service(service)
        starts = {p.name: await self.position(p.name, source) for p in projections}
        floor = min(starts.values(), default=0)
        events: list[Envelope] = []
        records: dict[int, Record] = {}
        for record in run:
            try:
                if record.value is None:
                    raise MalformedEvent("an event needs a value (tombstone found)")
                event = Envelope.from_json(record.value).with_position(record.position)
            except MalformedEvent as exc:
                if record.position > floor:  # not already dead-lettered before a redelivery
                    log.warning("projector.malformed", source=source, offset=record.offset)
                    await self.dead_letters(DeadLetter(record, exc.message))
                    DEAD_LETTERS.labels("none").inc()
                continue
            events.append(event)
            records[record.position] = record
        last = run[-1].position
        for projection in projections:
            start = starts[projection.name]
            parked: list[tuple[Envelope, str]] = []
            new = await project(
                projection, self.read_store, source, events, start, on_parked=_collect(parked)
            )
            if last > new:
                # The run ended with messages that are not events: record that they are
                # done, or a partition whose last message is malformed would never move.
                await self.read_store.commit(Batch(projection.name, source, last))
                new = last
            self._positions[(projection.name, source)] = new
            for event, reason in parked:
                record = records[event.position or 0]
                await self.dead_letters(DeadLetter(record, reason, projection.name))


def _collect(into: list[tuple[Envelope, str]]) -> Callable[[Envelope, str], None]:
    def parked(event: Envelope, reason: str) -> None:
        into.append((event, reason))

    return parked


def _record(event: faust.types.EventT[Any]) -> Record:
    message = event.message
    return Record(message.topic, message.partition, message.offset, message.key, message.value)


class ProjectorApp(faust.App):
    """The faust app of the projection workers, with its ``Projector``."""

    projector: Projector


def build_process_managers(
    settings: Settings, modules: Modules = MODULES, commands: CommandService | None = None
) -> tuple[list[ProcessManager], list[RemoteService]]:
    """The process managers a worker runs, and the HTTP clients to close when it stops.

    They send their commands to each service's API (``SHUANGJIAN_<SERVICE>_URL``) with a
    bearer token of an ``admin`` (national, its subject the manager's ``actor``), minted for
    each command with ``SHUANGJIAN_JWT_SECRET``, audience and issuer ``shuangjian``: the
    services must accept HS256 tokens signed with that secret. Without a configured
    secret no token the services accept can be made, so the worker logs a warning and runs
    no process manager (the read models are built all the same). A service that refuses
    the token (``UNAUTHENTICATED``) holds the process manager back, loudly, until it is
    fixed: no reaction is lost.

    ``commands`` replaces the HTTP clients (tests): then no token is needed.
    """
    if commands is not None:
        return build_processes(commands.handle, modules), []
    if settings.jwt_secret is None:
        log.warning(
            "projector.no_process_managers",
            reason="SHUANGJIAN_JWT_SECRET is not set: the process managers could not "
            "authenticate to the services",
        )
        return [], []
    secret = settings.jwt_secret.get_secret_value()
    own = service_settings(modules)
    clients = [m.client(own[m.name].url) for m in modules]
    router = Commands(modules, {c.name: c for c in clients})

    managers = build_processes(router.handle, modules, own)
    for manager in managers:
        subject = manager.actor
        manager.connect(
            router.handle,
            principal=Principal(subject, Role.ADMIN),
            authorization=partial(_bearer, secret, subject),
        )
    return managers, clients


def _bearer(secret: str, subject: str) -> str:
    return f"Bearer {issue_token(secret, subject, role=Role.ADMIN)}"


def faust_brokers(bootstrap: str) -> list[str]:
    """``host:port[,host:port…]`` as the ``kafka://`` URLs faust wants."""
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def build_projector(
    settings: Settings,
    *,
    read_store: ReadStore | None = None,
    regions: RegionTree | None = None,
    group_id: str | None = None,
    batch_size: int = 500,
    batch_within: float = 0.5,
    web_port: int | None = None,
    retry_delay: float = 1.0,
    modules: Modules = MODULES,
    commands: CommandService | None = None,
) -> ProjectorApp:
    """A faust app with one agent per service topic that runs the platform's projections
    and then its process managers (``build_process_managers``; ``commands`` is where they
    send, the services' HTTP APIs by default).

    ``group_id`` is the consumer group (default ``<prefix>-projector``). ``web_port``
    turns faust's web server on, with ``/metrics`` for Prometheus; ``None`` leaves it off.
    When ``read_store`` is not given, one is built from the settings and closed on shutdown.
    """
    if not settings.kafka_bootstrap:
        raise ValueError("the projector needs SHUANGJIAN_KAFKA_BOOTSTRAP")
    topics = topology(settings, modules)
    own_store = read_store is None
    store = read_store if read_store is not None else build_read_store(settings)
    projections: list[Projection] = build_projections(
        settings, regions or RegionTree.load(), modules
    )
    managers, clients = build_process_managers(settings, modules, commands)
    projections += managers

    app = ProjectorApp(
        group_id or topics.group,
        broker=faust_brokers(settings.kafka_bootstrap),
        # faust declares the topics it reads and writes, as the services' buses do, with
        # the same partitions and replication (unless the operator owns the topics). The
        # workers need no leader election (no tables, no timers).
        topic_allow_declare=settings.kafka_create_topics,
        topic_disable_leader=True,
        store="memory://",
        datadir=str(settings.data_dir / "faust"),  # not the working directory
        autodiscover=False,
        web_enabled=web_port is not None,
        web_port=web_port or 6066,
        consumer_auto_offset_reset="earliest",
        # A worker killed without leaving the group keeps its partitions this long; the
        # heartbeat must beat several times within it.
        broker_session_timeout=settings.projector_session_timeout,
        broker_heartbeat_interval=settings.projector_session_timeout / 10,
        broker_credentials=KafkaSecurity.from_settings(settings).faust(),
    )
    dead_letters = app.topic(
        topics.dead_letters,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        internal=True,
        partitions=settings.kafka_partitions,
        replicas=settings.kafka_replication,
        config=TOPIC_CONFIG,
    )

    async def send_dead_letter(letter: DeadLetter) -> None:
        # force: send now, not attached to the current event (sent when it is acked).
        sent = await dead_letters.send(
            key=letter.record.key,
            value=letter.to_json(),
            headers=letter.headers(),
            force=True,
        )
        await sent  # delivered before the partition's position moves past it

    projector = Projector(store, projections, send_dead_letter)
    app.projector = projector

    lags: dict[TP, int] = {}  # this replica's partitions: messages not applied yet

    def update_lag(records: Iterable[Record]) -> None:
        last: dict[TP, int] = {}
        for record in records:
            tp = TP(record.topic, record.partition)
            last[tp] = max(last.get(tp, -1), record.offset)
        for tp, offset in last.items():
            try:
                highwater = app.consumer.highwater(tp)
            except Exception:  # no longer assigned (rebalance)
                continue
            if highwater is not None:
                lags[tp] = max(highwater - offset - 1, 0)
                LAG.labels(tp.topic, str(tp.partition)).set(lags[tp])
        for projection in projections:
            read = {topics.events(source) for source in projection.sources}
            behind = sum(lag for tp, lag in lags.items() if tp.topic in read)
            PROJECTION_LAG.labels(projection.name).set(behind)

    def agent_for(service: str) -> Callable[[faust.StreamT[bytes]], Awaitable[None]]:
        async def consume(stream: faust.StreamT[bytes]) -> None:
            # StreamT (faust's protocol) does not declare take_events; Stream has it.
            batches = stream.take_events(batch_size, batch_within)  # type: ignore[attr-defined]
            async for events in batches:
                records = [_record(event) for event in events]
                # Never give up on a batch: take_events acks it once this body returns
                # or raises. Stopping waits for it too (stream_wait_empty).
                while True:
                    try:
                        await projector.apply(service, records)
                        break
                    except RetryLater as exc:
                        log.warning("projector.retry_later", service=service, reason=str(exc))
                        await asyncio.sleep(retry_delay)
                    except Exception:
                        log.exception("projector.batch_failed", service=service)
                        await asyncio.sleep(retry_delay)
                update_lag(records)

        return consume

    for service in topics.services:
        topic = app.topic(
            topics.events(service),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            # Owned by the platform: faust creates it (when allowed to declare) before it
            # subscribes, as the services' buses do before they publish.
            internal=True,
            partitions=settings.kafka_partitions,
            replicas=settings.kafka_replication,
            config=TOPIC_CONFIG,
        )
        app.agent(topic, name=f"shuangjian.projector.{service}")(agent_for(service))

    # mode's SignalHandlerT rejects every handler, even one of its exact shape (mypy 2.4).
    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        await dead_letters.maybe_declare()  # written to, never read here: declared by hand
        projector.forget()
        projector.assigned = True
        # Lag is reported for the partitions this replica serves now, from their next batch.
        LAG.clear()
        lags.clear()

    if own_store:

        @app.on_before_shutdown.connect  # type: ignore[arg-type]
        async def _close(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
            await store.close()

    if clients:

        @app.on_before_shutdown.connect  # type: ignore[arg-type]
        async def _close_clients(
            sender: Any, *args: Any, signal: Any = None, **kwargs: Any
        ) -> None:
            for client in clients:
                await client.close()

    # Every few seconds, this replica's lag into the read store: the gateway's readiness
    # reads how far behind the read models are from there.
    heartbeat = ReplicaLag(store, f"{socket.gethostname()}-{os.getpid()}")

    @app.timer(HEARTBEAT_INTERVAL, on_leader=False)
    async def _heartbeat() -> None:
        if not projector.assigned:
            return
        try:
            await projector.prepare()
            await heartbeat.publish(sum(lags.values()), utc_now())
        except Exception as exc:  # the read store is down: the batches will say so too
            log.warning("projector.heartbeat_failed", error=repr(exc))

    if web_port is not None:

        @app.page("/healthz")
        async def healthz(web: Any, request: Any) -> Any:
            # Alive: the worker's event loop answers (readiness is /ready).
            return web.json({"status": "ok"})

        @app.page("/ready")
        async def ready(web: Any, request: Any) -> Any:
            # Ready once the worker has joined its group and is not rebalancing (it may own
            # no partition when there are more workers than partitions: still ready).
            ok = projector.assigned and not app.rebalancing
            return web.json({"ready": ok}, status=200 if ok else 503)

        @app.page("/metrics")
        async def metrics(web: Any, request: Any) -> Any:
            # aiohttp refuses a charset inside content_type; the header carries it whole.
            headers = {"Content-Type": CONTENT_TYPE_LATEST}
            return web.bytes(generate_latest(), headers=headers)

    return app


def run_projector(settings: Settings) -> None:
    """Run one projection worker until it is told to stop (``shuangjian project``).

    The web server (``/ready``, ``/metrics``) listens on ``SHUANGJIAN_PROJECTOR_WEB_PORT``
    (default 6066; 0 turns it off).
    """
    assert settings.kafka_bootstrap is not None
    # A refused login or an untrusted broker certificate will not cure itself: say which
    # setting to fix and exit, rather than a traceback that says "Unable to bootstrap".
    refusal = asyncio.run(KafkaSecurity.from_settings(settings).diagnose(settings.kafka_bootstrap))
    if refusal is not None:
        log.error("projector.refused", error=refusal)
        raise SystemExit(f"shuangjian project: {refusal}")
    try:
        asyncio.run(_check_read_models(settings))
    except OutdatedReadModels as exc:
        log.error("projector.outdated_read_models", error=str(exc))
        raise SystemExit(f"shuangjian project: {exc}") from None
    app = build_projector(settings, web_port=settings.projector_web_port or None)
    faust.Worker(app, loglevel=settings.log_level).execute_from_commandline()


if __name__ == "__main__":
    from services.common.logging import configure_logging

    _settings = Settings.model_validate({})
    configure_logging(_settings.log_level, _settings.log_format)
    run_projector(_settings)


async def _no_dead_letters(letter: DeadLetter) -> None:
    """The start-up check applies nothing, so it parks nothing."""


async def _check_read_models(settings: Settings) -> None:
    """Refuse to start on read models an older version built (``Projector.prepare``)."""
    store = build_read_store(settings)
    try:
        own = service_settings(MODULES)
        readers = build_projections(settings, RegionTree.load(), MODULES, own)
        await Projector(store, readers, _no_dead_letters).prepare()
    finally:
        await store.close()


class OutdatedReadModels(Exception):
    """The read models need a rebuild before this version's projector may write them."""


class ProjectorRunning(Exception):
    """A rebuild was asked for while projector replicas consume the topics (or while
    nobody can tell whether they do)."""


async def reset_for_replay(settings: Settings, modules: Modules = MODULES) -> list[str]:
    """The distributed rebuild (``shuangjian rebuild`` with Kafka): every read model is
    dropped and the projector group's offsets go back to the start of the topics, so the
    projector replays every event into them when it next starts. Returns the read models
    reset.

    Refused (``ProjectorRunning``) while the group has members: a running replica would
    go on from where it was and the read models would miss what it skips. Offsets first,
    read models second: cut short in between, the projector replays onto intact read
    models, whose positions skip what they hold, and running the command again finishes.
    The process managers keep their positions: they do not act on an event twice.
    """
    assert settings.kafka_bootstrap is not None, "the distributed rebuild needs Kafka"
    topics = topology(settings, modules)
    client = {"bootstrap_servers": settings.kafka_bootstrap}
    client |= KafkaSecurity.from_settings(settings).aiokafka()
    admin = AIOKafkaAdminClient(**client)
    await admin.start()
    try:
        members = await _members(admin, topics.group)
        described = await admin.describe_topics(topics.event_topics)
    except KafkaError as exc:  # e.g. a broker that does not answer DescribeGroups
        raise ProjectorRunning(
            f"cannot tell whether projector replicas consume as group {topics.group!r}: "
            f"{exc!r}; nothing was changed"
        ) from exc
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], p["partition"])
        for topic in described
        if topic["error_code"] == 0
        for p in topic["partitions"]
    ]
    if members:
        raise ProjectorRunning(
            f"{members} projector replica(s) consume as group {topics.group!r}: stop them "
            "first (e.g. kubectl scale deployment/projector --replicas=0), then run the "
            "rebuild, then start them again"
        )
    consumer = AIOKafkaConsumer(group_id=topics.group, enable_auto_commit=False, **client)
    await consumer.start()
    try:
        if partitions:
            consumer.assign(partitions)
            starts = await consumer.beginning_offsets(partitions)
            await consumer.commit(dict(starts))
    finally:
        await consumer.stop()
    store = build_read_store(settings)
    try:
        own = service_settings(modules)
        readers = build_projections(settings, RegionTree.load(), modules, own)
        await store.ensure(collections_of(readers))
        for projection in readers:
            await store.reset(projection.name, [c.name for c in projection.collections])
        # The replay fills them with what this version writes.
        await stamp_versions(store, readers)
    finally:
        await store.close()
    return [projection.name for projection in readers]


async def _members(admin: AIOKafkaAdminClient, group: str) -> int:
    """How many members the consumer group has now (0: empty, or it never existed)."""
    responses = await admin.describe_consumer_groups([group])
    count = 0
    for response in responses:
        for description in response.groups:
            error, _, state, _, _, members = description[:6]
            if error == 0 and state not in ("Dead", "Empty"):
                count += len(members)
    return count
