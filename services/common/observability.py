"""What every HTTP process does around each request: metrics, correlation, readiness.

``Observed`` wraps a process's ASGI app. For each request it

* takes the caller's ``X-Correlation-Id`` or makes one, binds it to every log line the
  request causes (structlog's context variables), passes it on to the commands (so the
  events carry it, and the projector's logs about them) and echoes it in the response;
* counts and times the request (``shuangjian_http_requests_total`` and
  ``shuangjian_http_request_duration_seconds``) under a bounded operation name.

``readiness`` answers ``GET /readyz``: 200 when every check passes within its time,
503 naming the ones that did not.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from uuid import uuid4

import structlog
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.metrics import HTTP_DURATION, HTTP_REQUESTS

log = structlog.get_logger(__name__)

CORRELATION_HEADER = b"x-correlation-id"
_PRINTABLE = re.compile(r"[^\x21-\x7e]")  # what a log line may carry of a caller's id
# Probes and scrapes: counted, not logged (a line every few seconds per probe says nothing).
QUIET = frozenset({"GET /healthz", "GET /readyz", "GET /metrics"})
_OPERATION = "shuangjian.operation"
_CODE = "shuangjian.code"


def label_request(scope: Scope, *, operation: str | None = None, code: str | None = None) -> None:
    """Let the handler of a request name its operation and outcome for the metrics (the
    gateway: a GraphQL operation's type and first root field, its error code)."""
    state = scope.setdefault("state", {})
    if operation is not None:
        state[_OPERATION] = operation
    if code is not None:
        state[_CODE] = code


class Observed:
    """ASGI middleware: correlation id and metrics for every HTTP request of ``process``.

    The operation label is what the handler set (``label_request``), else the route
    template (``POST /v1/institutions/{id}/approve``), else ``other`` (404s, static
    files): never the raw path, so callers cannot multiply the series.
    """

    def __init__(self, app: ASGIApp, process: str) -> None:
        self.app = app
        self.process = process

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        correlation = _correlation(scope)[:200]  # as much as a handler would accept
        with structlog.contextvars.bound_contextvars(correlation_id=correlation):
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)
                return
            await self._http(scope, receive, send, correlation)

    async def _http(self, scope: Scope, receive: Receive, send: Send, correlation: str) -> None:
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((CORRELATION_HEADER, correlation.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            state = scope.get("state", {})
            operation = state.get(_OPERATION) or _route_of(scope)
            code = state.get(_CODE) or str(status)
            elapsed = time.perf_counter() - started
            HTTP_REQUESTS.labels(self.process, operation, code).inc()
            HTTP_DURATION.labels(self.process, operation).observe(elapsed)
            if operation not in QUIET:
                log.info(
                    "http.request",
                    operation=operation,
                    status=status,
                    code=code,
                    ms=round(elapsed * 1000, 1),
                )


def _correlation(scope: Scope) -> str:
    """The caller's correlation id (printable ASCII only, for the logs), or a new one,
    which is added to the request so the handlers pass it on with the commands. A caller's
    over-long id is left for the handler to refuse (``BAD_INPUT``)."""
    for name, value in scope.get("headers", []):
        if name == CORRELATION_HEADER:
            return _PRINTABLE.sub("", value.decode("latin-1")) or "-"
    made = uuid4().hex
    scope["headers"] = [*scope.get("headers", []), (CORRELATION_HEADER, made.encode())]
    return made


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return f"{scope.get('method', 'GET')} {path}" if path else "other"


Check = Callable[[], Awaitable[str | None]]
"""A readiness check: None when fine, else why not (it may also raise or time out)."""


async def readiness(checks: Mapping[str, Check], timeout: float = 2.0) -> JSONResponse:
    """Run every check at once, each within ``timeout``; 200 if all pass, else 503."""

    async def run(check: Check) -> str:
        try:
            async with asyncio.timeout(timeout):
                problem = await check()
        except TimeoutError:
            return f"no answer within {timeout:g}s"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        return problem or "ok"

    names = list(checks)
    results = dict(zip(names, await asyncio.gather(*(run(checks[n]) for n in names)), strict=True))
    ready = all(result == "ok" for result in results.values())
    if not ready:
        log.warning("readiness.not_ready", checks=results)
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": results},
        status_code=200 if ready else 503,
    )
