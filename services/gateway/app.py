"""The ASGI application: GraphQL (with GraphiQL) and health endpoints.

Every GraphQL request needs a bearer token (401 ``UNAUTHENTICATED`` otherwise); the
GraphiQL page, its assets under ``/static`` and ``/healthz`` do not. Bodies over
``max_body_bytes`` get 413.

GraphQL over HTTP, as the spec the ``graphql-http`` audit checks has it: answers are
``application/json``, or ``application/graphql-response+json`` when the client asks for
it; with the latter, a request error (the document does not parse or validate, the
variables do not coerce) is a 400 without a ``data`` entry. A request that is no GraphQL
request at all (a body that is not a JSON object, a batch, no query, several operations
and no ``operationName``, a subscription, a mutation over GET) is a 4xx with a GraphQL
error coded ``BAD_INPUT``, in either media type. The GraphiQL page loads nothing from the
internet: its scripts are files of this package (``scripts/refresh_web_assets.py``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import strawberry
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from graphql import GraphQLError, OperationDefinitionNode, parse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLRequestData
from strawberry.http.parse_content_type import parse_content_type
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from services.common.auth import TokenVerifier
from services.common.errors import BadInput, Unauthenticated
from services.common.http import error_body
from services.common.metrics import metrics_endpoint
from services.common.observability import Check, label_request, readiness
from services.gateway.context import Backend, GatewayContext
from services.gateway.pages import add_pages
from services.gateway.schema import MAX_TOKENS, build_schema
from services.importing.jobs import ImportJobs

GRAPHQL_PATH = "/graphql"
JSON_MEDIA = "application/json"
GRAPHQL_RESPONSE_MEDIA = "application/graphql-response+json"
# The GraphiQL page and its vendored assets (package data).
STATIC = Path(__file__).parent / "static"
PAGE = Path(__file__).parent / "graphiql.html"

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


def response_media(accept: str | None) -> str:
    """The media type to answer in, from the request's ``Accept`` header.

    ``application/graphql-response+json`` when the client prefers it, or names it as
    explicitly and as highly as ``application/json``; ``application/json`` otherwise,
    also for no header, wildcards only or neither type (what older clients expect).
    """
    if not accept:
        return JSON_MEDIA
    graphql_q, graphql_exact = _acceptance(accept, GRAPHQL_RESPONSE_MEDIA)
    json_q, _ = _acceptance(accept, JSON_MEDIA)
    if graphql_q > json_q or (graphql_q == json_q > 0 and graphql_exact == 2):
        return GRAPHQL_RESPONSE_MEDIA
    return JSON_MEDIA


def _acceptance(accept: str, media: str) -> tuple[float, int]:
    """(quality, specificity) that the most specific range of ``accept`` gives ``media``."""
    specificities = {media: 2, media.split("/")[0] + "/*": 1, "*/*": 0}
    best_q, best_specificity = 0.0, -1
    for part in accept.split(","):
        name, *params = (piece.strip() for piece in part.split(";"))
        specificity = specificities.get(name.lower(), -1)
        if specificity < 0 or specificity < best_specificity:
            continue
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
                if not 0.0 <= quality <= 1.0:
                    quality = 0.0
        if specificity > best_specificity or quality > best_q:
            best_q, best_specificity = quality, specificity
    return best_q, best_specificity


def _content_type(media: str) -> str:
    return f"{media}; charset=utf-8" if media == GRAPHQL_RESPONSE_MEDIA else media


def transport_error(status: int, message: str, media: str = JSON_MEDIA) -> JSONResponse:
    """A request that never reached execution: one GraphQL error, coded ``BAD_INPUT``."""
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": "BAD_INPUT"}}]},
        status_code=status,
        headers={"Allow": "POST"} if status == 405 else None,
        media_type=_content_type(media),
    )


@functools.lru_cache(maxsize=512)
def _operations(query: str) -> tuple[tuple[str | None, str], ...] | None:
    """Name and type of each operation of a document; None if it does not parse.

    Parsed under the same token limit as execution; a document that fails to parse is
    left to execution, which reports why. Cached: clients send the same documents again.
    """
    try:
        document = parse(query, no_location=True, max_tokens=MAX_TOKENS)
    except GraphQLError:
        return None
    return tuple(
        (node.name.value if node.name else None, node.operation.value)
        for node in document.definitions
        if isinstance(node, OperationDefinitionNode)
    )


def check_operation(method: str, data: GraphQLRequestData) -> None:
    """Refuse, before anything runs, an operation HTTP must not run.

    Strawberry would run the first of several operations when ``operationName`` is
    missing (graphql-core refuses), and a subscription sent over HTTP would fail inside
    execution; both are the caller's mistake.
    """
    if not isinstance(data.query, str) or not (operations := _operations(data.query)):
        return
    name = data.operation_name
    if name is None:
        if len(operations) > 1:
            raise HTTPException(
                400, "The document has several operations: name the one to run in operationName."
            )
        kind = operations[0][1]
    else:
        kinds = [kind for named, kind in operations if named == name]
        if not kinds:
            raise HTTPException(400, f"The document has no operation named {name!r}.")
        kind = kinds[0]
    if kind == "subscription":
        raise HTTPException(
            400, "Subscriptions run over WebSocket (graphql-transport-ws) at this URL, not HTTP."
        )
    if kind == "mutation" and method == "GET":
        raise HTTPException(405, "Mutations are sent with POST, not GET.")


@functools.cache
def _page_template() -> str:
    # A JSON string is a JS string literal; "</" is escaped so no text ends the script.
    welcome = json.dumps(WELCOME).replace("</", "<\\/")
    return PAGE.read_text(encoding="utf-8").replace("__EXAMPLE_QUERY__", welcome)


def graphiql_page(root_path: str = "") -> str:
    """The GraphiQL page, its assets under ``root_path``'s ``/static/graphiql``."""
    return _page_template().replace("__STATIC__", f"{root_path.rstrip('/')}/static/graphiql")


