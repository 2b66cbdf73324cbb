"""In-process adapters for the embedded one-process suite."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from services.common.envelope import Envelope
from services.common.live import LiveSubscription, Signal
from services.common.ports import Bus

log = structlog.get_logger(__name__)


class InProcessBus(Bus):
    """Fans published events out to subscribers in this process, never waiting for one.

    Two kinds of subscriber, and what happens when one falls behind:

    * ``subscribe()``: a wake-up queue for a consumer that reads the event stores itself,
      the ``ProjectionRunner``. When it is full, further events are dropped on purpose:
      the consumer catches up from the stores, the durable copy, and misses nothing.
    * ``follow()``: a live subscriber (GraphQL subscriptions), which has no store to
      catch up from. One that falls ``live_capacity`` events behind is dropped and told so
      with ``Unavailable``, as the Kafka tail does; it never misses events silently.
    """

    def __init__(self, capacity: int = 10_000, live_capacity: int = 1_000) -> None:
        self.capacity = capacity  # events a wake-up queue holds before it drops
        self.live_capacity = live_capacity  # events a live subscriber may fall behind
        self._queues: list[asyncio.Queue[Envelope]] = []
        self._live: list[LiveSubscription] = []

    def subscribe(self) -> asyncio.Queue[Envelope]:
        """A wake-up queue that drops events once full (for readers of the event stores)."""
        queue: asyncio.Queue[Envelope] = asyncio.Queue(self.capacity)
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Envelope]) -> None:
        if queue in self._queues:
            self._queues.remove(queue)

    def follow(self) -> LiveSubscription:
        """A live subscriber: every event published from now on, or ``Unavailable``."""
        subscription = LiveSubscription(self._leave, self.live_capacity)
        self._live.append(subscription)
        return subscription

    @property
    def subscribers(self) -> int:
        """Live subscribers (the wake-up queues are not counted)."""
        return len(self._live)

    def _leave(self, subscription: LiveSubscription) -> None:
        if subscription in self._live:
            self._live.remove(subscription)

    async def publish(self, events: Sequence[Envelope]) -> None:
        for queue in self._queues:
            for event in events:
                try:
                    queue.put_nowait(event)
                except asyncio.QueueFull:
                    # Harmless: the reader catches up from the event store.
                    log.info("bus.wakeup_queue_full", dropped_from=event.position)
                    break
        for subscription in list(self._live):
            for event in events:
                if not subscription.offer(event):
                    self._leave(subscription)
                    subscription.end(Signal.DROPPED)
                    log.warning("bus.subscriber_dropped", behind_at=event.position)
                    break

    async def close(self) -> None:
        """End every live subscription (they stop iterating)."""
        for subscription in list(self._live):
            subscription.end(Signal.END)
        self._live.clear()
