"""The outbox relay: moves committed events from an event store to the bus.

At least once and in position order (so in per-stream order): a batch is marked
published only after the bus accepted all of it; when the bus is unreachable the relay
backs off and tries the same batch again, while commands keep being accepted.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from services.common.envelope import Envelope
from services.common.metrics import OUTBOX_DEPTH, OUTBOX_OLDEST_AGE
from services.common.ports import Bus, EventStore
from services.common.timeutil import utc_now

log = structlog.get_logger(__name__)


class OutboxRelay:
    def __init__(
        self,
        store: EventStore,
        bus: Bus,
        *,
        name: str,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.store = store
        self.bus = bus
        self.name = name
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        # Why the last attempt failed (None once a batch went out): for /healthz.
        self.last_error: str | None = None

    def notify(self) -> None:
        """A command committed: publish now rather than at the next poll."""
        self._wake.set()

    async def relay_once(self) -> int:
        """Publish one batch; returns how many events went out."""
        events = await self.store.unpublished(self.batch_size)
        depth = await self._observe(events)
        if not events:
            return 0
        await self.bus.publish(events)
        await self.store.mark_published(events)
        self.published += len(events)
        if depth == len(events):
            OUTBOX_DEPTH.labels(self.name).set(0)
            OUTBOX_OLDEST_AGE.labels(self.name).set(0)
        return len(events)

    async def _observe(self, pending: list[Envelope]) -> int:
        """Set the outbox gauges from the oldest unpublished events; returns the depth.

        Events go out in position order, so every position from the oldest unpublished one
        to the newest is waiting (the count of a store that skips a void position is one
        over, briefly)."""
        if not pending:
            depth, age = 0, 0.0
        else:
            first = pending[0]
            depth = max(await self.store.max_position() - (first.position or 1) + 1, len(pending))
            age = max((utc_now() - first.recorded_at).total_seconds(), 0.0)
        OUTBOX_DEPTH.labels(self.name).set(depth)
        OUTBOX_OLDEST_AGE.labels(self.name).set(age)
        return depth

    async def drain(self) -> None:
        while await self.relay_once():
            pass

    async def run(self) -> None:
        backoff = 0.05
        while True:
            try:
                sent = await self.relay_once()
                backoff = 0.05
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the bus or store is down: keep the outbox, retry later
                self.last_error = str(exc)
                log.warning("relay.retry", relay=self.name, error=str(exc), backoff=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            if sent == self.batch_size:
                continue
            self._wake.clear()
            # Polling also picks up events committed by other processes. Not wait_for: on
            # Python 3.11 it swallows a cancellation that meets a wake-up, and stop() hangs.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"relay-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
