"""EventStore contract, ``decide_and_append``: read a stream, decide, append, as one step.

The command path goes through it (``Application.execute``). SQLite does the three in one
transaction in its writer thread; other adapters read, then append with the version they
read, so a writer in between still makes a ``ConcurrencyConflict``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from services.common.envelope import Envelope
from services.common.errors import BadInput, Conflict
from services.common.ports import EventStore
from tests.factories import commit, envelope

Decide = Callable[[list[Envelope]], Sequence[Envelope]]


def following(stream: str, count: int = 1) -> Decide:
    """A decision: ``count`` events after whatever the stream holds."""

    def decide(stored: list[Envelope]) -> Sequence[Envelope]:
        last = stored[-1].version if stored else 0
        return [envelope(stream, last + n) for n in range(1, count + 1)]

    return decide


async def test_it_decides_on_what_the_stream_holds_and_appends_after_it(
    event_store: EventStore,
) -> None:
    await event_store.append(commit("inst-1", 0, 2), expected_version=0)
    seen: list[list[int]] = []

    def decide(stored: list[Envelope]) -> Sequence[Envelope]:
        seen.append([e.version for e in stored])
        return [envelope("inst-1", 3), envelope("inst-1", 4)]

    stored = await event_store.decide_and_append("inst-1", decide)

    assert seen == [[1, 2]]
    assert [e.version for e in stored] == [3, 4]
    assert all(e.position for e in stored)
    assert [e.id for e in await event_store.read_stream("inst-1")][2:] == [e.id for e in stored]


async def test_a_new_stream_starts_at_version_one(event_store: EventStore) -> None:
    stored = await event_store.decide_and_append("inst-new", following("inst-new", 2))
    assert [e.version for e in stored] == [1, 2]


async def test_deciding_nothing_appends_nothing(event_store: EventStore) -> None:
    await event_store.append(commit("inst-1", 0, 1), expected_version=0)
    before = await event_store.max_position()

    assert await event_store.decide_and_append("inst-1", lambda stored: []) == []
    assert await event_store.max_position() == before


async def test_a_decision_that_raises_writes_nothing_and_reaches_the_caller(
    event_store: EventStore,
) -> None:
    await event_store.append(commit("inst-1", 0, 1), expected_version=0)
    before = await event_store.max_position()

    def refuse(stored: list[Envelope]) -> Sequence[Envelope]:
        raise BadInput("no", field="reason")

    with pytest.raises(BadInput):
        await event_store.decide_and_append("inst-1", refuse)
    assert await event_store.max_position() == before
    # The store still takes the next write.
    assert len(await event_store.decide_and_append("inst-1", following("inst-1"))) == 1


async def test_events_that_do_not_follow_the_stream_are_refused(event_store: EventStore) -> None:
    await event_store.append(commit("inst-1", 0, 2), expected_version=0)
    with pytest.raises(ValueError, match=r"expected 3|gapless"):
        await event_store.decide_and_append("inst-1", lambda stored: [envelope("inst-1", 5)])
    assert [e.version for e in await event_store.read_stream("inst-1")] == [1, 2]


async def test_an_event_id_stored_elsewhere_is_a_conflict_and_writes_nothing(
    event_store: EventStore,
) -> None:
    taken = commit("inst-1", 0, 1)
    await event_store.append(taken, expected_version=0)

    with pytest.raises(Conflict):
        await event_store.decide_and_append(
            "inst-2", lambda stored: [envelope("inst-2", 1, id=taken[0].id)]
        )
    assert await event_store.read_stream("inst-2") == []


async def test_concurrent_decisions_on_one_stream_never_overwrite_each_other(
    event_store: EventStore,
) -> None:
    """Each one either lands after all that came before it or is refused as a conflict."""
    results = await asyncio.gather(
        *(event_store.decide_and_append("hot", following("hot")) for _ in range(20)),
        return_exceptions=True,
    )
    landed = [r for r in results if not isinstance(r, BaseException)]
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    versions = [e.version for e in await event_store.read_stream("hot")]
    assert versions == list(range(1, len(landed) + 1))
    assert landed  # at least the first one
