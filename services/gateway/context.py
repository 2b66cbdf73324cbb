"""Per-request context: the backend, the caller, and dataloaders against N+1 reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any, Protocol

from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext

from services.common.application import CommandContext, Outcome
from services.common.auth import Principal, Unauthenticated
from services.common.envelope import Envelope
from services.common.errors import Forbidden
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

    async def reflects(self, outcome: Outcome[Any], timeout: float = 5.0) -> bool:
        """Wait until the read models show what ``outcome`` did (read-your-writes)."""
        ...

    def live_events(self) -> AsyncIterator[Envelope]:
        """Every event published from now on, as long as the caller keeps iterating."""
        ...


class GatewayContext(BaseContext):
    def __init__(self, backend: Backend, principal: Principal | None) -> None:
        super().__init__()
        self.backend = backend
        self._principal = principal
        self.institutions = DataLoader(self._load(INSTITUTIONS.name))
        self.region_stats = DataLoader(self._load(REGION_STATS.name))

    @property
    def authenticated(self) -> bool:
        return self._principal is not None

    def authenticate(self, principal: Principal) -> None:
        self._principal = principal

    @property
    def principal(self) -> Principal:
        if self._principal is None:
            raise Unauthenticated("an Authorization: Bearer <token> header is required")
        return self._principal

    def _load(self, collection: str) -> Any:
        async def load(keys: list[str]) -> list[dict[str, Any] | None]:
            found = await self.backend.read_store.get_many(collection, keys)
            return [found.get(key) for key in keys]

        return load

    def readable(self, region: str, field: str) -> str:
        """The subtree prefix of ``region``, if the caller may read all of it."""
        regions = self.backend.regions
        code = regions.canonical(region, field)
        try:
            self.principal.require_read(code)
        except Forbidden as exc:
            exc.field = field
            raise
        return regions.subtree_prefix(code)

    def today(self) -> date:
        return local_date(utc_now())

    def command(self) -> CommandContext:
        headers = self.request.headers if self.request is not None else {}
        return CommandContext(
            principal=self.principal,
            authorization=headers.get("authorization"),
            idempotency_key=headers.get("idempotency-key"),
            correlation_id=headers.get("x-correlation-id"),
        )
