"""MongoDB positions are taken before the insert: readers must not skip a late commit."""

from __future__ import annotations

from services.common.mongo import MongoEventStore
from tests.factories import commit
from tests.fakes.async_mongo import AsyncFakeClient


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_read_all_waits_at_a_gap_until_it_is_settled() -> None:
    clock = Clock()
    store = MongoEventStore(AsyncFakeClient()["t"], "registry", gap_grace=5.0, clock=clock)
    await store.start()
    await store.append(commit("a", 0, 1), expected_version=0)  # position 1
    # Another writer took positions 2-3 and has not inserted its commit yet.
    await store.counters.find_one_and_update({"_id": "positions"}, {"$inc": {"value": 2}})
    await store.append(commit("b", 0, 2), expected_version=0)  # positions 4-5

    assert [e.position for e in await store.read_all()] == [1]
    assert await store.read_all(after_position=1) == []

    clock.now += 6  # the writer never came back: its positions stay empty for good
    assert [e.position for e in await store.read_all(after_position=1)] == [4, 5]
    assert [e.position for e in await store.read_all()] == [1, 4, 5]
