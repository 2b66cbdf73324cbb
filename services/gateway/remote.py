"""The gateway of the distributed set-up: read models from the read store, commands over HTTP.

Mutations go to the owning service's command API (``RemoteService``, one per module)
with the caller's own token (the service checks it again), and service errors keep their
codes. A mutation answers once the read model shows the new version of the aggregate,
polled with a deadline. Live subscriptions read the events topics through a
``KafkaTail`` when one is configured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from typing import Any

from services.common.application import CommandContext, Outcome
from services.common.commands import Command
from services.common.config import ServiceSettings
from services.common.envelope import Envelope
from services.common.errors import Unavailable
from services.common.module import CommandService
from services.common.ports import ReadStore
from services.common.regions import RegionTree
from services.common.timeutil import utc_now


class DistributedBackend:
    """Backend of a gateway that runs on its own, beside the services and projectors."""

    def __init__(
        self,
        regions: RegionTree,
        read_store: ReadStore,
        commands: CommandService,
        settings: Mapping[str, ServiceSettings],
        *,
        live_events: Callable[[], AsyncIterator[Envelope]] | None = None,
        poll_interval: float = 0.05,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.clock = clock
        self._regions = regions
        self._read_store = read_store
        self._commands = commands
        self._settings = dict(settings)
        # Where live events come from, e.g. ``KafkaTail.events``; None: no subscriptions.
        self._live_events = live_events
        self.poll_interval = poll_interval

    @property
    def regions(self) -> RegionTree:
        return self._regions

    @property
    def read_store(self) -> ReadStore:
        return self._read_store

    def config(self, service: str) -> ServiceSettings:
        return self._settings[service]

    async def execute(self, cmd: Command, ctx: CommandContext) -> Outcome[Any]:
        return await self._commands.handle(cmd, ctx)

    async def reflects(self, outcome: Outcome[Any], timeout: float = 5.0) -> bool:
        """The aggregate's document shows the version the service answered with."""
        aggregate = outcome.aggregate
        deadline = time.monotonic() + timeout
        while True:
            doc = await self._read_store.get(aggregate.read_model, aggregate.id)
            if doc is not None and doc["version"] >= aggregate.version:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(self.poll_interval)

    def live_events(self) -> AsyncIterator[Envelope]:
        if self._live_events is None:
            raise Unavailable(
                "live subscriptions need the Kafka topics: this gateway has no "
                "SHUANGJIAN_KAFKA_BOOTSTRAP configured"
            )
        return self._live_events()
