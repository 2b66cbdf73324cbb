"""Per-request context: the backend, the caller, and dataloaders against N+1 reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext

from services.common.application import IDEMPOTENCY_KEY_MAX, CommandContext, Outcome
from services.common.auth import Principal
from services.common.commands import Command
from services.common.config import ServiceSettings
from services.common.envelope import Envelope
from services.common.errors import BadInput, Forbidden, Unauthenticated
from services.common.ports import ReadStore
from services.common.regions import RegionTree
from services.common.timeutil import local_date

if TYPE_CHECKING:
    from services.importing.jobs import ImportJobs

T = TypeVar("T")


class Backend(Protocol):
    """What the gateway needs of the platform, whichever services it runs.

    The embedded ``Platform`` is one, and so is the distributed gateway's backend, which
    sends commands over HTTP. Nothing here names a service.
    """

    @property
    def regions(self) -> RegionTree: ...

    @property
    def read_store(self) -> ReadStore: ...

    def clock(self) -> datetime:
        """Now, as the platform judges it (deadlines, overdue, compliance flags)."""
        ...

    def config(self, service: str) -> ServiceSettings:
        """A service's own settings (its policy numbers)."""
        ...

    async def execute(self, cmd: Command, ctx: CommandContext) -> Outcome[Any]:
        """Send a command to the service that owns its type."""
        ...

    async def reflects(self, outcome: Outcome[Any], timeout: float = 5.0) -> bool:
        """Wait until the read models show what ``outcome`` did (read-your-writes)."""
        ...

    def live_events(self) -> AsyncIterator[Envelope]:
        """Every event published from now on, as long as the caller keeps iterating."""
        ...


class GatewayContext(BaseContext):
    def __init__(
        self, backend: Backend, principal: Principal | None, imports: ImportJobs | None = None
    ) -> None:
        super().__init__()
        self.backend = backend
        self._principal = principal
        self.imports = imports  # the spreadsheet imports this process runs, if any
        # "query region", "mutation registerInstitution": set when the operation executes,
        # for the metrics (``observe.OperationLabel``).
        self.operation: str | None = None
        self._loaders: dict[str, DataLoader[str, dict[str, Any] | None]] = {}
        self._once: dict[Hashable, asyncio.Future[Any]] = {}

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

    def loader(self, collection: str) -> DataLoader[str, dict[str, Any] | None]:
        """Documents of a collection by key, batched per request (one read per tick)."""
        if collection not in self._loaders:
            store = self.backend.read_store

            async def load(keys: list[str]) -> list[dict[str, Any] | None]:
                found = await store.get_many(collection, keys)
                return [found.get(key) for key in keys]

            self._loaders[collection] = DataLoader(load)
        return self._loaders[collection]

    async def once(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        """``make()``'s answer, computed once per request however many fields ask."""
        if key not in self._once:
            self._once[key] = asyncio.ensure_future(make())
        return cast(T, await asyncio.shield(self._once[key]))

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
        return local_date(self.backend.clock())

    def command(self) -> CommandContext:
        """The caller of a mutation; an over-long ``Idempotency-Key`` or ``X-Correlation-Id``
        is refused (as REST)."""
        headers = self.request.headers if self.request is not None else {}
        key = headers.get("idempotency-key")
        if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
            raise BadInput(
                f"the Idempotency-Key header is at most {IDEMPOTENCY_KEY_MAX} characters",
                field="idempotencyKey",
            )
        correlation = headers.get("x-correlation-id")
        if correlation is not None and len(correlation) > IDEMPOTENCY_KEY_MAX:
            # Stored on every event the command records: bounded as on REST.
            raise BadInput(
                f"the X-Correlation-Id header is at most {IDEMPOTENCY_KEY_MAX} characters",
                field="correlationId",
            )
        return CommandContext(
            principal=self.principal,
            authorization=headers.get("authorization"),
            idempotency_key=key or None,
            correlation_id=correlation or None,
        )
