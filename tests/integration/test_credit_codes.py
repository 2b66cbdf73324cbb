"""A credit code identifies one organisation: one active holder, race-free (issue 10, #8).

The reservation lives in the event store (stream ``credit-code/<code>``), so these tests
run the registry over a real SQLite event store, with racing commands.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.bootstrap import Platform
from services.common.application import CommandContext
from services.common.auth import Principal, Role
from services.common.envelope import Envelope
from services.common.errors import Conflict, Forbidden, ShuangjianError
from services.common.regions import RegionTree
from services.common.sqlite import SQLiteEventStore
from services.common.timeutil import SHANGHAI
from services.registry.domain.commands import (
    ApproveInstitution,
    ExitInstitution,
    ReclassifyInstitution,
    RegisterInstitution,
    RevokeInstitution,
    SuspendInstitution,
)
from services.registry.domain.events import credit_code_stream
from services.registry.domain.model import CreditCode, registration_event
from services.registry.domain.rules import RegistryPolicy
from services.registry.handlers import Registration, Registry
from services.registry.module import no_rectifications
from tests.conftest import GraphQL
from tests.factories import registration, valid_credit_code
from tests.integration.test_registry_graphql import REGISTER

REGIONS = RegionTree.load()
POLICY = RegistryPolicy()
CTX = CommandContext(actor="test")
AT = datetime(2021, 3, 1, 9, tzinfo=SHANGHAI)
CODE = valid_credit_code("640402", "MA0000C01")


def register(ident: str, code: str = CODE, **overrides: Any) -> RegisterInstitution:
    fields: dict[str, Any] = {
        "id": ident,
        "name": f"机构 {ident}",
        "credit_code": code,
        "region": "640402",
        "category": "NON_SUBJECT",
        "non_subject_kind": "ARTS",
        "mode": "OFFLINE",
        "occurred_at": AT,
    }
    fields.update(overrides)
    return RegisterInstitution(**fields)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = SQLiteEventStore(tmp_path / "events.db")
    await store.start()
    yield Registry(store, REGIONS, POLICY, rectification_overdue=no_rectifications)
    await store.close()


async def registered_with(registry: Registry, code: str) -> list[str]:
    """The institutions whose stored registration names ``code``."""
    return [
        e.stream
        for e in await registry.store.read_all(limit=10_000)
        if e.type == "registry.InstitutionRegistered" and e.data["credit_code"] == code
    ]


async def crash_after_reserving(registry: Registry, cmd: RegisterInstitution) -> None:
    """What a registry that dies between its two commits leaves: the reservation alone."""
    assert cmd.id is not None
    code = CreditCode(credit_code_stream(cmd.credit_code))
    code.reserve(cmd.id, registration_event(cmd, REGIONS, POLICY), AT, None)
    [change] = code.collect()
    envelope = Envelope(
        id=uuid4(),
        type=change.event.TYPE,
        stream=code.id,
        version=1,
        region=change.region,
        occurred_at=change.occurred_at,
        recorded_at=datetime.now(SHANGHAI),
        actor="crashed-operator",
        data=change.event.payload(),
    )
    await registry.store.append([envelope], expected_version=0)


async def test_registrations_racing_for_one_code_exactly_one_wins(registry: Registry) -> None:
    for round_ in range(5):
        code = valid_credit_code("640402", f"MA00R{round_:04d}")
        racing = [registry.handle(register(f"r{round_}-{n}", code), CTX) for n in range(4)]
        results = await asyncio.gather(*racing, return_exceptions=True)

        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1, results
        assert all(isinstance(r, Conflict) and r.field == "credit_code" for r in losers), losers
        assert await registered_with(registry, code) == [winners[0].aggregate.id]


async def test_a_code_held_by_an_active_institution_is_refused_without_naming_it(
    registry: Registry,
) -> None:
    await registry.handle(register("holder"), CTX)
    before = await registry.store.max_position()
    with pytest.raises(Conflict, match="already held by another registered institution") as exc:
        await registry.handle(register("second"), CTX)
    assert exc.value.field == "credit_code"
    assert "holder" not in exc.value.message
    assert await registry.store.max_position() == before
    assert (await registry.load("second")).exists is False


@pytest.mark.parametrize(
    "steps",
    [
        [ApproveInstitution(id="holder", license_no="L-1")],
        [
            ApproveInstitution(id="holder", license_no="L-1"),
            SuspendInstitution(id="holder", reason="整顿"),
        ],
        [ReclassifyInstitution(id="holder", category="NON_SUBJECT", non_subject_kind="SPORTS")],
    ],
    ids=["approved", "suspended", "reclassified"],
)
async def test_an_approved_suspended_or_reclassified_holder_keeps_its_code(
    registry: Registry, steps: list[Any]
) -> None:
    await registry.handle(register("holder"), CTX)
    for step in steps:
        await registry.handle(step, CTX)
    with pytest.raises(Conflict):
        await registry.handle(register("second"), CTX)
    assert await registered_with(registry, CODE) == ["holder"]


@pytest.mark.parametrize(
    "close",
    [RevokeInstitution(id="holder", reason="取缔"), ExitInstitution(id="holder", reason="注销")],
    ids=["revoked", "exited"],
)
async def test_a_revoked_or_exited_holder_frees_its_code(registry: Registry, close: Any) -> None:
    await registry.handle(register("holder"), CTX)
    await registry.handle(close, CTX)

    again = await registry.handle(register("successor", name="重新登记的机构"), CTX)
    assert again.aggregate.registration is not None
    assert await registered_with(registry, CODE) == ["holder", "successor"]
    # The successor holds it now: a third one is refused, and the closed holder's
    # registration sent again is still the no-op it always was.
    with pytest.raises(Conflict):
        await registry.handle(register("third"), CTX)
    assert (await registry.handle(register("holder"), CTX)).events == []


async def test_a_reservation_whose_holder_registered_another_code_is_taken_over(
    registry: Registry,
) -> None:
    other = valid_credit_code("640402", "MA0000C02")
    await crash_after_reserving(registry, register("fickle"))  # claimed CODE, then crashed
    await registry.handle(register("fickle", other), CTX)  # came back with another code

    with pytest.raises(Conflict):
        await registry.handle(register("late", other), CTX)
    assert (await registry.handle(register("taker"), CTX)).aggregate.exists
    assert await registered_with(registry, CODE) == ["taker"]


async def test_a_crash_between_reservation_and_registration_heals(registry: Registry) -> None:
    """The crash leaves a reservation for an institution that has no stream.

    Whoever registers that code next finishes the claim first: the registration the
    crashed request would have written is written, as its sender's, and the new one is
    refused, since the code is held.
    """
    await crash_after_reserving(registry, register("crashed"))
    assert (await registry.load("crashed")).exists is False

    with pytest.raises(Conflict, match="already held"):
        await registry.handle(register("newcomer"), CTX)

    finished = await registry.store.read_stream("crashed")
    assert [(e.type, e.actor, e.occurred_at) for e in finished] == [
        ("registry.InstitutionRegistered", "crashed-operator", AT)
    ]
    assert (await registry.load("crashed")).registration == registration_event(
        register("crashed"), REGIONS, POLICY
    )
    assert await registered_with(registry, CODE) == ["crashed"]
    # The crashed request's retry finds its registration: a no-op, as for any re-send.
    assert (await registry.handle(register("crashed"), CTX)).aggregate.version == 1


async def test_the_crashed_request_sent_again_completes_its_own_claim(
    registry: Registry,
) -> None:
    await crash_after_reserving(registry, register("crashed"))
    outcome = await registry.handle(register("crashed"), CTX)
    assert [e.type for e in outcome.events] == ["registry.InstitutionRegistered"]
    code_stream = await registry.store.read_stream(credit_code_stream(CODE))
    assert len(code_stream) == 1  # its own reservation was reused, not written again


async def test_a_refused_registration_reserves_nothing(registry: Registry) -> None:
    viewer = CommandContext(principal=Principal("v", Role.VIEWER))
    elsewhere = CommandContext(principal=Principal.of("op", Role.OPERATOR, "340103", REGIONS))
    recent = datetime.now(SHANGHAI) - timedelta(hours=1)
    backdating = CommandContext(principal=Principal.of("op", Role.OPERATOR, "640402", REGIONS))
    for ctx, cmd in (
        (viewer, register("v1", occurred_at=recent)),
        (elsewhere, register("e1", occurred_at=recent)),
        (backdating, register("b1", occurred_at=datetime(2021, 3, 1, tzinfo=SHANGHAI))),
    ):
        with pytest.raises(Forbidden):
            await registry.handle(cmd, ctx)
    assert await registry.store.max_position() == 0
    # The code is still free for the one who may register it.
    assert (await registry.handle(register("ok", occurred_at=recent), backdating)).events


async def test_reservations_stay_out_of_the_read_models_and_the_audit_trail(
    gql: GraphQL, platform: Platform
) -> None:
    await gql.data(REGISTER, {"input": registration(id="a1")})
    body = await gql(REGISTER, {"input": registration(id="a2", name="同码机构")})
    [error] = body["errors"]
    assert error["extensions"] == {"code": "CONFLICT", "field": "input.creditCode"}
    assert "a1" not in error["message"]
    await platform.settle()

    stored = await platform.event_stores["registry"].read_all()
    assert [e.stream for e in stored] == [credit_code_stream(registration()["creditCode"]), "a1"]
    store = platform.read_store
    assert [d["id"] for d in await store.dump("institutions")] == ["a1"]
    assert {d["institution"] for d in await store.dump("institution_events")} == {"a1"}
    assert await store.dump("dead_letters") == []
    listed = await gql.data("{ institutions(first: 10) { totalCount } }")
    assert listed["institutions"]["totalCount"] == 1


# --- property: whatever happens, at most one active holder per code, and no code stuck ----

CODES = [valid_credit_code("640402", f"MA00P{n:04d}") for n in range(3)]
step = st.one_of(
    st.tuples(st.just("register"), st.integers(0, 5), st.integers(0, 2)),
    st.tuples(st.sampled_from(["revoke", "exit", "approve"]), st.integers(0, 5)),
    st.tuples(st.just("crash"), st.integers(0, 5), st.integers(0, 2)),
)
# Each batch runs concurrently (asyncio.gather), the batches one after another.
batches = st.lists(st.lists(step, min_size=1, max_size=4), min_size=1, max_size=6)


async def holders(registry: Registry, code: str) -> list[str]:
    """The registered institutions that keep ``code`` from anyone else."""
    return [
        i for i in await registered_with(registry, code) if (await registry.load(i)).holds(code)
    ]


async def run_batches(plan: list[list[tuple[Any, ...]]], root: Path) -> None:
    store = SQLiteEventStore(root / "events.db")
    await store.start()
    registry = Registry(store, REGIONS, POLICY, rectification_overdue=no_rectifications)

    async def perform(op: tuple[Any, ...]) -> None:
        ident = f"p{op[1]}"
        match op:
            case ("register", _, code):
                await registry.handle(register(ident, CODES[code]), CTX)
            case ("crash", _, code):  # the first of the two commits only
                event = registration_event(register(ident, CODES[code]), REGIONS, POLICY)
                await registry._reserve(ident, Registration(event, AT), CTX)
            case ("revoke", _):
                await registry.handle(RevokeInstitution(id=ident, reason="取缔"), CTX)
            case ("exit", _):
                await registry.handle(ExitInstitution(id=ident, reason="注销"), CTX)
            case ("approve", _):
                await registry.handle(ApproveInstitution(id=ident, license_no="L"), CTX)

    try:
        for batch in plan:
            results = await asyncio.gather(*map(perform, batch), return_exceptions=True)
            for result in results:  # refusals are fine; anything else is a bug
                assert result is None or isinstance(result, ShuangjianError), result
        for n, code in enumerate(CODES):
            assert len(await holders(registry, code)) <= 1
            # No code is stuck: a newcomer gets it, or is refused because it is held
            # (a crash's claim being finished first).
            try:
                await registry.handle(register(f"new{n}", code), CTX)
            except Conflict:
                assert len(await holders(registry, code)) == 1
            else:
                assert await holders(registry, code) == [f"new{n}"]
    finally:
        await store.close()


@settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(batches)
def test_a_code_never_has_two_active_holders(plan: list[list[tuple[Any, ...]]]) -> None:
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(run_batches(plan, Path(root)))
