"""A service's command API over HTTP, derived from its command tables.

One ``POST`` per command: ``/v1/<resource>`` for a command that creates its aggregate,
``/v1/<resource>/{id}/<verb>`` for the others. The request body is the command's own
fields (minus the id in the path), so a new command needs no hand-written route or body.
Every endpoint verifies the bearer token itself and hands the caller to the application,
which enforces the region scope: a service does not trust its callers. Errors carry the
same codes as GraphQL, with the status ``errors.HTTP_STATUS`` gives them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.application import CommandContext, Outcome
from services.common.auth import TokenVerifier
from services.common.commands import Command, CommandTable, Route
from services.common.errors import ShuangjianError, Unauthenticated, http_status

CommandHandler = Callable[[Command, CommandContext], Awaitable[Outcome[Any]]]


def caller(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    x_correlation_id: Annotated[str | None, Header(max_length=200)] = None,
) -> CommandContext:
    """The service verifies the token itself: it does not trust whoever called it."""
    verifier: TokenVerifier = request.app.state.verifier
    return CommandContext(
        principal=verifier.verify(authorization),
        authorization=authorization,
        idempotency_key=idempotency_key,
        correlation_id=x_correlation_id,
    )


Caller = Annotated[CommandContext, Depends(caller)]


def request_body(route: Route) -> type[BaseModel]:
    """The JSON body of a route: the command's fields, the path's id left out."""
    hints = typing.get_type_hints(route.command)
    fields: dict[str, Any] = {}
    for spec in dataclasses.fields(route.command):
        if spec.name == "id" and not route.creates:
            continue
        default = ... if spec.default is dataclasses.MISSING else spec.default
        description = spec.metadata.get("description")
        fields[spec.name] = (hints[spec.name], Field(default, description=description))
    return create_model(
        route.command.__name__,
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )


def create_command_api(
    title: str,
    description: str,
    tables: Sequence[CommandTable],
    handle: CommandHandler,
    verifier: TokenVerifier,
) -> FastAPI:
    api = FastAPI(title=title, description=description, version="1")
    for table in tables:
        api.include_router(_router(table, handle))
    api.state.verifier = verifier
    _answer_errors(api)
    return api


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
            return state.of(await handle(command(**body.model_dump()), ctx))

        create.__annotations__ = {"body": body_type, "ctx": Caller, "return": state}
        endpoint: Callable[..., Awaitable[Any]] = create
        path, status = "", 201
    else:

        async def act(id: str, body: BaseModel, ctx: CommandContext) -> Any:
            return state.of(await handle(command(id=id, **body.model_dump()), ctx))

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
    )


def error_response(exc: ShuangjianError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthenticated) else None
    return JSONResponse(
        {"error": {"message": exc.message, **exc.extensions()}},
        status_code=http_status(exc),
        headers=headers,
    )


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
