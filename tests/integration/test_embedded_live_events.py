"""Live events in the embedded platform: a subscriber that falls behind is told so.

The in-process bus drops a slow live subscriber with ``UNAVAILABLE``, as the Kafka tail
does, instead of losing events silently; the projection runner, which reads the event
stores, keeps its lossy wake-up queue and misses nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.bootstrap import Platform
from services.common.application import CommandContext
from services.common.auth import Principal, Role
from services.common.errors import Unavailable
from services.common.memory import InProcessBus
from services.gateway.context import GatewayContext
from services.gateway.schema import build_schema
from tests.factories import envelope
from tests.security.test_subscriptions import SUBSCRIBE, register

CAPACITY = 3
BOUND = 10.0  # generous: nothing here waits on time, only on conditions


async def test_a_live_subscriber_that_falls_behind_ends_with_unavailable(
    platform: Platform,
) -> None:
    platform.bus.live_capacity = CAPACITY
    viewer = Principal.of("city-viewer", Role.VIEWER, "640400", platform.regions)
    stream = await build_schema().subscribe(
        SUBSCRIBE, variable_values={"r": "640400"}, context_value=GatewayContext(platform, viewer)
    )
    assert isinstance(stream, AsyncIterator)

    async with asyncio.timeout(BOUND):
        # The subscription joins the bus on its first read: register until it reports.
        receiving = asyncio.ensure_future(anext(stream))
        n = 0
        while not receiving.done():
            n += 1
            await platform.execute(register(n, "640402"), CommandContext())
            await platform.settle()
            await asyncio.wait([receiving], timeout=0.05)
        assert not receiving.result().errors

        # Now it does not read while more than CAPACITY events are published.
        for _ in range(CAPACITY + 2):
            n += 1
            await platform.execute(register(n, "640402"), CommandContext())
        await platform.settle()

        results = [result async for result in stream]  # ends instead of waiting forever
    assert results, "the subscription ended without a word"
    last = results[-1]
    assert last.errors and last.errors[0].extensions["code"] == "UNAVAILABLE"
    assert "fell behind" in last.errors[0].message
    assert all(not result.errors for result in results[:-1])
    assert platform.bus.subscribers == 0

    # The read models missed nothing: the runner catches up from the event store.
    institutions = await platform.read_store.dump("institutions")
    assert len(institutions) == n


async def test_a_subscriber_that_keeps_up_gets_every_event_and_ends_with_the_bus() -> None:
    bus = InProcessBus(live_capacity=2)
    subscription = bus.follow()
    received: list[Any] = []
    for version in range(1, 7):
        await bus.publish([envelope("s", version)])
        received.append(await anext(subscription))
    assert [e.version for e in received] == [1, 2, 3, 4, 5, 6]
    await bus.close()
    assert [e async for e in subscription] == []


async def test_the_runners_wake_up_queue_drops_on_purpose_and_live_subscribers_are_told() -> None:
    bus = InProcessBus(capacity=1, live_capacity=1)
    wake_up = bus.subscribe()
    live = bus.follow()
    await bus.publish([envelope("s", 1), envelope("s", 2)])
    assert wake_up.qsize() == 1  # a hint to read the store, no more
    with pytest.raises(Unavailable, match="fell behind"):
        await anext(live)
    with pytest.raises(Unavailable):
        await anext(live)  # and it stays ended
    assert bus.subscribers == 0
