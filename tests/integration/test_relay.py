"""Guarantee 4: no accepted event is lost between the store and the bus; order is kept."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path

from services.common.envelope import Envelope
from services.common.errors import Unavailable
from services.common.ports import Bus
from services.common.relay import OutboxRelay
from services.common.sqlite import SQLiteEventStore
from tests.factories import commit


class FlakyBus(Bus):
    """Refuses the first ``failures`` publishes, then records everything it is given."""

    def __init__(self, failures: int, expect: int = 0) -> None:
        self.failures = failures
        self.expect = expect
        self.received: list[Envelope] = []
        self.complete = asyncio.Event()

    async def publish(self, events: Sequence[Envelope]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise Unavailable("broker unreachable")
        self.received += events
        if len({e.id for e in self.received}) >= self.expect:
            self.complete.set()


async def test_outage_delays_but_loses_nothing_and_keeps_stream_order(tmp_path: Path) -> None:
    store = SQLiteEventStore(tmp_path / "events.db")
    await store.start()
    bus = FlakyBus(failures=3, expect=10)
    relay = OutboxRelay(store, bus, name="registry", poll_interval=0.01, max_backoff=0.02)
    relay.start()
    try:
        # Commands keep being accepted while the bus is down.
        for n in range(10):
            await store.append(commit(f"s{n % 3}", n // 3, 1), expected_version=n // 3)
            relay.notify()
        await asyncio.wait_for(bus.complete.wait(), 5)
    finally:
        await relay.stop()
        await store.close()

    # At least once: after an outage a batch may arrive twice, but every event arrives.
    assert len({e.id for e in bus.received}) == 10
    for stream in ("s0", "s1", "s2"):
        versions = [e.version for e in bus.received if e.stream == stream]
        assert versions == sorted(versions)


async def test_events_committed_before_a_restart_are_published_after_it(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteEventStore(path)
    await store.start()
    await store.append(commit("s", 0, 3), expected_version=0)
    dead = FlakyBus(failures=1_000)
    first = OutboxRelay(store, dead, name="registry")
    with contextlib.suppress(Unavailable):
        await first.relay_once()
    await store.close()

    reopened = SQLiteEventStore(path)
    await reopened.start()
    bus = FlakyBus(failures=0)
    await OutboxRelay(reopened, bus, name="registry").drain()
    await reopened.close()
    assert [e.version for e in bus.received] == [1, 2, 3]


async def test_stopping_right_after_a_commit_woke_the_relay_does_not_hang(tmp_path: Path) -> None:
    """A wake-up and a stop in the same loop turn: the stop must win (Python 3.11's
    ``asyncio.wait_for`` swallowed the cancellation then, and ``stop()`` waited forever)."""
    store = SQLiteEventStore(tmp_path / "events.db")
    await store.start()
    relay = OutboxRelay(store, FlakyBus(failures=0), name="registry", poll_interval=60)
    relay.start()
    for _ in range(5_000):  # until the relay task is parked, waiting for a wake-up
        if relay._wake._waiters:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.001)
    relay.notify()
    stopping = asyncio.create_task(relay.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert done, "stop() did not return: the relay swallowed its cancellation"
    await store.close()
