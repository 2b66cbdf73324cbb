"""The process managers in the faust workers, against a real Kafka-protocol broker.

Inspections events made by the real services are published to the inspections topic the
way the outbox relay does, duplicates included; the worker's ``WarningCards`` sends its
commands to those services (in this process, through ``build_projector(commands=...)``).
Each card must be issued exactly once, however often its event is delivered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from services.bootstrap import Platform, build_platform
from services.common.application import CommandContext, Outcome
from services.common.auth import Role, TokenVerifier
from services.common.commands import Command
from services.common.config import Settings
from services.common.envelope import Envelope
from services.common.errors import Unavailable
from services.common.kafka import events_topic
from services.common.ports import ReadStore
from services.common.process import PROCESS_REFUSALS, Reaction
from services.common.projection import DEAD_LETTERS
from services.common.sqlite import SQLiteReadStore
from services.inspections.module import (
    FindingInput,
    RecordInspection,
    SubmitRectification,
    VerifyRectification,
    VisitInput,
)
from services.processes import RiskWatch, WarningCards
from services.projector import build_process_managers, build_projector
from services.registry import views
from services.registry.module import ApproveInstitution, IssueWarningCard
from tests.factories import envelope, numbered_registration
from tests.kafka.deployment import eventually
from tests.kafka.readmodels import REGIONS
from tests.kafka.test_projector import messages_of, publish, running

DEADLINE = 15.0
CTX = CommandContext(actor="tester")
MANAGER = WarningCards.name


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    return kafka_settings


@pytest.fixture
async def read_store(tmp_path: Path) -> AsyncIterator[SQLiteReadStore]:
    store = SQLiteReadStore(tmp_path / "kafka-read-models.db")
    yield store
    await store.close()


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Platform]:
    """The services the worker sends to; their own runner runs no process manager."""
    own = Settings(data_dir=tmp_path / "services", _env_file=None)  # type: ignore[call-arg]
    platform = build_platform(own)
    platform.runner.projections = [p for p in platform.runner.projections if p.read_model]
    await platform.start()
    yield platform
    await platform.stop()


async def inspection_events(platform: Platform) -> tuple[str, list[Envelope]]:
    """An approved institution, a batch finding hidden training there, and its order failed
    twice: every inspections event, and the institution."""
    registration = numbered_registration(1)
    assert registration.id is not None
    inst = registration.id
    await platform.execute(registration, CTX)
    await platform.execute(ApproveInstitution(id=inst, license_no="L1"), CTX)
    await platform.settle()
    await platform.execute(
        RecordInspection(
            id="k-insp",
            region=registration.region,
            kind="NIGHT",
            started_at=platform.clock() - timedelta(minutes=1),
            personnel=2,
            visits=[
                VisitInput(
                    institution_id=inst,
                    findings=[FindingInput(type="HIDDEN_TRAINING", description="隐形变异")],
                )
            ],
        ),
        CTX,
    )
    for n in range(2):
        await platform.execute(SubmitRectification(id="k-insp~1", note=f"已整改 {n}"), CTX)
        await platform.execute(VerifyRectification(id="k-insp~1", passed=False), CTX)
    await platform.settle()
    return inst, await platform.event_stores["inspections"].read_all()


def manager_caught_up(store: ReadStore, topic: str, ends: dict[int, int]) -> Any:
    async def check() -> bool:
        for partition, end in ends.items():
            if await store.position(MANAGER, f"{topic}:{partition}") < end:
                return False
        return True

    return check


async def card_colors(platform: Platform, inst: str) -> list[str]:
    await platform.settle()
    doc = await views.institution(platform.read_store, inst)
    assert doc is not None
    return [c["color"] for c in doc["warnings"]]


async def test_each_card_is_issued_once_however_often_its_event_is_delivered(
    settings: Settings, read_store: SQLiteReadStore, services: Platform
) -> None:
    inst, events = await inspection_events(services)
    assert await card_colors(services, inst) == []  # the services' runner sends nothing
    topic = events_topic(settings.kafka_topic_prefix, "inspections")
    twice = [m for m in messages_of(events) for _ in range(2)] + messages_of(events)
    ends = await publish(settings.kafka_bootstrap or "", topic, twice)

    app = build_projector(
        settings, read_store=read_store, batch_within=0.2, commands=services.commands
    )
    await app.projector.prepare()
    async with running(app):
        await eventually(manager_caught_up(read_store, topic, ends), "the worker", DEADLINE)
    assert await card_colors(services, inst) == ["YELLOW", "RED"]
    issued = await services.event_stores["registry"].read_all()

    # Another consumer group reads the topic from the start: every reaction is sent again.
    again = build_projector(
        settings,
        read_store=read_store,
        batch_within=0.2,
        group_id=f"{topic}-again",
        commands=services.commands,
    )
    await read_store.reset(MANAGER, [PROCESS_REFUSALS.name])
    async with running(again):
        await eventually(manager_caught_up(read_store, topic, ends), "redelivery", DEADLINE)
    assert await services.event_stores["registry"].read_all() == issued
    assert await card_colors(services, inst) == ["YELLOW", "RED"]
    assert await read_store.dump(DEAD_LETTERS.name) == []
    assert await read_store.dump(PROCESS_REFUSALS.name) == []


async def test_a_service_that_is_down_holds_the_worker_back_and_loses_nothing(
    settings: Settings, read_store: SQLiteReadStore, services: Platform
) -> None:
    inst, events = await inspection_events(services)
    topic = events_topic(settings.kafka_topic_prefix, "inspections")
    ends = await publish(settings.kafka_bootstrap or "", topic, messages_of(events))
    failures = [3]  # the first three sends find the registry down
    attempts: list[Command] = []

    async def flaky(cmd: Command, ctx: CommandContext) -> Outcome[Any]:
        attempts.append(cmd)
        if failures[0]:
            failures[0] -= 1
            raise Unavailable("the registry service cannot be reached")
        return await services.commands.handle(cmd, ctx)

    app = build_projector(
        settings,
        read_store=read_store,
        batch_within=0.2,
        retry_delay=0.05,
        commands=Router(flaky),
    )
    await app.projector.prepare()
    async with running(app):
        await eventually(manager_caught_up(read_store, topic, ends), "the worker", DEADLINE)
    assert len(attempts) >= 5  # three refused, then the two cards
    assert await card_colors(services, inst) == ["YELLOW", "RED"]
    assert await read_store.dump(DEAD_LETTERS.name) == []
    assert await read_store.dump(PROCESS_REFUSALS.name) == []


class Router:
    def __init__(self, send: Callable[[Command, CommandContext], Awaitable[Outcome[Any]]]) -> None:
        self.send = send

    async def handle(self, cmd: Command, ctx: CommandContext) -> Outcome[Any]:
        return await self.send(cmd, ctx)


async def test_workers_send_with_an_admin_token_minted_from_the_configured_secret(
    tmp_path: Path,
) -> None:
    secret = "a-secret-the-services-share-and-that-is-long-enough"
    settings = Settings(data_dir=tmp_path, jwt_secret=SecretStr(secret), _env_file=None)  # type: ignore[call-arg]
    managers, clients = build_process_managers(settings)
    try:
        assert [type(m) for m in managers] == [WarningCards, RiskWatch]
        assert sorted(c.name for c in clients) == ["finance", "inspections", "registry"]
        manager = managers[0]
        event = envelope("k-insp", 1, type="inspections.InspectionRecorded")
        card = IssueWarningCard(id="i001", color="YELLOW", reason="r")
        ctx = manager.context(event, Reaction(card, key="yellow:i001"))
        assert ctx.idempotency_key == f"{event.id}:yellow:i001"
        principal = TokenVerifier(REGIONS, secret=secret).verify(ctx.authorization)
        assert (principal.subject, principal.role, principal.national) == (
            "process:warning_cards",  # the actor of its events embedded, too
            Role.ADMIN,
            True,
        )
    finally:
        for client in clients:
            await client.close()


def test_without_a_secret_the_workers_run_no_process_manager(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert build_process_managers(settings) == ([], [])
