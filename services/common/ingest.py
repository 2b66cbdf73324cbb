"""Commands as data, for district systems that send many: one JSON object a command.

A request is ``{"command": "RegisterInstitution", "input": {...}, "idempotencyKey": "..."}``
(and, on Kafka, a ``requestId`` the result echoes). A result says ``outcome`` (``ok`` or
``error``), the ``id`` of the aggregate the command was for, and, for an error, its
``code``, ``field`` and ``message``; for a success the aggregate's ``version`` and how
many ``events`` it stored (0: an idempotent repeat that changed nothing).

``Catalog`` knows every command of the platform's modules by name and turns a request
into the command object with the same validation as the command APIs (each command's own
fields, nothing else; field-level ``BAD_INPUT`` naming ``input.<field>``). The command
then goes the ordinary way: the same rules, audit trail and region scopes as a mutation.

``ingest_router`` serves ``POST /api/ingest``: newline-delimited JSON in, one result line
out per line in, in order, as each is applied. A broken line is answered with its error
and the stream goes on. Lines are applied one after another, so each aggregate's
commands apply in the order they were sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.types import Receive, Scope, Send

from services.common.application import IDEMPOTENCY_KEY_MAX, CommandContext, Outcome
from services.common.auth import Principal, TokenVerifier
from services.common.commands import Command
from services.common.errors import BadInput, ShuangjianError
from services.common.schemas import command_model

Execute = Callable[[Command, CommandContext], Awaitable[Outcome[Any]]]

NDJSON = "application/x-ndjson"
INGEST_PATH = "/api/ingest"


@dataclass(frozen=True)
class IngestLimits:
    """What one ``/api/ingest`` stream may hold."""

    line_bytes: int = 64 * 1024
    lines: int = 100_000


@dataclass(frozen=True)
class CommandRequest:
    """One command as a district system sends it."""

    command: str
    input: Mapping[str, Any]
    idempotency_key: str | None = None
    request_id: str | None = None


class Catalog:
    """Every command of the platform's modules, by its name."""

    def __init__(self, tables: Mapping[str, Sequence[Any]]) -> None:
        """``tables``: per service, its command tables (``ServiceModule.commands``)."""
        self._types: dict[str, tuple[str, type[Command]]] = {}
        for service, service_tables in tables.items():
            for table in service_tables:
                for route in table:
                    self._types[route.command.__name__] = (service, route.command)
        self._models: dict[str, type[BaseModel]] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self._types)

    def service_of(self, name: str) -> str:
        return self._types[name][0]

    def request(self, raw: Any) -> CommandRequest:
        """A request from decoded JSON; ``BAD_INPUT`` naming what is wrong with it."""
        if not isinstance(raw, dict):
            raise BadInput('a request is a JSON object: {"command": ..., "input": {...}}')
        unknown = sorted(set(raw) - {"command", "input", "idempotencyKey", "requestId"})
        if unknown:
            raise BadInput(f"unknown key {unknown[0]!r} in the request", field=unknown[0])
        name = raw.get("command")
        if not isinstance(name, str) or name not in self._types:
            raise BadInput(
                f"command must be one of the platform's commands, not {name!r}",
                field="command",
            )
        data = raw.get("input")
        if not isinstance(data, dict):
            raise BadInput("input must be a JSON object of the command's fields", field="input")
        key = _text(raw.get("idempotencyKey"), "idempotencyKey")
        ident = _text(raw.get("requestId"), "requestId")
        return CommandRequest(name, data, key, ident)

    def command(self, request: CommandRequest) -> Command:
        """The command object, validated as the command APIs validate their bodies."""
        _, kind = self._types[request.command]
        model = self._model(request.command, kind)
        try:
            body = model.model_validate(request.input)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            raise BadInput(first.get("msg", "malformed input"), field=f"input.{where}") from None
        return kind(**dict(body))

    def _model(self, name: str, kind: type[Command]) -> type[BaseModel]:
        if name not in self._models:
            self._models[name] = command_model(kind)
        return self._models[name]


def _text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > IDEMPOTENCY_KEY_MAX:
        raise BadInput(
            f"{field} is a non-empty string of at most {IDEMPOTENCY_KEY_MAX} characters",
            field=field,
        )
    return value


