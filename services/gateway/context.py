"""Per-request context: the backend, the caller, and dataloaders against N+1 reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, Protocol

from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext

from services.common.application import CommandContext, Outcome
from services.common.envelope import Envelope
from services.common.ports import ReadStore
from services.common.regions import RegionTree
from services.common.timeutil import local_date, utc_now
from services.registry.domain.commands import RegistryCommand
from services.registry.domain.rules import RegistryPolicy
from services.registry.projections import INSTITUTIONS, REGION_STATS


class RegistryCommands(Protocol):
    async def handle(self, cmd: RegistryCommand, ctx: CommandContext) -> Outcome[Any]: ...


class Backend(Protocol):
    """What the gateway needs: read models, the regions, and the services' commands."""

    @property
    def regions(self) -> RegionTree: ...

    @property
    def read_store(self) -> ReadStore: ...

    @property
    def registry(self) -> RegistryCommands: ...

    @property
    def policy(self) -> RegistryPolicy: ...

    async def applied(self, events: Sequence[Envelope], timeout: float = 5.0) -> bool: ...


class GatewayContext(BaseContext):
    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend
        self.institutions = DataLoader(self._load(INSTITUTIONS.name))
        self.region_stats = DataLoader(self._load(REGION_STATS.name))

    def _load(self, collection: str) -> Any:
        async def load(keys: list[str]) -> list[dict[str, Any] | None]:
            found = await self.backend.read_store.get_many(collection, keys)
            return [found.get(key) for key in keys]

        return load

    def today(self) -> date:
        return local_date(utc_now())

    def command(self) -> CommandContext:
        headers = self.request.headers if self.request is not None else {}
        return CommandContext(
            idempotency_key=headers.get("idempotency-key"),
            correlation_id=headers.get("x-correlation-id"),
        )
