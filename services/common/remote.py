"""A service's command API as another process sees it: the client of ``http.py``.

Paths and bodies come from the service's command tables, so the client never repeats a
route. The caller's own bearer token travels with each command (the service checks it
again), and a refusal comes back as the same error with the same code and field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from services.common.application import CommandContext, Outcome
from services.common.commands import Command, CommandTable, tables_by_command
from services.common.errors import Unavailable, from_code


@dataclass(frozen=True)
class RemoteAggregate:
    """What the service reports of the aggregate after a command, and where it shows."""

    id: str
    version: int
    read_model: str


class RemoteService:
    """Sends commands to one service's HTTP API."""

    def __init__(
        self,
        name: str,
        base_url: str,
        tables: Sequence[CommandTable],
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.tables = tables_by_command(tables)
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport
        )

    async def handle(self, cmd: Command, ctx: CommandContext) -> Outcome[Any]:
        table = self.tables.get(type(cmd))
        if table is None:
            raise TypeError(f"{type(cmd).__name__} is not a command of {self.name}")
        path, body = table.request(cmd)
        headers = {"Authorization": ctx.authorization or ""}
        if ctx.idempotency_key:
            headers["Idempotency-Key"] = ctx.idempotency_key
        if ctx.correlation_id:
            headers["X-Correlation-Id"] = ctx.correlation_id
        if ctx.causation_id:
            headers["X-Causation-Id"] = ctx.causation_id
        try:
            response = await self.client.post(path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Unavailable(f"the {self.name} service cannot be reached: {exc}") from exc
        payload = response.json() if response.content else {}
        if response.status_code >= 400:
            error = payload.get("error") or {}
            raise from_code(
                error.get("code"),
                error.get("message", response.text),
                error.get("field"),
                error.get("reason"),
            )
        return Outcome(RemoteAggregate(payload["id"], payload["version"], table.read_model), [])

    async def close(self) -> None:
        await self.client.aclose()
