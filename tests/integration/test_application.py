"""The command path: racing commands never lose an update, retries are decided again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.common.application import CommandContext
from services.common.errors import Conflict
from services.common.regions import RegionTree
from services.common.sqlite import SQLiteEventStore
from services.registry.domain.commands import ApproveInstitution, RegisterInstitution
from services.registry.domain.rules import RegistryPolicy
from services.registry.handlers import Registry
from services.registry.module import no_rectifications
from tests.factories import valid_credit_code

CTX = CommandContext(actor="test")


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = SQLiteEventStore(tmp_path / "events.db")
    await store.start()
    app = Registry(
        store, RegionTree.load(), RegistryPolicy(), rectification_overdue=no_rectifications
    )
    await app.handle(
        RegisterInstitution(
            id="i1",
            name="彭阳艺术学校",
            credit_code=valid_credit_code("640425"),
            region="640425",
            category="NON_SUBJECT",
            non_subject_kind="ARTS",
            mode="OFFLINE",
        ),
        CTX,
    )
    yield app
    await store.close()


async def test_racing_identical_commands_all_succeed_once(registry: Registry) -> None:
    """Losers of the optimistic race are decided again on fresh state, not failed."""
    approvals = [
        registry.handle(ApproveInstitution(id="i1", license_no="L-1"), CTX) for _ in range(6)
    ]
    outcomes = await asyncio.gather(*approvals)

    assert sum(len(o.events) for o in outcomes) == 1
    assert all(o.aggregate.license_no == "L-1" for o in outcomes)
    assert [e.version for e in await registry.store.read_stream("i1")] == [1, 2]


async def test_racing_different_commands_one_wins_the_rest_conflict(registry: Registry) -> None:
    approvals = [
        registry.handle(ApproveInstitution(id="i1", license_no=f"L-{n}"), CTX) for n in range(4)
    ]
    results = await asyncio.gather(*approvals, return_exceptions=True)

    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    stream = await registry.store.read_stream("i1")
    assert len(stream) == 2 and stream[1].data["license_no"] == winners[0].aggregate.license_no


async def test_event_carries_actor_and_correlation(registry: Registry) -> None:
    ctx = CommandContext(actor="district-640425", correlation_id="batch-7")
    outcome = await registry.handle(ApproveInstitution(id="i1", license_no="L-9"), ctx)
    [event] = outcome.events
    assert (event.actor, event.correlation_id, event.region) == (
        "district-640425",
        "batch-7",
        "640425",
    )
