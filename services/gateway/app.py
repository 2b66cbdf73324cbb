"""The ASGI application: GraphQL (with GraphiQL) and health endpoints.

Every GraphQL request needs a bearer token (401 ``UNAUTHENTICATED`` otherwise); the
GraphiQL page itself and ``/healthz`` do not. Bodies over ``max_body_bytes`` get 413.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import strawberry
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter

from services.common.auth import TokenVerifier
from services.common.errors import Unauthenticated
from services.gateway.context import Backend, GatewayContext
from services.gateway.schema import build_schema

WELCOME = """# Shuangjian 双减 — GraphQL
#
# Every query needs a token. Open the "Headers" tab below and paste
#
#     {"Authorization": "Bearer <token>"}
#
# with the token that `make run` printed (a national admin), or make one:
#
#     .venv/bin/shuangjian token --region 640400 --role viewer
#
# Then run this (Ctrl-Enter):
{
  region(code: "640400") {
    name
    children { code name }
    stats { institutions { active subject subjectBaseline subjectCompressionRate } }
  }
}
"""


class ShuangjianGraphQL(GraphQLRouter[GatewayContext, None]):
    """Strawberry's router with a GraphiQL page that says how to authenticate."""

    verifier: TokenVerifier

    async def on_ws_connect(self, context: GatewayContext) -> Any:
        """Browsers cannot set WebSocket headers: the token may come in connection_init."""
        if context.authenticated:
            return None
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        try:
            context.authenticate(self.verifier.verify(params.get("Authorization")))
        except Unauthenticated as exc:
            raise ConnectionRejectionError({"code": exc.code, "message": exc.message}) from None
        return None

    async def process_result(self, request: Request, result: Any) -> Any:
        """Syntax errors (and the token limit) stop before any extension runs: code them."""
        response = await super().process_result(request, result)
        errors: list[dict[str, Any]] = response.get("errors") or []  # type: ignore[assignment]
        for error in errors:
            error.setdefault("extensions", {}).setdefault("code", "BAD_INPUT")
        return response

    @property
    def graphql_ide_html(self) -> str:
        html = super().graphql_ide_html
        welcome = WELCOME.replace("\\", "\\\\").replace("`", "\\`").replace("${", "\\${")
        return re.sub(
            r"const EXAMPLE_QUERY = `.*?`;",
            lambda _: f"const EXAMPLE_QUERY = `{welcome}`;",
            html,
            count=1,
            flags=re.S,
        )


class BodyLimit:
    """Refuses request bodies larger than ``limit`` bytes, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(self.limit, send)
            return
        # Read the whole body first (at most ``limit`` bytes), then hand it to the app.
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _too_large(self.limit, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(limit: int, send: Send) -> None:
    response = JSONResponse(
        {
            "errors": [
                {"message": f"request body over {limit} bytes", "extensions": {"code": "BAD_INPUT"}}
            ]
        },
        status_code=413,
    )
    await response({"type": "http"}, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def create_app(
    backend: Backend,
    verifier: TokenVerifier,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    schema: strawberry.Schema | None = None,
) -> FastAPI:
    async def context(connection: HTTPConnection) -> GatewayContext:
        header = connection.headers.get("authorization")
        if connection.scope["type"] == "websocket":
            # Checked at connection_init when the handshake carried no header.
            return GatewayContext(backend, verifier.verify(header) if header else None)
        # The GraphiQL page executes nothing, so it is served without a token.
        ide_page = connection.scope["method"] == "GET" and "query" not in connection.query_params
        principal = None if ide_page else verifier.verify(header)
        return GatewayContext(backend, principal)

    app = FastAPI(title="Shuangjian", lifespan=lifespan)
    router = ShuangjianGraphQL(
        schema or build_schema(), context_getter=context, graphql_ide="graphiql"
    )
    router.verifier = verifier
    app.include_router(router, prefix="/graphql")

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(_: Request, exc: Unauthenticated) -> JSONResponse:
        return JSONResponse(
            {"errors": [{"message": exc.message, "extensions": {"code": exc.code}}]},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="shuangjian"'},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "NOT_FOUND" if exc.status_code == 404 else "BAD_INPUT"
        return JSONResponse(
            {"errors": [{"message": str(exc.detail), "extensions": {"code": code}}]},
            status_code=exc.status_code,
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


@asynccontextmanager
async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
