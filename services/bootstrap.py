"""Wiring, once: adapters chosen from ``Settings``, services, relays, projections.

``Platform`` is the embedded one-process suite (``shuangjian up``). The distributed
entry points reuse the same builders for the parts they run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp

from services.common.application import Outcome
from services.common.auth import TokenVerifier, load_or_create_secret
from services.common.config import Settings
from services.common.envelope import Envelope
from services.common.memory import InProcessBus
from services.common.ports import Bus, EventStore, ReadStore
from services.common.projection import DEAD_LETTERS, Projection, ProjectionRunner
from services.common.regions import RegionTree
from services.common.relay import OutboxRelay
from services.common.sqlite import SQLiteEventStore, SQLiteReadStore
from services.gateway.app import BodyLimit, create_app
from services.gateway.remote import DistributedBackend, RemoteRegistry
from services.registry.api import create_registry_api
from services.registry.domain.rules import RegistryPolicy
from services.registry.handlers import Registry
from services.registry.projections import InstitutionEventsProjection, InstitutionsProjection

log = structlog.get_logger(__name__)

# Services with an event store today; inspections and finance join as they are built.
SERVICES = ("registry",)


def _mongo_database(settings: Settings) -> Any:
    from pymongo import AsyncMongoClient

    # Majority write and read concerns: an acknowledged append survives a primary failover,
    # and reads never see what a failover could roll back. Retryable writes and reads ride
    # out a primary election.
    client: AsyncMongoClient[Any] = AsyncMongoClient(
        settings.mongodb_uri,
        tz_aware=True,
        w="majority",
        readConcernLevel="majority",
        retryWrites=True,
        retryReads=True,
    )
    return client[settings.mongodb_database]


def build_event_store(settings: Settings, service: str) -> EventStore:
    if settings.event_store == "mongodb":
        from services.common.mongo import MongoEventStore

        return MongoEventStore(_mongo_database(settings), service)
    return SQLiteEventStore(settings.data_dir / f"{service}.events.db")


def build_read_store(settings: Settings) -> ReadStore:
    if settings.read_store == "mongodb":
        from services.common.mongo import MongoReadStore

        return MongoReadStore(_mongo_database(settings), transactions=settings.mongodb_transactions)
    return SQLiteReadStore(settings.data_dir / "read-models.db")


def build_bus(settings: Settings) -> Bus:
    """Kafka when configured; the in-process bus otherwise (embedded, one process)."""
    if settings.bus == "kafka":
        from services.common.kafka import KafkaBus

        assert settings.kafka_bootstrap is not None
        return KafkaBus(
            settings.kafka_bootstrap,
            topic_prefix=settings.kafka_topic_prefix,
            partitions=settings.kafka_partitions,
            replication=settings.kafka_replication,
            services=SERVICES,
            publish_timeout=settings.kafka_publish_timeout,
            request_timeout_ms=int(settings.kafka_publish_timeout * 500),
        )
    return InProcessBus()


def build_verifier(settings: Settings, regions: RegionTree) -> TokenVerifier:
    """HS256 with the configured secret (or the data dir's), plus a JWKS URL if given."""
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    if secret is None and settings.jwks_url is None:
        secret = load_or_create_secret(settings.data_dir)
    return TokenVerifier(
        regions,
        secret=secret,
        jwks_url=settings.jwks_url,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer or None,
    )


def build_projections(settings: Settings, regions: RegionTree) -> list[Projection]:
    return [
        InstitutionsProjection(regions, settings.registry_policy()),
        InstitutionEventsProjection(),
    ]


@dataclass
class Platform:
    """Every service, relay and projection of the platform in one process."""

    settings: Settings
    regions: RegionTree
    event_stores: dict[str, EventStore]
    read_store: ReadStore
    bus: InProcessBus
    runner: ProjectionRunner
    registry: Registry
    relays: list[OutboxRelay] = field(default_factory=list)

    @property
    def policy(self) -> RegistryPolicy:
        return self.registry.policy

    async def start(self) -> None:
        for store in self.event_stores.values():
            await store.start()
        await self.bus.start()
        await self.runner.start()
        for relay in self.relays:
            relay.start()
        log.info("platform.started", services=list(self.event_stores))

    async def stop(self) -> None:
        for relay in self.relays:
            await relay.stop()
        await self.runner.stop()
        await self.bus.close()
        for store in self.event_stores.values():
            await store.close()
        await self.read_store.close()
        log.info("platform.stopped")

    async def applied(self, events: Sequence[Envelope], timeout: float = 5.0) -> bool:
        """Wait until the read models reflect ``events`` (read-your-writes for mutations)."""
        done = True
        for service in {e.service for e in events}:
            last = max(e.position or 0 for e in events if e.service == service)
            done = await self.runner.wait_for(service, last, timeout) and done
        return done

    async def reflects(self, outcome: Outcome[Any], timeout: float = 5.0) -> bool:
        return await self.applied(outcome.events, timeout)

    async def live_events(self) -> AsyncIterator[Envelope]:
        queue = self.bus.subscribe()
        try:
            while True:
                yield await queue.get()
        finally:
            self.bus.unsubscribe(queue)

    async def settle(self) -> None:
        """Publish every outbox and apply everything stored (tests, demo loading)."""
        for relay in self.relays:
            await relay.drain()
        await self.runner.catch_up()


def build_platform(settings: Settings) -> Platform:
    regions = RegionTree.load()
    stores = {service: build_event_store(settings, service) for service in SERVICES}
    bus = InProcessBus()
    relays = {s: OutboxRelay(store, bus, name=s) for s, store in stores.items()}
    read_store = build_read_store(settings)
    runner = ProjectionRunner(build_projections(settings, regions), read_store, stores, bus)
    registry = Registry(
        stores["registry"],
        regions,
        settings.registry_policy(),
        on_commit=relays["registry"].notify,
    )
    return Platform(
        settings=settings,
        regions=regions,
        event_stores=stores,
        read_store=read_store,
        bus=bus,
        runner=runner,
        registry=registry,
        relays=list(relays.values()),
    )


def embedded_app(
    platform: Platform,
    verifier: TokenVerifier,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> ASGIApp:
    """GraphQL at /graphql and the registry's command API at /api/registry, one process."""
    app = create_app(platform, verifier, lifespan)
    app.mount("/api/registry", create_registry_api(platform.registry, verifier))
    return BodyLimit(app, platform.settings.max_body_bytes)


def registry_service_app(settings: Settings) -> ASGIApp:
    """`shuangjian serve registry`: the command API, its event store and its outbox relay."""
    regions = RegionTree.load()
    store = build_event_store(settings, "registry")
    bus = build_bus(settings)
    relay = OutboxRelay(store, bus, name="registry")
    registry = Registry(store, regions, settings.registry_policy(), on_commit=relay.notify)
    api = create_registry_api(registry, build_verifier(settings, regions))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store.start()
        await bus.start()
        relay.start()
        log.info("registry.serving", bus=settings.bus, event_store=settings.event_store)
        try:
            yield
        finally:
            await relay.stop()
            await bus.close()
            await store.close()

    app = FastAPI(title="Shuangjian registry service", lifespan=lifespan)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.mount("/", api)
    return BodyLimit(app, settings.max_body_bytes)


def gateway_app(settings: Settings) -> ASGIApp:
    """`shuangjian gateway`: GraphQL over the read store, commands to the services over HTTP."""
    regions = RegionTree.load()
    read_store = build_read_store(settings)
    registry = RemoteRegistry(settings.registry_url)
    tail = None
    if settings.kafka_bootstrap:
        from services.common.kafka import KafkaTail, events_topic

        # Subscriptions read every service's topic; the consumer starts with the first one.
        topics = [events_topic(settings.kafka_topic_prefix, s) for s in SERVICES]
        tail = KafkaTail(settings.kafka_bootstrap, topics)
    backend = DistributedBackend(
        regions,
        read_store,
        registry,
        settings.registry_policy(),
        live_events=tail.events if tail is not None else None,
    )
    collections = [
        DEAD_LETTERS,
        *(c for p in build_projections(settings, regions) for c in p.collections),
    ]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await read_store.ensure(list({c.name: c for c in collections}.values()))
        try:
            yield
        finally:
            if tail is not None:
                await tail.close()
            await registry.close()
            await read_store.close()

    app = create_app(backend, build_verifier(settings, regions), lifespan)
    return BodyLimit(app, settings.max_body_bytes)
