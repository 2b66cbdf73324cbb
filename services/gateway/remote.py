"""The gateway of the distributed set-up: read models from the read store, commands over HTTP.

Mutations go to the owning service's command API with the caller's own token (the
service checks it again), and service errors keep their codes. A mutation answers once
the read model shows the new version of the aggregate, polled with a deadline. Live
subscriptions read the events topics through a ``KafkaTail`` when one is configured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from services.common.application import CommandContext, Outcome
from services.common.auth import Unauthenticated
from services.common.envelope import Envelope
from services.common.errors import (
    BadInput,
    Conflict,
    Forbidden,
    NotFound,
    ShuangjianError,
    Unavailable,
)
from services.common.ports import ReadStore
from services.common.regions import RegionTree
from services.registry.domain.commands import RegisterInstitution, RegistryCommand
from services.registry.domain.rules import RegistryPolicy
from services.registry.projections import INSTITUTIONS

ERRORS: dict[str, type[ShuangjianError]] = {
    "BAD_INPUT": BadInput,
    "NOT_FOUND": NotFound,
    "CONFLICT": Conflict,
    "FORBIDDEN": Forbidden,
    "UNAVAILABLE": Unavailable,
    "UNAUTHENTICATED": Unauthenticated,
}

PATHS: dict[str, str] = {
    "ApproveInstitution": "approve",
    "ConvertToNonProfit": "convert-to-non-profit",
    "ReclassifyInstitution": "reclassify",
    "SuspendInstitution": "suspend",
    "ResumeInstitution": "resume",
    "RevokeInstitution": "revoke",
    "ExitInstitution": "exit",
    "SetListMark": "list-mark",
    "IssueWarningCard": "warning-cards",
}


@dataclass(frozen=True)
class RemoteAggregate:
    """What the service reports of the aggregate after a command."""

    id: str
    version: int


class RemoteRegistry:
    """The registry's command API, as the gateway sees it."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport
        )

    async def handle(self, cmd: RegistryCommand, ctx: CommandContext) -> Outcome[Any]:
        body = {k: _json(v) for k, v in asdict(cmd).items()}
        if isinstance(cmd, RegisterInstitution):
            path = "/v1/institutions"
        else:
            target = quote(str(body.pop("id")), safe="")
            path = f"/v1/institutions/{target}/{PATHS[type(cmd).__name__]}"
        headers = {"Authorization": ctx.authorization or ""}
        if ctx.idempotency_key:
            headers["Idempotency-Key"] = ctx.idempotency_key
        if ctx.correlation_id:
            headers["X-Correlation-Id"] = ctx.correlation_id
        try:
            response = await self.client.post(path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Unavailable(f"the registry service cannot be reached: {exc}") from exc
        payload = response.json() if response.content else {}
        if response.status_code >= 400:
            error = payload.get("error") or {}
            kind = ERRORS.get(error.get("code", ""), Unavailable)
            raise kind(error.get("message", response.text), field=error.get("field"))
        return Outcome(RemoteAggregate(payload["id"], payload["version"]), [])

    async def close(self) -> None:
        await self.client.aclose()


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class DistributedBackend:
    """Backend of a gateway that runs on its own, beside the services and projectors."""

    def __init__(
        self,
        regions: RegionTree,
        read_store: ReadStore,
        registry: RemoteRegistry,
        policy: RegistryPolicy,
        *,
        live_events: Callable[[], AsyncIterator[Envelope]] | None = None,
        poll_interval: float = 0.05,
    ) -> None:
        self._regions = regions
        self._read_store = read_store
        self._registry = registry
        self._policy = policy
        # Where live events come from, e.g. ``KafkaTail.events``; None: no subscriptions.
        self._live_events = live_events
        self.poll_interval = poll_interval

    @property
    def regions(self) -> RegionTree:
        return self._regions

    @property
    def read_store(self) -> ReadStore:
        return self._read_store

    @property
    def registry(self) -> RemoteRegistry:
        return self._registry

    @property
    def policy(self) -> RegistryPolicy:
        return self._policy

    async def reflects(self, outcome: Outcome[Any], timeout: float = 5.0) -> bool:
        aggregate = outcome.aggregate
        deadline = time.monotonic() + timeout
        while True:
            doc = await self._read_store.get(INSTITUTIONS.name, aggregate.id)
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
