"""Process managers in the embedded platform: inspection facts become warning cards.

``services/processes/warnings.py`` follows the inspections events and sends the registry
``IssueWarningCard``. These tests drive the real services and read the registry's read
model and event store: a card appears once, caused by the inspection event, and never
again however the events are replayed; a refusal is recorded and the stream goes on; a
transient failure holds the process manager back without losing the reaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from services.bootstrap import Platform, build_platform, service_settings
from services.common.application import CommandContext, Outcome
from services.common.commands import Command
from services.common.config import Settings
from services.common.envelope import Envelope
from services.common.errors import ConcurrencyConflict, Unavailable
from services.common.process import PROCESS_REFUSALS, ProcessManager, RetryLater
from services.common.timeutil import utc_now
from services.inspections.module import (
    FindingInput,
    FindingType,
    InspectionRecorded,
    InspectionsSettings,
    RecordInspection,
    SubmitRectification,
    VerifyRectification,
    VisitInput,
)
from services.processes import WarningCards
from services.registry import views
from services.registry.module import (
    ApproveInstitution,
    IssueWarningCard,
    RevokeInstitution,
)
from tests.factories import numbered_registration

CTX = CommandContext(actor="tester")
CARD_ISSUED = "registry.WarningCardIssued"


# --- helpers ----------------------------------------------------------------------------


async def institution(platform: Platform, n: int, *, approve: bool = True) -> tuple[str, str]:
    """An ARTS institution registered in 2021 (approved unless told), and its district."""
    registration = numbered_registration(n)
    assert registration.id is not None
    await platform.execute(registration, CTX)
    if approve:
        await platform.execute(ApproveInstitution(id=registration.id, license_no=f"L{n}"), CTX)
    await platform.settle()
    return registration.id, registration.region


def visit(
    institution_id: str | None = None, *findings: str, venue: str | None = None
) -> VisitInput:
    return VisitInput(
        institution_id=institution_id,
        venue=venue,
        findings=[FindingInput(type=t, description=f"发现 {t}") for t in findings],
    )


async def inspect(
    platform: Platform,
    id: str,
    region: str,
    visits: Sequence[VisitInput],
    *,
    rectify_within_days: int | None = None,
    settle: bool = True,
) -> Envelope:
    """Record a batch that started a minute ago; the event it stored."""
    outcome = await platform.execute(
        RecordInspection(
            id=id,
            region=region,
            kind="DAILY",
            started_at=platform.clock() - timedelta(minutes=1),
            personnel=3,
            visits=list(visits),
            rectify_within_days=rectify_within_days,
        ),
        CTX,
    )
    if settle:
        await platform.settle()
    [event] = outcome.events
    assert event.type == InspectionRecorded.TYPE
    return event


async def fail_verification(platform: Platform, order: str, times: int = 1) -> list[Envelope]:
    """Submit the order and fail its verification, ``times`` times over."""
    verified = []
    for n in range(times):
        await platform.execute(SubmitRectification(id=order, note=f"已整改 {n}"), CTX)
        outcome = await platform.execute(VerifyRectification(id=order, passed=False), CTX)
        verified += outcome.events
        await platform.settle()
    return verified


async def cards(platform: Platform, institution_id: str, color: str | None = None) -> list[Any]:
    doc = await views.institution(platform.read_store, institution_id)
    assert doc is not None
    return [c for c in doc["warnings"] if color is None or c["color"] == color]


async def card_events(platform: Platform, institution_id: str) -> list[Envelope]:
    stream = await platform.event_stores["registry"].read_stream(institution_id)
    return [e for e in stream if e.type == CARD_ISSUED]


def warning_cards(platform: Platform) -> ProcessManager:
    [manager] = [p for p in platform.processes if isinstance(p, WarningCards)]
    return manager


@pytest.fixture
async def tuned(tmp_path: Path) -> AsyncIterator[Platform]:
    """A platform whose inspections settings change both rules: FIRE_SAFETY gets a YELLOW
    card, and no number of failed verifications a RED one."""
    settings = Settings(data_dir=tmp_path / "tuned", _env_file=None)  # type: ignore[call-arg]
    own = service_settings()
    own["inspections"] = InspectionsSettings(  # type: ignore[call-arg]
        _env_file=None,
        inspections_yellow_card_findings=[FindingType.FIRE_SAFETY],
        inspections_red_card_after_failed_verifications=0,
    )
    running = build_platform(settings, own=own)
    await running.start()
    yield running
    await running.stop()


# --- YELLOW -----------------------------------------------------------------------------


async def test_a_yellow_finding_gets_the_institution_one_yellow_card_caused_by_it(
    platform: Platform,
) -> None:
    inst, district = await institution(platform, 1)
    event = await inspect(
        platform,
        "insp-1",
        district,
        [visit(inst, "UNLICENSED_OPERATION", "HIDDEN_TRAINING", "FIRE_SAFETY")],
    )

    [card] = await cards(platform, inst)
    assert card["color"] == "YELLOW"
    assert "insp-1" in card["reason"]
    assert "HIDDEN_TRAINING, UNLICENSED_OPERATION" in card["reason"]
    assert "FIRE_SAFETY" not in card["reason"]
    [issued] = await card_events(platform, inst)
    assert issued.causation_id == str(event.id)
    assert issued.correlation_id == event.correlation_id
    assert issued.actor == "process:warning_cards"
    assert issued.occurred_at == event.occurred_at  # dated when the batch went out


async def test_venue_visits_and_other_findings_get_no_card(platform: Platform) -> None:
    inst, district = await institution(platform, 1)
    other, _ = await institution(platform, 5)  # same district, visited without findings
    await inspect(
        platform,
        "insp-2",
        district,
        [
            visit(None, "UNLICENSED_OPERATION", venue="原州区某小区 3 栋 502"),
            visit(inst, "FIRE_SAFETY", "STAFF_QUALIFICATION"),
            visit(other),
        ],
    )

    assert await cards(platform, inst) == []
    assert await cards(platform, other) == []
    issued = [
        e for e in await platform.event_stores["registry"].read_all() if e.type == CARD_ISSUED
    ]
    assert issued == []
    assert await platform.read_store.dump(PROCESS_REFUSALS.name) == []


# --- RED --------------------------------------------------------------------------------


async def test_the_second_failed_verification_gets_exactly_one_red_card(
    platform: Platform,
) -> None:
    inst, district = await institution(platform, 1)
    await inspect(platform, "insp-3", district, [visit(inst, "FIRE_SAFETY")])
    order = "insp-3~1"

    [first] = await fail_verification(platform, order)
    assert first.data["failures"] == 1
    assert await cards(platform, inst) == []  # one failure is not enough (default 2)

    [second] = await fail_verification(platform, order)
    [red] = await cards(platform, inst, "RED")
    assert order in red["reason"]
    [issued] = await card_events(platform, inst)
    assert issued.causation_id == str(second.id)

    await fail_verification(platform, order)  # the third failure: no second card
    assert len(await cards(platform, inst, "RED")) == 1
    assert await cards(platform, inst) == [red]


async def test_rebuilding_the_process_manager_issues_no_card_again(platform: Platform) -> None:
    inst, district = await institution(platform, 1)
    await inspect(platform, "insp-4", district, [visit(inst, "UNLICENSED_OPERATION")])
    await fail_verification(platform, "insp-4~1", times=2)
    before = await platform.event_stores["registry"].read_all()
    assert [c["color"] for c in await cards(platform, inst)] == ["YELLOW", "RED"]

    sent: list[tuple[Command, CommandContext]] = []
    manager = warning_cards(platform)
    manager.send = recording(platform.commands.handle, sent)
    await platform.runner.rebuild(manager)
    await platform.settle()

    # Every reaction was sent again, with the same idempotency keys, and changed nothing.
    assert sent
    yellow, red = await card_events(platform, inst)
    assert {ctx.idempotency_key for _, ctx in sent} == {
        f"{yellow.causation_id}:yellow:{inst}",
        f"{red.causation_id}:red:insp-4~1",
    }
    assert await platform.event_stores["registry"].read_all() == before
    assert [c["color"] for c in await cards(platform, inst)] == ["YELLOW", "RED"]


# --- refusals and failures --------------------------------------------------------------


async def test_a_card_the_registry_refuses_is_recorded_and_later_events_still_react(
    platform: Platform,
) -> None:
    revoked, district = await institution(platform, 1)
    await platform.execute(RevokeInstitution(id=revoked, reason="吊销"), CTX)
    await platform.settle()
    refused = await inspect(platform, "insp-5", district, [visit(revoked, "HIDDEN_TRAINING")])
    active, _ = await institution(platform, 5)
    await inspect(platform, "insp-6", district, [visit(active, "HIDDEN_TRAINING")])

    assert await cards(platform, revoked) == []
    doc = await platform.read_store.get(
        PROCESS_REFUSALS.name, f"process.warning_cards:{refused.id}:yellow:{revoked}"
    )
    assert doc is not None
    assert doc["code"] == "CONFLICT"
    assert doc["command"] == "IssueWarningCard"
    assert doc["event_id"] == str(refused.id)
    assert doc["event_type"] == InspectionRecorded.TYPE
    assert "REVOKED" in doc["reason"]
    assert [c["color"] for c in await cards(platform, active)] == ["YELLOW"]
    assert len(await platform.read_store.dump(PROCESS_REFUSALS.name)) == 1


@pytest.mark.parametrize("failure", [Unavailable, ConcurrencyConflict, ConnectionError])
async def test_a_transient_failure_holds_the_reaction_back_until_it_can_be_sent(
    platform: Platform, failure: type[Exception]
) -> None:
    inst, district = await institution(platform, 1)
    manager = warning_cards(platform)
    down = [True]
    manager.send = flaky(platform.commands.handle, down, failure("registry is down"))

    event = await inspect(
        platform, "insp-7", district, [visit(inst, "HIDDEN_TRAINING")], settle=False
    )
    with pytest.raises(RetryLater):
        await platform.settle()

    # Nothing parked, the process manager's position is before the event, and the read
    # models (which commands wait for) went on without it.
    assert await cards(platform, inst) == []
    assert platform.runner.position(manager.name, "inspections") < (event.position or 0)
    assert await platform.applied([event], timeout=1)
    assert await platform.read_store.dump("dead_letters") == []
    assert await platform.read_store.dump(PROCESS_REFUSALS.name) == []

    down[0] = False
    await platform.settle()
    assert [c["color"] for c in await cards(platform, inst)] == ["YELLOW"]
    assert platform.runner.position(manager.name, "inspections") >= (event.position or 0)


async def test_a_process_manager_that_cannot_send_at_start_does_not_stop_the_platform(
    settings: Settings,
) -> None:
    first = build_platform(settings)
    await first.start()
    try:
        inst, district = await institution(first, 1)
        warning_cards(first).send = flaky(first.commands.handle, [True], Unavailable("down"))
        await inspect(first, "insp-8", district, [visit(inst, "HIDDEN_TRAINING")], settle=False)
        with pytest.raises(RetryLater):
            await first.settle()
    finally:
        await first.stop()

    down = [True]
    second = build_platform(settings)
    warning_cards(second).send = flaky(second.commands.handle, down, Unavailable("down"))
    await second.start()  # catches up, and the process manager cannot send: no crash
    try:
        assert await cards(second, inst) == []
        down[0] = False
        await second.settle()
        assert [c["color"] for c in await cards(second, inst)] == ["YELLOW"]
    finally:
        await second.stop()


# --- configuration ----------------------------------------------------------------------


async def test_the_rules_follow_the_inspections_settings(tuned: Platform) -> None:
    inst, district = await institution(tuned, 1)
    await inspect(tuned, "insp-9", district, [visit(inst, "FIRE_SAFETY")])
    await fail_verification(tuned, "insp-9~1", times=3)

    [card] = await cards(tuned, inst)
    assert card["color"] == "YELLOW"
    assert "FIRE_SAFETY" in card["reason"]
    assert await cards(tuned, inst, "RED") == []


# --- the registry's own rule: RED while overdue -----------------------------------------


@pytest.mark.parametrize("closed", [False, True])
async def test_a_red_card_while_a_rectification_is_overdue_recommends_suspension(
    settings: Settings, closed: bool
) -> None:
    now = [utc_now()]
    platform = build_platform(settings, clock=lambda: now[0])
    await platform.start()
    try:
        inst, district = await institution(platform, 1)
        await inspect(
            platform, "insp-10", district, [visit(inst, "FIRE_SAFETY")], rectify_within_days=1
        )
        if closed:
            await platform.execute(SubmitRectification(id="insp-10~1", note="已整改"), CTX)
            await platform.execute(VerifyRectification(id="insp-10~1", passed=True), CTX)
            await platform.settle()
        now[0] += timedelta(days=3)
        await platform.execute(IssueWarningCard(id=inst, color="RED", reason="拒不整改"), CTX)
        await platform.settle()

        doc = await views.institution(platform.read_store, inst)
        assert doc is not None
        assert [c["color"] for c in doc["warnings"]] == ["RED"]
        recommended = doc["suspension_recommended"]
        if closed:
            assert recommended is None
        else:
            assert recommended is not None
            assert "rectification is overdue" in recommended["reason"]
    finally:
        await platform.stop()


async def test_a_replayed_card_is_not_refused_when_the_registry_would_now_decide_more(
    settings: Settings,
) -> None:
    """The RED card was issued while nothing was overdue. Replayed once the order is
    overdue, the registry would decide more (a suspension recommendation) and says the
    key was used for another request: the reaction took effect before, so that is done."""
    now = [utc_now()]
    platform = build_platform(settings, clock=lambda: now[0])
    await platform.start()
    try:
        inst, district = await institution(platform, 1)
        await inspect(
            platform, "insp-11", district, [visit(inst, "FIRE_SAFETY")], rectify_within_days=1
        )
        await fail_verification(platform, "insp-11~1", times=2)
        before = await platform.event_stores["registry"].read_all()
        now[0] += timedelta(days=3)

        await platform.runner.rebuild(warning_cards(platform))
        await platform.settle()

        assert await platform.event_stores["registry"].read_all() == before
        assert await platform.read_store.dump(PROCESS_REFUSALS.name) == []
        doc = await views.institution(platform.read_store, inst)
        assert doc is not None
        assert [c["color"] for c in doc["warnings"]] == ["RED"]
        assert doc["suspension_recommended"] is None
    finally:
        await platform.stop()


# --- fakes ------------------------------------------------------------------------------

Send = Callable[[Command, CommandContext], Awaitable[Outcome[Any]]]


def recording(send: Send, into: list[tuple[Command, CommandContext]]) -> Send:
    async def recorded(cmd: Command, ctx: CommandContext) -> Outcome[Any]:
        into.append((cmd, ctx))
        return await send(cmd, ctx)

    return recorded


def flaky(send: Send, down: list[bool], error: Exception) -> Send:
    """Raises ``error`` while ``down[0]`` is true; sends otherwise."""

    async def maybe(cmd: Command, ctx: CommandContext) -> Outcome[Any]:
        if down[0]:
            raise error
        return await send(cmd, ctx)

    return maybe


# --- the live loops: read models do not wait for process managers ------------------------


async def test_read_models_go_on_while_a_process_manager_waits_for_its_command(
    platform: Platform,
) -> None:
    """A process manager waits for each command it sends; a command's read-your-writes
    must not wait behind it (the runner runs them in loops of their own)."""
    inst, district = await institution(platform, 1)
    pending, _ = await institution(platform, 2, approve=False)
    manager = warning_cards(platform)
    entered, release = asyncio.Event(), asyncio.Event()
    send = manager.send
    assert send is not None

    async def stuck(cmd: Command, ctx: CommandContext) -> Outcome[Any]:
        entered.set()
        await release.wait()
        return await send(cmd, ctx)

    manager.send = stuck
    event = await inspect(
        platform, "insp-live", district, [visit(inst, "HIDDEN_TRAINING")], settle=False
    )
    try:
        async with asyncio.timeout(10):  # a bound on a hang, not a measurement
            await entered.wait()  # the process manager is inside its command now
        approved = await platform.execute(ApproveInstitution(id=pending, license_no="L2"), CTX)
        assert await platform.reflects(approved, timeout=10)
        assert (await views.institution(platform.read_store, pending) or {})["status"] == (
            "APPROVED"
        )
        assert await platform.applied([event], timeout=10)
        assert await cards(platform, inst) == []  # the card is still on its way
    finally:
        release.set()
    await platform.settle()
    assert [c["color"] for c in await cards(platform, inst)] == ["YELLOW"]
