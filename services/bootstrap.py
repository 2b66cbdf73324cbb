"""The composition root: the modules, and every process built from them.

``MODULES`` lists the services. From it, and adapters chosen from ``Settings``:

* ``build_platform``: the embedded one-process suite (``shuangjian up``);
* ``service_app``: one service alone (``shuangjian serve <service>``);
* ``build_projector`` in ``services/projector.py`` takes its projections, process managers
  and topics from here (``shuangjian project``);
* ``gateway_app``: the GraphQL gateway alone (``shuangjian gateway``).

Nothing else names a service: adding one is its package, one line in ``MODULES`` and one
line in the gateway's composer (``services/gateway/schema.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Response
from starlette.types import ASGIApp

from services.common.application import CommandContext, Outcome
from services.common.audit import AuditTrailProjection
from services.common.auth import SYSTEM, Principal, TokenVerifier, load_or_create_secret
from services.common.commands import Command
from services.common.config import ServiceSettings, Settings
from services.common.envelope import Envelope
from services.common.ingest import INGEST_PATH, Catalog, Execute, IngestLimits, ingest_router
from services.common.memory import InProcessBus
from services.common.metrics import metrics_endpoint
from services.common.module import CommandService, Lookup, ServiceModule, Wiring
from services.common.observability import Check, Observed, readiness
from services.common.ports import Bus, EventStore, ReadStore
from services.common.process import Authorization, ProcessManager, Send
from services.common.projection import Projection, ProjectionRunner, ReplicaLag, collections_of
from services.common.regions import RegionTree
from services.common.relay import OutboxRelay
from services.common.schemas import schema_routes
from services.common.sqlite import SQLiteEventStore, SQLiteReadStore
from services.common.timers import TimerRunner
from services.common.timeutil import utc_now
from services.common.topology import Topology
from services.finance.module import MODULE as FINANCE
from services.gateway.app import BodyLimit, create_app
from services.gateway.remote import DistributedBackend
from services.gateway.schema import build_schema
from services.importing.http import IMPORT_PREFIX, import_router
from services.importing.jobs import ImportJobs
from services.inspections.module import MODULE as INSPECTIONS
from services.processes import PROCESSES
from services.registry.module import MODULE as REGISTRY
from services.reports.http import reports_router

log = structlog.get_logger(__name__)

MODULES: tuple[ServiceModule[Any], ...] = (REGISTRY, INSPECTIONS, FINANCE)

Modules = Sequence[ServiceModule[Any]]
ServiceSettingsMap = Mapping[str, ServiceSettings]


def service_settings(modules: Modules = MODULES) -> dict[str, ServiceSettings]:
    """Each module's own settings, read from the environment."""
    return {m.name: m.settings() for m in modules}


def topology(settings: Settings, modules: Modules = MODULES) -> Topology:
    return Topology(settings.kafka_topic_prefix, tuple(m.name for m in modules))


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


def build_bus(settings: Settings, modules: Modules = MODULES) -> Bus:
    """Kafka when configured; the in-process bus otherwise (embedded, one process)."""
    if settings.bus == "kafka":
        from services.common.kafka import KafkaBus
        from services.common.kafka_security import KafkaSecurity

        assert settings.kafka_bootstrap is not None
        topics = topology(settings, modules)
        return KafkaBus(
            settings.kafka_bootstrap,
            topic_prefix=topics.prefix,
            partitions=settings.kafka_partitions,
            replication=settings.kafka_replication,
            services=topics.services,
            publish_timeout=settings.kafka_publish_timeout,
            request_timeout_ms=int(settings.kafka_publish_timeout * 500),
            security=KafkaSecurity.from_settings(settings),
            create_topics=settings.kafka_create_topics,
        )
    return InProcessBus()


def installation_secret(settings: Settings) -> bytes | None:
    """The installation's own secret: the configured JWT secret, or the one generated in
    the data dir; None with only a JWKS URL (keys a service derives must then be set)."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value().encode()
    if settings.jwks_url is not None:
        return None
    return load_or_create_secret(settings.data_dir).encode()


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


def build_projections(
    settings: Settings,
    regions: RegionTree,
    modules: Modules = MODULES,
    own: ServiceSettingsMap | None = None,
) -> list[Projection]:
    """Every module's projections, and the audit trail that follows all of them."""
    own = {**service_settings(modules), **(own or {})}
    projections = [p for m in modules for p in m.projections(regions, own[m.name])]
    audit = AuditTrailProjection(
        {m.name: m.audit_subject for m in modules}, {m.name: m.redact for m in modules}
    )
    return [*projections, audit]


