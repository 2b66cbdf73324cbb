"""EventStore contract: every adapter must pass all of it (cf. eventsourcing's recorder tests)."""

from __future__ import annotations

import asyncio

import pytest

from services.common.errors import ConcurrencyConflict, Conflict
from services.common.ports import EventStore
from tests.factories import commit, envelope


async def test_append_then_read_stream_returns_the_same_events(event_store: EventStore) -> None:
    events = commit("inst-1", 0, 3)
    stored = await event_store.append(events, expected_version=0)

    read = await event_store.read_stream("inst-1")
    assert [e.id for e in read] == [e.id for e in events]
    assert [e.version for e in read] == [1, 2, 3]
    assert read[0].data == events[0].data
    assert read[0].occurred_at == events[0].occurred_at
    assert [e.position for e in read] == [e.position for e in stored]
    assert all(p is not None and p > 0 for p in (e.position for e in stored))


async def test_read_stream_slices_by_version(event_store: EventStore) -> None:
    await event_store.append(commit("inst-1", 0, 5), expected_version=0)
    assert [e.version for e in await event_store.read_stream("inst-1", after_version=2)] == [
        3,
        4,
        5,
    ]
    assert [e.version for e in await event_store.read_stream("inst-1", to_version=2)] == [1, 2]
    assert await event_store.read_stream("nobody") == []


async def test_commit_is_all_or_nothing(event_store: EventStore) -> None:
    """Guarantee 1: when one event of a commit cannot be stored, none of it is."""
    taken = commit("inst-1", 0, 1)
    await event_store.append(taken, expected_version=0)
    before = await event_store.max_position()

    clash = [envelope("inst-2", 1), envelope("inst-2", 2, id=taken[0].id)]
    with pytest.raises(Conflict):
        await event_store.append(clash, expected_version=0)

    assert await event_store.read_stream("inst-2") == []
    assert await event_store.max_position() == before


async def test_stale_expected_version_is_a_conflict_not_an_overwrite(
    event_store: EventStore,
) -> None:
    """Guarantee 2: versions are gapless and a stale writer is refused."""
    await event_store.append(commit("inst-1", 0, 2), expected_version=0)

    with pytest.raises(ConcurrencyConflict):
        await event_store.append(commit("inst-1", 1, 1), expected_version=1)
    with pytest.raises(ConcurrencyConflict):
        await event_store.append(commit("inst-1", 0, 1), expected_version=0)

    assert [e.version for e in await event_store.read_stream("inst-1")] == [1, 2]


async def test_expected_version_beyond_the_stream_is_refused(event_store: EventStore) -> None:
    await event_store.append(commit("inst-1", 0, 1), expected_version=0)
    with pytest.raises(ConcurrencyConflict):
        await event_store.append(commit("inst-1", 3, 1), expected_version=3)
    assert [e.version for e in await event_store.read_stream("inst-1")] == [1]


async def test_a_commit_with_a_version_gap_is_rejected_before_writing(
    event_store: EventStore,
) -> None:
    gappy = [envelope("inst-1", 1), envelope("inst-1", 3)]
    with pytest.raises(ValueError, match="gapless"):
        await event_store.append(gappy, expected_version=0)
    assert await event_store.read_stream("inst-1") == []


async def test_racing_writers_on_one_stream_exactly_one_wins(event_store: EventStore) -> None:
    await event_store.append(commit("inst-1", 0, 1), expected_version=0)
    attempts = [event_store.append(commit("inst-1", 1, 2), expected_version=1) for _ in range(8)]
    results = await asyncio.gather(*attempts, return_exceptions=True)

    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, ConcurrencyConflict) for r in results if isinstance(r, BaseException))
    assert [e.version for e in await event_store.read_stream("inst-1")] == [1, 2, 3]


async def test_retrying_a_commit_with_the_same_event_ids_changes_nothing(
    event_store: EventStore,
) -> None:
    """Guarantee 3: idempotent on event id."""
    events = commit("inst-1", 0, 2)
    first = await event_store.append(events, expected_version=0)
    again = await event_store.append(events, expected_version=0)

    assert [e.position for e in again] == [e.position for e in first]
    assert len(await event_store.read_all()) == 2


async def test_reusing_an_event_id_for_a_different_commit_is_a_conflict(
    event_store: EventStore,
) -> None:
    events = commit("inst-1", 0, 1)
    await event_store.append(events, expected_version=0)
    with pytest.raises(Conflict):
        await event_store.append([envelope("inst-9", 1, id=events[0].id)], expected_version=0)
    assert await event_store.read_stream("inst-9") == []