class ShuangjianGraphQL(GraphQLRouter[GatewayContext, None]):
    """Strawberry's router: GraphQL-over-HTTP media types and errors, a local GraphiQL."""

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

    async def run(  # type: ignore[override]
        self,
        request: Request | WebSocket,
        context: GatewayContext = UNSET,
        root_value: None = UNSET,
    ) -> Response | WebSocket:
        """Answers in the negotiated media type; transport errors as GraphQL errors."""
        if isinstance(request, WebSocket):
            return await super().run(request, context, root_value)
        media = response_media(request.headers.get("accept"))
        request.state.graphql_media = media
        try:
            response = await super().run(request, context, root_value)
        except HTTPException as exc:
            # Strawberry answers these in plain text; clients expect a GraphQL error.
            return transport_error(exc.status_code, exc.reason, media)
        if response.media_type == JSON_MEDIA:
            response.headers["content-type"] = _content_type(media)
            response.status_code = getattr(request.state, "graphql_status", response.status_code)
        return response

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        if request.method == "POST":
            content_type, _ = parse_content_type(request.content_type or "")
            if content_type != JSON_MEDIA:
                raise HTTPException(415, "Send the request as Content-Type: application/json.")
            # Strawberry assumes an object (a non-object body was an HTTP 500) and would
            # answer a batch in plain text. The body is read once; parsing it twice is cheap.
            body = self.parse_json(await request.get_body())
            if isinstance(body, list):
                raise HTTPException(400, "Batches are not supported: one operation a request.")
            if not isinstance(body, dict):
                raise HTTPException(
                    400, 'The request body must be a JSON object: {"query": "...", ...}.'
                )
            if not isinstance(body.get("operationName"), str | None):
                raise HTTPException(400, "operationName must be a string or null, if provided.")
        return await super().parse_http_body(request)

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: GatewayContext,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        check_operation(request_adapter.method, request_data)
        result = await super().execute_single(
            request=request,
            request_adapter=request_adapter,
            sub_response=sub_response,
            context=context,
            root_value=root_value,
            request_data=request_data,
        )
        code = None
        if result.errors:
            code = str((result.errors[0].extensions or {}).get("code", "BAD_INPUT"))
        operation = context.operation or "invalid"
        label_request(request.scope, operation=f"graphql {operation}", code=code)
        return result

    async def process_result(self, request: Request, result: Any) -> Any:
        """Syntax errors (and the token limit) stop before any extension runs: code them."""
        response = await super().process_result(request, result)
        errors: list[dict[str, Any]] = response.get("errors") or []  # type: ignore[assignment]
        for error in errors:
            error.setdefault("extensions", {}).setdefault("code", "BAD_INPUT")
        # No data and no error at a field: the request failed before execution.
        failed_before = (
            response.get("data") is None
            and bool(errors)
            and not any("path" in error for error in errors)
        )
        media = getattr(request.state, "graphql_media", JSON_MEDIA)
        if failed_before and media == GRAPHQL_RESPONSE_MEDIA:
            response.pop("data", None)
            internal = any(e["extensions"]["code"] == "INTERNAL" for e in errors)
            request.state.graphql_status = 500 if internal else 400
        return response

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return HTMLResponse(graphiql_page(request.scope.get("root_path", "")))