def build_lookups(
    read_store: ReadStore, clock: Callable[[], datetime], modules: Modules = MODULES
) -> dict[str, Lookup]:
    """Every lookup the modules publish for each other, over the read store."""
    return {
        name: factory(read_store, clock) for m in modules for name, factory in m.provides.items()
    }


def build_processes(
    send: Send,
    modules: Modules = MODULES,
    own: ServiceSettingsMap | None = None,
    *,
    principal: Principal = SYSTEM,
    authorization: Authorization = None,
) -> list[ProcessManager]:
    """The process managers (``services/processes``) whose services are all in ``modules``,
    sending their commands through ``send`` as ``principal`` (and, over HTTP, with the
    bearer header ``authorization``)."""
    own = {**service_settings(modules), **(own or {})}
    present = {m.name for m in modules}
    managers = []
    for spec in PROCESSES:
        if not set(spec.requires) <= present:
            continue
        manager = spec.build(own)
        manager.connect(send, principal=principal, authorization=authorization)
        managers.append(manager)
    return managers


class Commands:
    """Sends each command to the service that owns its type."""

    def __init__(self, modules: Modules, services: Mapping[str, CommandService]) -> None:
        self.owners = {kind: m.name for m in modules for kind in m.command_types}
        self.services = dict(services)

    async def handle(self, cmd: Command, ctx: CommandContext) -> Outcome[Any]:
        owner = self.owners.get(type(cmd))
        if owner is None:
            raise TypeError(f"no service takes {type(cmd).__name__}")
        return await self.services[owner].handle(cmd, ctx)


@dataclass
class Platform:
    """Every service, relay and projection of the platform in one process."""

    settings: Settings
    regions: RegionTree
    modules: Modules
    service_settings: ServiceSettingsMap
    event_stores: dict[str, EventStore]
    read_store: ReadStore
    bus: InProcessBus
    runner: ProjectionRunner
    services: dict[str, CommandService]
    # The router every command takes, the process managers' included.
    commands: Commands
    relays: list[OutboxRelay] = field(default_factory=list)
    clock: Callable[[], datetime] = utc_now
    # Also in the runner's projections, after the read models.
    processes: list[ProcessManager] = field(default_factory=list)
    timers: TimerRunner = field(default_factory=lambda: TimerRunner(()))

    async def start(self) -> None:
        for store in self.event_stores.values():
            await store.start()
        await self.bus.start()
        await self.runner.start()
        for relay in self.relays:
            relay.start()
        self.timers.start()
        log.info("platform.started", services=list(self.event_stores))

    async def stop(self) -> None:
        await self.timers.stop()
        for relay in self.relays:
            await relay.stop()
        await self.runner.stop()
        await self.bus.close()
        for store in self.event_stores.values():
            await store.close()
        await self.read_store.close()
        log.info("platform.stopped")

    # --- the gateway's Backend --------------------------------------------------------

    async def execute(self, cmd: Command, ctx: CommandContext) -> Outcome[Any]:
        return await self.commands.handle(cmd, ctx)

    def config(self, service: str) -> ServiceSettings:
        return self.service_settings[service]

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
        """Every event published from now on. A subscriber that falls behind by the bus's
        ``live_capacity`` ends with ``Unavailable``, as over Kafka: it never misses events
        without being told."""
        redactions = {m.name: m.redact for m in self.modules}
        async with self.bus.follow() as subscription:
            async for event in subscription:
                redact = redactions.get(event.service)
                yield redact(event) if redact is not None else event

    async def settle(self, rounds: int = 10) -> None:
        """Publish every outbox and apply everything stored (tests, demo loading).

        Again while applying stores new events (a process manager's commands make events
        of their own), at most ``rounds`` times.
        """
        for _ in range(rounds):
            heads = {name: await store.max_position() for name, store in self.event_stores.items()}
            for relay in self.relays:
                await relay.drain()
            await self.runner.catch_up()
            for name, store in self.event_stores.items():
                if await store.max_position() != heads[name]:
                    break
            else:
                return