async def test_read_all_pages_through_every_stream_in_position_order(
    event_store: EventStore,
) -> None:
    for n in range(5):
        await event_store.append(commit(f"inst-{n}", 0, 2), expected_version=0)

    everything = await event_store.read_all()
    positions = [e.position or 0 for e in everything]
    assert len(everything) == 10
    assert positions == sorted(positions) and len(set(positions)) == 10

    page = await event_store.read_all(after_position=positions[3], limit=4)
    assert [e.position for e in page] == positions[4:8]
    assert await event_store.max_position() == positions[-1]


async def test_positions_of_concurrent_commits_never_interleave(event_store: EventStore) -> None:
    async def writer(n: int) -> None:
        for round_ in range(5):
            await event_store.append(commit(f"w{n}", round_ * 3, 3), expected_version=round_ * 3)

    await asyncio.gather(*(writer(n) for n in range(6)))

    everything = await event_store.read_all(limit=10_000)
    assert len(everything) == 6 * 5 * 3
    # Each commit's three events sit next to each other in the global order.
    for i in range(0, len(everything), 3):
        chunk = everything[i : i + 3]
        assert len({e.stream for e in chunk}) == 1
        assert [e.version for e in chunk] == [chunk[0].version + k for k in range(3)]


async def test_get_event_by_id(event_store: EventStore) -> None:
    events = commit("inst-1", 0, 2)
    await event_store.append(events, expected_version=0)
    found = await event_store.get_event(events[1].id)
    assert found is not None and found.version == 2
    assert await event_store.get_event(envelope("x", 1).id) is None


async def test_outbox_hands_out_each_event_until_marked_published(
    event_store: EventStore,
) -> None:
    """Guarantee 4's first half: nothing stored is forgotten by the outbox."""
    for n in range(3):
        await event_store.append(commit(f"inst-{n}", 0, 2), expected_version=0)

    pending = await event_store.unpublished()
    assert len(pending) == 6
    assert [e.position for e in pending] == sorted(e.position or 0 for e in pending)

    await event_store.mark_published(pending[:4])
    rest = await event_store.unpublished()
    assert [e.id for e in rest] == [e.id for e in pending[4:]]

    await event_store.append(commit("inst-9", 0, 1), expected_version=0)
    assert [e.stream for e in await event_store.unpublished()] == ["inst-2", "inst-2", "inst-9"]
    await event_store.mark_published(await event_store.unpublished())
    assert await event_store.unpublished() == []


async def test_outbox_respects_the_limit_and_keeps_stream_order(event_store: EventStore) -> None:
    await event_store.append(commit("inst-1", 0, 5), expected_version=0)
    first = await event_store.unpublished(limit=2)
    assert [e.version for e in first] == [1, 2]
    await event_store.mark_published(first)
    assert [e.version for e in await event_store.unpublished(limit=10)] == [3, 4, 5]


async def test_racing_retries_of_one_commit_all_get_the_stored_events(
    event_store: EventStore,
) -> None:
    events = commit("inst-1", 0, 2)
    results = await asyncio.gather(
        *(event_store.append(events, expected_version=0) for _ in range(6))
    )
    assert all([e.position for e in r] == [e.position for e in results[0]] for r in results)
    assert len(await event_store.read_all()) == 2


async def test_a_refused_commit_leaves_later_commits_whole_and_in_order(
    event_store: EventStore,
) -> None:
    taken = commit("inst-1", 0, 2)
    await event_store.append(taken, expected_version=0)
    with pytest.raises(Conflict):
        await event_store.append(
            [envelope("inst-2", 1), envelope("inst-2", 2, id=taken[1].id)], expected_version=0
        )
    with pytest.raises(ConcurrencyConflict):
        await event_store.append(commit("inst-1", 0, 1), expected_version=0)
    before = await event_store.max_position()
    later = await event_store.append(commit("inst-3", 0, 3), expected_version=0)

    positions = [e.position or 0 for e in later]
    assert positions == list(range(positions[0], positions[0] + 3)) and positions[0] > before
    assert [e.id for e in await event_store.read_all(after_position=before)] == [
        e.id for e in later
    ]
    assert [e.stream for e in await event_store.read_all()] == ["inst-1"] * 2 + ["inst-3"] * 3
    assert [e.stream for e in await event_store.unpublished()] == ["inst-1"] * 2 + ["inst-3"] * 3


async def test_outbox_resumes_inside_a_commit_cut_by_the_limit(event_store: EventStore) -> None:
    await event_store.append(commit("inst-1", 0, 3), expected_version=0)
    await event_store.append(commit("inst-2", 0, 2), expected_version=0)
    seen = []
    while batch := await event_store.unpublished(limit=2):
        assert len(batch) <= 2
        seen += [(e.stream, e.version) for e in batch]
        await event_store.mark_published(batch)
    assert seen == [("inst-1", 1), ("inst-1", 2), ("inst-1", 3), ("inst-2", 1), ("inst-2", 2)]
