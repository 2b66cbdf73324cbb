"""Timers: work a service does because time passed, not because a command came.

A module may declare timers (``ServiceModule.timers``): each is a ``tick`` the platform
runs every ``interval`` seconds, which looks at the read models as of its clock and sends
ordinary commands (the finance service's working-day clock settles what fell due). A
tick must be safe to run twice at once and after any pause: it sends what is due *now*,
and the commands themselves decide on the stored state, so a second runner (another
replica) finds nothing left to do, and a runner that was down catches up on its next
tick.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Timer:
    name: str
    interval: float
    tick: Callable[[], Awaitable[int]]
    """Runs once; answers how many commands it sent."""


class TimerRunner:
    """Runs timers in this process until stopped; a failing tick is logged and retried."""

    def __init__(self, timers: Sequence[Timer]) -> None:
        self.timers = list(timers)
        self._tasks: list[asyncio.Task[None]] = []

    async def tick(self) -> int:
        """Every timer once, now (tests, and ``shuangjian`` commands that want it now)."""
        return sum([await timer.tick() for timer in self.timers])

    def start(self) -> None:
        for timer in self.timers:
            self._tasks.append(asyncio.create_task(self._run(timer), name=f"timer-{timer.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _run(self, timer: Timer) -> None:
        while True:
            try:
                sent = await timer.tick()
                if sent:
                    log.info("timer.ticked", timer=timer.name, commands=sent)
            except Exception:  # the store is down, a bug: log it and try again later
                log.exception("timer.failed", timer=timer.name)
            await asyncio.sleep(timer.interval)
