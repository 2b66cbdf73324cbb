"""A live subscriber's stream of events, the same in the embedded and the Kafka set-up.

The in-process bus (``InProcessBus.follow``) and the Kafka tail (``KafkaTail.subscribe``)
both hand each live subscriber one ``LiveSubscription``, so a subscriber sees the same
thing whichever transport feeds it: it ends when its source closes, and raises
``Unavailable`` once it was dropped for falling ``capacity`` events behind (and on every
later call), so it always knows that it missed something.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from types import TracebackType

from services.common.envelope import Envelope
from services.common.errors import Unavailable


class Signal(enum.Enum):
    END = "end"  # the source closed: the subscription ends normally
    DROPPED = "dropped"  # the subscriber fell behind: the subscription ends with an error


class LiveSubscription:
    """One live subscriber: an async iterator of envelopes.

    ``close()`` (or leaving ``async with``) unsubscribes, through ``leave``. The source
    offers events with ``offer`` (False: the subscriber is ``capacity`` behind) and ends
    the subscription with ``end``.
    """

    def __init__(self, leave: Callable[[LiveSubscription], None], capacity: int) -> None:
        self._leave = leave
        self._queue: asyncio.Queue[Envelope | Signal] = asyncio.Queue(capacity)

    def __aiter__(self) -> LiveSubscription:
        return self

    async def __anext__(self) -> Envelope:
        item = await self._queue.get()
        if isinstance(item, Envelope):
            return item
        self._queue.put_nowait(item)  # the end is final: every later call sees it too
        if item is Signal.DROPPED:
            raise Unavailable(
                "this live subscription fell behind the event stream and was dropped; "
                "subscribe again"
            )
        raise StopAsyncIteration

    def close(self) -> None:
        self._leave(self)

    async def __aenter__(self) -> LiveSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def offer(self, event: Envelope) -> bool:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    def end(self, signal: Signal) -> None:
        """Replace whatever is still queued by ``signal``; the subscriber sees it next."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(signal)
