"""In-process adapters for the embedded one-process suite."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from services.common.envelope import Envelope
from services.common.ports import Bus

log = structlog.get_logger(__name__)


class InProcessBus(Bus):
    """Fans published events out to subscriber queues in this process.

    A queue that is full drops events rather than blocking the relay: subscribers see
    the gap in positions and catch up from the event store, which is the durable copy.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._queues: list[asyncio.Queue[Envelope]] = []

    def subscribe(self) -> asyncio.Queue[Envelope]:
        queue: asyncio.Queue[Envelope] = asyncio.Queue(self._capacity)
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Envelope]) -> None:
        if queue in self._queues:
            self._queues.remove(queue)

    async def publish(self, events: Sequence[Envelope]) -> None:
        for queue in self._queues:
            for event in events:
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    log.warning("bus.subscriber_behind", dropped_from=event.position)
                    break