def build_platform(
    settings: Settings,
    modules: Modules = MODULES,
    own: ServiceSettingsMap | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> Platform:
    """The embedded suite; ``own`` overrides the modules' settings and ``clock`` what every
    service and read judges "now" by (tests).

    The process managers send their commands through the platform's own router, as
    ``SYSTEM``; the runner applies them after the read models.
    """
    own = {**service_settings(modules), **(own or {})}
    regions = RegionTree.load()
    stores = {m.name: build_event_store(settings, m.name) for m in modules}
    bus = InProcessBus()
    relays = {name: OutboxRelay(store, bus, name=name) for name, store in stores.items()}
    read_store = build_read_store(settings)
    lookups = build_lookups(read_store, clock, modules)
    secret = installation_secret(settings)
    services = {
        m.name: m.application(
            Wiring(
                stores[m.name],
                regions,
                own[m.name],
                on_commit=relays[m.name].notify,
                clock=clock,
                lookups=lookups,
                secret=secret,
            )
        )
        for m in modules
    }
    commands = Commands(modules, services)
    timers = TimerRunner(
        [
            timer
            for m in modules
            for timer in m.timers(services[m.name], read_store, clock, own[m.name])
        ]
    )
    processes = build_processes(commands.handle, modules, own)
    projections = build_projections(settings, regions, modules, own)
    runner = ProjectionRunner([*projections, *processes], read_store, stores, bus)
    return Platform(
        settings=settings,
        regions=regions,
        modules=modules,
        service_settings=own,
        event_stores=stores,
        read_store=read_store,
        bus=bus,
        runner=runner,
        services=services,
        commands=commands,
        relays=list(relays.values()),
        clock=clock,
        processes=processes,
        timers=timers,
    )


def embedded_app(
    platform: Platform,
    verifier: TokenVerifier,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    schema: Any = None,
) -> ASGIApp:
    """GraphQL at /graphql and each service's command API at /api/<service>, one process."""
    schema = schema if schema is not None else limited_schema(platform.settings)
    bound = platform.settings.ready_max_lag

    async def caught_up() -> str | None:
        lag = await platform.runner.behind()
        return f"the read models are {lag} events behind" if bound and lag > bound else None

    checks = {
        **{f"{name} events": _answers(store) for name, store in platform.event_stores.items()},
        "read store": _reads(platform.read_store),
        "projections": caught_up,
    }
    jobs = ImportJobs(platform.execute)
    app = create_app(platform, verifier, lifespan, schema, checks, imports=jobs)
    app.include_router(ingestion(platform.settings, platform.modules, platform.execute, verifier))
    app.include_router(importing(platform.settings, jobs, verifier))
    app.include_router(reports_router(platform, verifier, schema))
    app.include_router(schema_routes(platform.modules))
    for module in platform.modules:
        app.mount(f"/api/{module.name}", module.api(platform.services[module.name], verifier))
    limited = BodyLimit(app, platform.settings.max_body_bytes, streamed=STREAMED)
    return Observed(limited, "embedded")


STREAMED = (INGEST_PATH, IMPORT_PREFIX)  # bodies their handlers bound as they read them


def importing(settings: Settings, jobs: ImportJobs, verifier: TokenVerifier) -> APIRouter:
    """``POST /api/import/{kind}`` and its jobs (``services/importing/http.py``)."""
    return import_router(jobs, verifier, settings.data_dir / "imports", settings.import_max_bytes)


def ingestion(
    settings: Settings, modules: Modules, execute: Execute, verifier: TokenVerifier
) -> APIRouter:
    """``POST /api/ingest`` over every module's commands (``services/common/ingest.py``)."""
    catalog = Catalog({module.name: module.commands for module in modules})
    limits = IngestLimits(settings.ingest_max_line_bytes, settings.ingest_max_lines)
    return ingest_router(catalog, execute, verifier, limits)


def _answers(store: EventStore) -> Check:
    async def check() -> str | None:
        await store.max_position()
        return None

    return check


def _reads(store: ReadStore) -> Check:
    async def check() -> str | None:
        await store.position("readiness", "probe")
        return None

    return check


def limited_schema(settings: Settings) -> Any:
    """The platform's GraphQL schema with the configured cost budget and request timeout."""
    return build_schema(
        cost_budget=settings.query_cost_budget, request_timeout=settings.request_timeout
    )


def module_named(name: str, modules: Modules = MODULES) -> ServiceModule[Any]:
    for module in modules:
        if module.name == name:
            return module
    raise KeyError(f"no service {name!r}; there are {', '.join(m.name for m in modules)}")


def service_app(
    settings: Settings, module: ServiceModule[Any], own: ServiceSettings | None = None
) -> ASGIApp:
    """`shuangjian serve <service>`: its command API, its event store and its outbox relay."""
    regions = RegionTree.load()
    store = build_event_store(settings, module.name)
    bus = build_bus(settings)
    relay = OutboxRelay(store, bus, name=module.name)
    # The lookups other services publish read the shared read models (MongoDB).
    read_store = build_read_store(settings)
    wiring = Wiring(
        store,
        regions,
        own or module.settings(),
        on_commit=relay.notify,
        lookups=build_lookups(read_store, utc_now),
        secret=installation_secret(settings),
    )
    service = module.application(wiring)
    verifier = build_verifier(settings, regions)
    api = module.api(service, verifier)
    inbound = None
    if settings.kafka_bootstrap:  # district systems' commands over Kafka
        from services.common.inbound import InboundCommands
        from services.common.kafka_security import KafkaSecurity

        inbound = InboundCommands(
            settings.kafka_bootstrap,
            module.name,
            topology(settings).prefix,
            Catalog({module.name: module.commands}),
            service.handle,
            verifier,
            KafkaSecurity.from_settings(settings),
            partitions=settings.kafka_partitions,
            replication=settings.kafka_replication,
            create_topics=settings.kafka_create_topics,
        )
    # Every replica runs the module's timers: their commands decide on the stored state.
    timers = TimerRunner(module.timers(service, read_store, utc_now, wiring.settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store.start()
        await read_store.ensure(collections_of(build_projections(settings, regions)))
        await bus.start()
        relay.start()
        timers.start()
        if inbound is not None:
            inbound.start()
        log.info(
            "service.serving", service=module.name, bus=settings.bus, store=settings.event_store
        )
        try:
            yield
        finally:
            if inbound is not None:  # it runs commands: it stops before the store closes
                await inbound.close()
            await timers.stop()
            await relay.stop()
            await bus.close()
            await store.close()
            await read_store.close()

    app = FastAPI(title=f"Shuangjian {module.name} service", lifespan=lifespan)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """Alive (commands are taken and kept); ``outbox`` says whether events flow on."""
        health = {"status": "ok", "outbox": "flowing"}
        if relay.last_error is not None:
            health |= {"outbox": "waiting", "reason": relay.last_error}
        if inbound is not None and inbound.last_error is not None:
            health["inbound"] = f"waiting: {inbound.last_error}"  # district commands on Kafka
        return health

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        """Ready to take commands: its event store and the read store answer (Kafka being
        down is not a reason: commands wait in the outbox)."""
        return await readiness({"events": _answers(store), "read store": _reads(read_store)})

    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    app.include_router(schema_routes((module,)))
    app.mount("/", api)
    return Observed(BodyLimit(app, settings.max_body_bytes), module.name)


def redacted(
    events: Callable[[], AsyncIterator[Envelope]], modules: Modules = MODULES
) -> Callable[[], AsyncIterator[Envelope]]:
    """A live stream as readers may see it: each service's ``redact`` applied."""
    redactions = {m.name: m.redact for m in modules}

    async def shown() -> AsyncIterator[Envelope]:
        async for event in events():
            redact = redactions.get(event.service)
            yield redact(event) if redact is not None else event

    return shown


def gateway_app(
    settings: Settings,
    modules: Modules = MODULES,
    own: ServiceSettingsMap | None = None,
    schema: Any = None,
) -> ASGIApp:
    """`shuangjian gateway`: GraphQL over the read store, commands to the services over HTTP."""
    own = {**service_settings(modules), **(own or {})}
    regions = RegionTree.load()
    read_store = build_read_store(settings)
    clients = {m.name: m.client(own[m.name].url) for m in modules}
    tail = None
    if settings.kafka_bootstrap:
        from services.common.kafka import KafkaTail
        from services.common.kafka_security import KafkaSecurity

        # Subscriptions read every service's topic; the consumer starts with the first one.
        tail = KafkaTail(
            settings.kafka_bootstrap,
            topology(settings, modules).event_topics,
            security=KafkaSecurity.from_settings(settings),
        )
    backend = DistributedBackend(
        regions,
        read_store,
        Commands(modules, clients),
        own,
        live_events=redacted(tail.events, modules) if tail is not None else None,
    )
    collections = collections_of(build_projections(settings, regions, modules, own))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await read_store.ensure(collections)
        try:
            yield
        finally:
            if tail is not None:
                await tail.close()
            for client in clients.values():
                await client.close()
            await read_store.close()

    schema = schema if schema is not None else limited_schema(settings)
    bound = settings.ready_max_lag

    async def caught_up() -> str | None:
        """Behind by more than the bound, as the projector replicas last reported."""
        lag = await ReplicaLag.total(read_store, utc_now())
        if bound and lag is not None and lag > bound:
            return f"the read models are {lag} events behind (projector replicas' reports)"
        return None

    checks = {"read store": _reads(read_store), "projections": caught_up}
    verifier = build_verifier(settings, regions)
    jobs = ImportJobs(backend.execute)
    app = create_app(backend, verifier, lifespan, schema, checks, imports=jobs)
    app.include_router(ingestion(settings, modules, backend.execute, verifier))
    app.include_router(importing(settings, jobs, verifier))
    app.include_router(reports_router(backend, verifier, schema))
    app.include_router(schema_routes(modules))
    limited = BodyLimit(app, settings.max_body_bytes, streamed=STREAMED)
    return Observed(limited, "gateway")