async def apply(
    catalog: Catalog,
    execute: Execute,
    raw: Any,
    context: Callable[[CommandRequest], CommandContext],
) -> dict[str, Any]:
    """Apply one decoded request; the result, never an exception (one per request)."""
    request: CommandRequest | None = None
    try:
        request = catalog.request(raw)
        command = catalog.command(request)
        outcome = await execute(command, context(request))
    except ShuangjianError as error:
        return failed(error, request, raw)
    result: dict[str, Any] = {"outcome": "ok", "command": request.command}
    if request.request_id is not None:
        result["requestId"] = request.request_id
    aggregate = outcome.aggregate
    result["id"] = command.id or getattr(aggregate, "id", None)
    result["version"] = getattr(aggregate, "version", None)
    result["events"] = len(outcome.events)  # 0: an idempotent repeat, nothing new stored
    return result


def failed(error: ShuangjianError, request: CommandRequest | None, raw: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"outcome": "error", **error.extensions(), "message": error.message}
    result.pop("retryable", None)
    if request is not None:
        result["command"] = request.command
        if request.request_id is not None:
            result["requestId"] = request.request_id
        ident = request.input.get("id")
        if isinstance(ident, str):
            result["id"] = ident[:IDEMPOTENCY_KEY_MAX]
    elif isinstance(raw, dict) and isinstance(raw.get("requestId"), str):
        result["requestId"] = raw["requestId"][:IDEMPOTENCY_KEY_MAX]
    return result


class _Results(StreamingResponse):
    """A streamed answer while the request body is still being read. Starlette's own
    listens for a disconnect by reading the request's messages (on ASGI servers older
    than spec 2.4), which would take the body from under the reader: this one sends only,
    and a client that went away shows as a failed send, as on spec 2.4."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.stream_response(send)


def ingest_router(
    catalog: Catalog,
    execute: Execute,
    verifier: TokenVerifier,
    limits: IngestLimits = IngestLimits(),
) -> APIRouter:
    """``POST /api/ingest``: NDJSON commands in, NDJSON results out (see the module)."""
    router = APIRouter()

    @router.post(INGEST_PATH, include_in_schema=False)
    async def ingest(request: Request) -> StreamingResponse:
        authorization = request.headers.get("authorization")
        principal = verifier.verify(authorization)  # refused before anything is read
        correlation = request.headers.get("x-correlation-id")

        def context(command: CommandRequest) -> CommandContext:
            return CommandContext(
                principal=principal,
                authorization=authorization,
                idempotency_key=command.idempotency_key,
                correlation_id=correlation,
            )

        return _Results(
            _results(request.stream(), catalog, execute, context, principal, limits),
            media_type=NDJSON,
        )

    return router


async def _results(
    body: AsyncIterator[bytes],
    catalog: Catalog,
    execute: Execute,
    context: Callable[[CommandRequest], CommandContext],
    principal: Principal,
    limits: IngestLimits,
) -> AsyncIterator[bytes]:
    number = 0
    async for line in _lines(body, limits.line_bytes):
        number += 1
        if number > limits.lines:
            error = BadInput(f"a stream holds at most {limits.lines} lines; the rest is ignored")
            yield _line({"line": number, **failed(error, None, None)})
            return
        if line is None:
            error = BadInput(f"a line is at most {limits.line_bytes} bytes", field="line")
            yield _line({"line": number, **failed(error, None, None)})
            continue
        if not line.strip():
            number -= 1  # blank lines are not requests
            continue
        try:
            raw = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            error = BadInput(f"not JSON: {exc}", field="line")
            yield _line({"line": number, **failed(error, None, None)})
            continue
        yield _line({"line": number, **await apply(catalog, execute, raw, context)})


async def _lines(body: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes | None]:
    """The body's lines as they arrive; None for a line over ``limit`` bytes (skipped)."""
    pending = b""
    skipping = False
    async for chunk in body:
        pending += chunk
        while True:
            end = pending.find(b"\n")
            if end < 0:
                break
            line, pending = pending[:end], pending[end + 1 :]
            if skipping:
                skipping = False  # the rest of an over-long line
                continue
            yield None if len(line) > limit else line
        if len(pending) > limit and not skipping:
            yield None
            pending, skipping = b"", True
        elif skipping:
            pending = b""
    if pending and not skipping:
        yield None if len(pending) > limit else pending


def _line(result: Mapping[str, Any]) -> bytes:
    return json.dumps(result, ensure_ascii=False, default=str).encode() + b"\n"
