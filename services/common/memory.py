"""In-process adapters for the embedded one-process suite."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from types import TracebackType

import structlog

from services.common.envelope import Envelope
from services.common.errors import Unavailable
from services.common.ports import Bus

log = structlog.get_logger(__name__)


class _Signal(enum.Enum):
    END = "end"  # the bus closed
    DROPPED = "dropped"  # the subscriber fell behind


class LiveSubscription:
    """One live subscriber of the in-process bus: an async iterator of envelopes.

    It behaves as ``kafka.TailSubscription`` does, so a live subscriber sees the same in
    the embedded and the distributed set-up: it ends when the bus closes, and raises
    ``Unavailable`` once it was dropped for falling ``capacity`` events behind (and on
    every later call), so it always knows that it missed something. ``close()`` (or
    leaving ``async with``) unsubscribes.
    """

    def __init__(self, bus: InProcessBus, capacity: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Envelope | _Signal] = asyncio.Queue(capacity)

    def __aiter__(self) -> LiveSubscription:
        return self

    async def __anext__(self) -> Envelope:
        item = await self._queue.get()
        if isinstance(item, Envelope):
            return item
        self._queue.put_nowait(item)  # the end is final: every later call sees it too
        if item is _Signal.DROPPED:
            raise Unavailable(
                "this live subscription fell behind the event stream and was dropped; "
                "subscribe again"
            )
        raise StopAsyncIteration

    def close(self) -> None:
        self._bus._leave(self)

    async def __aenter__(self) -> LiveSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _offer(self, event: Envelope) -> bool:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    def _end(self, signal: _Signal) -> None:
        """Replace whatever is still queued by ``signal``; the subscriber sees it next."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(signal)


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
        subscription = LiveSubscription(self, self.live_capacity)
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
                if not subscription._offer(event):
                    self._leave(subscription)
                    subscription._end(_Signal.DROPPED)
                    log.warning("bus.subscriber_dropped", behind_at=event.position)
                    break

    async def close(self) -> None:
        """End every live subscription (they stop iterating)."""
        for subscription in list(self._live):
            subscription._end(_Signal.END)
        self._live.clear()
