"""A service's command API over HTTP, derived from its command tables.

One ``POST`` per command: ``/v1/<resource>`` for a command that creates its aggregate,
``/v1/<resource>/{id}/<verb>`` for the others. The request body is the command's own
fields (minus the id in the path), so a new command needs no hand-written route or body.
Every endpoint verifies the bearer token itself and hands the caller to the application,
which enforces the region scope: a service does not trust its callers. Errors carry the
same codes as GraphQL, with the status ``errors.HTTP_STATUS`` gives them, and the OpenAPI
document lists each of those responses (and the 413 of an oversized body) with the error
body's schema. The browsable ``/docs`` page loads Swagger UI from this package's own
files (``static/swagger-ui``, ``scripts/refresh_web_assets.py``), not from a CDN.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from services.common.application import CommandContext, Outcome
from services.common.auth import TokenVerifier
from services.common.commands import Command, CommandTable, Route
from services.common.errors import HTTP_STATUS, ShuangjianError, Unauthenticated, http_status

CommandHandler = Callable[[Command, CommandContext], Awaitable[Outcome[Any]]]
STATIC = Path(__file__).parent / "static"


class ErrorDetail(BaseModel):
    """What went wrong; further keys may say more (e.g. ``reason``)."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="The same code as GraphQL's extensions.code.")
    message: str
    field: str | None = Field(None, description="The offending input, for BAD_INPUT.")


class ErrorBody(BaseModel):
    """Every error answer of a command API."""

    error: ErrorDetail


# When each status is answered; the statuses themselves come from ``HTTP_STATUS``.
_MEANING = {
    "BAD_INPUT": "The body or a parameter is malformed or breaks a rule; nothing was written.",
    "UNAUTHENTICATED": "No bearer token, or one that does not verify.",
    "FORBIDDEN": "The token's role or region scope does not cover this command.",
    "NOT_FOUND": "Nothing has this id.",
    "CONFLICT": "The command contradicts what is recorded (a lifecycle rule, a reused key).",
    "UNAVAILABLE": "Something the service needs is unreachable; retry later.",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": f"{kind.code}: {_MEANING.get(kind.code, '')}"}
    for kind, status in sorted(HTTP_STATUS.items(), key=lambda item: item[1])
}
# Answered by the body limit in front of every command API (services/gateway/app.py).
ERROR_RESPONSES[413] = {"model": ErrorBody, "description": "BAD_INPUT: the body is too large."}


def error_body(exc: ShuangjianError) -> dict[str, Any]:
    """The JSON of an error answer: ``{"error": {"message", "code", "field"?}}``."""
    return {"error": {"message": exc.message, **exc.extensions()}}


def caller(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    x_correlation_id: Annotated[str | None, Header(max_length=200)] = None,
    x_causation_id: Annotated[str | None, Header(max_length=200)] = None,
) -> CommandContext:
    """The service verifies the token itself: it does not trust whoever called it."""
    verifier: TokenVerifier = request.app.state.verifier
    return CommandContext(
        principal=verifier.verify(authorization),
        authorization=authorization,
        idempotency_key=idempotency_key,
        correlation_id=x_correlation_id,
        causation_id=x_causation_id,
    )


Caller = Annotated[CommandContext, Depends(caller)]


def request_body(route: Route) -> type[BaseModel]:
    """The JSON body of a route: the command's fields, the path's id left out."""
    return input_model(route.command, with_id=route.creates)


def input_model(
    command: type[Command], *, with_id: bool = True, doc: str | None = None
) -> type[BaseModel]:
    """A command's fields as a pydantic model (types, defaults, descriptions), unknown
    keys refused (``extra="forbid"``, which pydantic carries into nested input
    dataclasses); ``with_id=False`` leaves the id out, as a URL carries it."""
    hints = typing.get_type_hints(command)
    fields: dict[str, Any] = {}
    for spec in dataclasses.fields(command):
        if spec.name == "id" and not with_id:
            continue
        description = spec.metadata.get("description")
        if spec.default_factory is not dataclasses.MISSING:
            field = Field(default_factory=spec.default_factory, description=description)
        else:
            default = ... if spec.default is dataclasses.MISSING else spec.default
            field = Field(default, description=description)
        fields[spec.name] = (hints[spec.name], field)
    return create_model(
        command.__name__, __config__=ConfigDict(extra="forbid"), __doc__=doc, **fields
    )


def create_command_api(
    title: str,
    description: str,
    tables: Sequence[CommandTable],
    handle: CommandHandler,
    verifier: TokenVerifier,
) -> FastAPI:
    # FastAPI's own /docs and /redoc load their scripts from a CDN: /docs is served below.
    api = FastAPI(title=title, description=description, version="1", docs_url=None, redoc_url=None)
    for table in tables:
        api.include_router(_router(table, handle))
    api.state.verifier = verifier
    _answer_errors(api)
    _serve_docs(api)
    return api


def _serve_docs(api: FastAPI) -> None:
    """Swagger UI at ``/docs``, every asset from ``/static`` of the same API."""
    api.mount("/static", StaticFiles(directory=STATIC), name="static")

    @api.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        assets = f"{root}/static/swagger-ui"
        return get_swagger_ui_html(
            openapi_url=f"{root}{api.openapi_url}",
            title=f"{api.title} — API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            # No validator badge: it is an image from swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )


def _router(table: CommandTable, handle: CommandHandler) -> APIRouter:
    router = APIRouter(prefix=f"/v1/{table.resource}", tags=[table.resource])
    for route in table:
        _add(router, table, route, handle)
    return router


def _add(router: APIRouter, table: CommandTable, route: Route, handle: CommandHandler) -> None:
    body_type = request_body(route)
    command = route.command
    state = table.state

    # The annotations are set as objects: the body model exists only in this call.
    if route.creates:

        async def create(body: BaseModel, ctx: CommandContext) -> Any:
            return state.of(await handle(command(**dict(body)), ctx))

        create.__annotations__ = {"body": body_type, "ctx": Caller, "return": state}
        endpoint: Callable[..., Awaitable[Any]] = create
        path, status = "", 201
    else:

        async def act(id: str, body: BaseModel, ctx: CommandContext) -> Any:
            return state.of(await handle(command(id=id, **dict(body)), ctx))

        act.__annotations__ = {"id": str, "body": body_type, "ctx": Caller, "return": state}
        endpoint, path, status = act, f"/{{id}}/{route.verb}", 200
    router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        status_code=status,
        response_model=state,
        summary=route.summary or command.__name__,
        name=command.__name__,
        operation_id=command.__name__,
        responses=ERROR_RESPONSES,
    )


def error_response(exc: ShuangjianError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthenticated) else None
    return JSONResponse(error_body(exc), status_code=http_status(exc), headers=headers)


def _answer_errors(api: FastAPI) -> None:
    @api.exception_handler(ShuangjianError)
    async def domain_error(_: Request, exc: ShuangjianError) -> JSONResponse:
        return error_response(exc)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "NOT_FOUND" if exc.status_code == 404 else "BAD_INPUT"
        return JSONResponse(
            {"error": {"message": str(exc.detail), "code": code}}, status_code=exc.status_code
        )

    @api.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse(
            {
                "error": {
                    "message": first.get("msg", "malformed request"),
                    "code": "BAD_INPUT",
                    "field": where,
                }
            },
            status_code=422,
        )