class BodyLimit:
    """Refuses request bodies larger than ``limit`` bytes, declared or streamed.

    The 413 comes in the shape of the API asked: GraphQL's ``errors`` at the GraphQL
    endpoint, the command APIs' ``{"error": …}`` everywhere else.
    """

    def __init__(self, app: ASGIApp, limit: int, streamed: Sequence[str] = ()) -> None:
        """``streamed``: paths (a trailing ``/``: every path under it) whose bodies are
        read as they arrive, by handlers that bound them themselves (``/api/ingest`` each
        line and the number of lines; ``/api/import/`` the upload's size)."""
        self.app = app
        self.limit = limit
        self.streamed = tuple(streamed)

    def _streams(self, path: str) -> bool:
        return any(path.startswith(p) if p.endswith("/") else path == p for p in self.streamed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._streams(str(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(self.limit, scope, send)
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
                await _too_large(self.limit, scope, send)
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


async def _too_large(limit: int, scope: Scope, send: Send) -> None:
    message = f"request body over {limit} bytes"
    if str(scope.get("path", "")).rstrip("/").endswith(GRAPHQL_PATH):
        response = transport_error(413, message)
    else:
        response = JSONResponse(error_body(BadInput(message)), status_code=413)
    await response({"type": "http"}, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def create_app(
    backend: Backend,
    verifier: TokenVerifier,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    schema: strawberry.Schema | None = None,
    checks: Mapping[str, Check] | None = None,
    imports: ImportJobs | None = None,
) -> FastAPI:
    """The gateway's app: GraphQL at /graphql, ``/healthz`` (alive), ``/readyz`` (every
    one of ``checks`` passes) and ``/metrics``."""

    async def context(connection: HTTPConnection) -> GatewayContext:
        header = connection.headers.get("authorization")
        if connection.scope["type"] == "websocket":
            # Checked at connection_init when the handshake carried no header.
            return GatewayContext(backend, verifier.verify(header) if header else None, imports)
        # The GraphiQL page executes nothing, so it is served without a token.
        ide_page = connection.scope["method"] == "GET" and "query" not in connection.query_params
        principal = None if ide_page else verifier.verify(header)
        return GatewayContext(backend, principal, imports)

    app = FastAPI(title="Shuangjian", lifespan=lifespan)
    router = ShuangjianGraphQL(
        schema or build_schema(), context_getter=context, graphql_ide="graphiql"
    )
    router.verifier = verifier
    app.include_router(router, prefix=GRAPHQL_PATH)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_pages(app)  # /dashboard and /fonts

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
            headers=exc.headers,  # e.g. Allow on a 405
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        return await readiness(checks or {})

    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    return app


@asynccontextmanager
async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
