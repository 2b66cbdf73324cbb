"""The registry's command API over HTTP, for district systems and the distributed gateway.

Every endpoint authenticates the bearer token itself and hands the caller to the
application, which enforces the region scope: the service does not trust its callers.
Errors carry the same codes as GraphQL, with the matching HTTP status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.application import CommandContext, Outcome
from services.common.auth import Principal, TokenVerifier, Unauthenticated
from services.common.errors import ShuangjianError
from services.registry.domain.commands import (
    ApproveInstitution,
    ConvertToNonProfit,
    ExitInstitution,
    IssueWarningCard,
    ReclassifyInstitution,
    RegisterInstitution,
    RegistryCommand,
    ResumeInstitution,
    RevokeInstitution,
    SetListMark,
    SuspendInstitution,
)
from services.registry.domain.model import Institution
from services.registry.handlers import Registry

STATUS_BY_CODE = {
    "BAD_INPUT": 422,
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "UNAVAILABLE": 503,
}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    occurred_at: datetime | None = Field(
        None, description="Business time; naive means Asia/Shanghai; default now."
    )


class Registration(Body):
    id: str | None = Field(None, description="Client-chosen id; resending is a no-op.")
    name: str
    credit_code: str
    region: str = Field(description="6-digit district code.")
    category: str = Field(description="SUBJECT or NON_SUBJECT")
    mode: str = Field(description="OFFLINE or ONLINE")
    address: str | None = None
    non_subject_kind: str | None = None
    non_profit: bool = False


class Approval(Body):
    license_no: str


class Reclassification(Body):
    category: str
    non_subject_kind: str | None = None


class Reasoned(Body):
    reason: str


class ListMarking(Body):
    mark: str = Field(description="NONE, WHITELIST or BLACKLIST")
    reason: str


class WarningCardBody(Body):
    color: str = Field(description="YELLOW or RED")
    reason: str


class StoredEvent(BaseModel):
    id: str
    type: str
    version: int
    position: int | None


class InstitutionState(BaseModel):
    """The institution as the command left it, and the events it recorded."""

    id: str
    version: int
    region: str
    status: str | None
    category: str | None
    non_subject_kind: str | None
    non_profit: bool
    list_mark: str
    license_no: str | None
    events: list[StoredEvent]

    @classmethod
    def of(cls, outcome: Outcome[Institution]) -> InstitutionState:
        inst = outcome.aggregate
        return cls(
            id=inst.id,
            version=inst.version,
            region=inst.region,
            status=inst.status.value if inst.status else None,
            category=inst.category.value if inst.category else None,
            non_subject_kind=inst.kind.value if inst.kind else None,
            non_profit=inst.non_profit,
            list_mark=inst.list_mark.value,
            license_no=inst.license_no,
            events=[
                StoredEvent(id=str(e.id), type=e.type, version=e.version, position=e.position)
                for e in outcome.events
            ],
        )


def caller(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    x_correlation_id: Annotated[str | None, Header(max_length=200)] = None,
) -> CommandContext:
    """The service verifies the token itself: it does not trust whoever called it."""
    verifier: TokenVerifier = request.app.state.verifier
    principal: Principal = verifier.verify(authorization)
    return CommandContext(
        principal=principal,
        idempotency_key=idempotency_key,
        correlation_id=x_correlation_id,
    )


Caller = Annotated[CommandContext, Depends(caller)]


def create_registry_api(registry: Registry, verifier: TokenVerifier) -> FastAPI:
    async def run(cmd: RegistryCommand, ctx: CommandContext) -> InstitutionState:
        return InstitutionState.of(await registry.handle(cmd, ctx))

    router = APIRouter(prefix="/v1/institutions", tags=["registry"])

    @router.post("", status_code=201, summary="Register an institution")
    async def register(body: Registration, ctx: Caller) -> InstitutionState:
        return await run(RegisterInstitution(**body.model_dump()), ctx)

    @router.post("/{id}/approve", summary="审批准入")
    async def approve(id: str, body: Approval, ctx: Caller) -> InstitutionState:
        return await run(ApproveInstitution(id=id, **body.model_dump()), ctx)

    @router.post("/{id}/convert-to-non-profit", summary="营转非")
    async def convert(id: str, body: Body, ctx: Caller) -> InstitutionState:
        return await run(ConvertToNonProfit(id=id, **body.model_dump()), ctx)

    @router.post("/{id}/reclassify", summary="转型")
    async def reclassify(id: str, body: Reclassification, ctx: Caller) -> InstitutionState:
        return await run(ReclassifyInstitution(id=id, **body.model_dump()), ctx)

    @router.post("/{id}/suspend", summary="停业整顿")
    async def suspend(id: str, body: Reasoned, ctx: Caller) -> InstitutionState:
        return await run(SuspendInstitution(id=id, **body.model_dump()), ctx)

    @router.post("/{id}/resume")
    async def resume(id: str, body: Body, ctx: Caller) -> InstitutionState:
        return await run(ResumeInstitution(id=id, **body.model_dump()), ctx)

    @router.post("/{id}/revoke", summary="取缔 (final)")
    async def revoke(id: str, body: Reasoned, ctx: Caller) -> InstitutionState:
        return await run(RevokeInstitution(id=id, **body.model_dump()), ctx)

    @router.post("/{id}/exit", summary="有序退出 (final)")
    async def exit_(id: str, body: Reasoned, ctx: Caller) -> InstitutionState:
        return await run(ExitInstitution(id=id, **body.model_dump()), ctx)

    @router.post("/{id}/list-mark", summary="黑白名单")
    async def list_mark(id: str, body: ListMarking, ctx: Caller) -> InstitutionState:
        return await run(SetListMark(id=id, **body.model_dump()), ctx)

    @router.post("/{id}/warning-cards", summary="红黄牌")
    async def warning_card(id: str, body: WarningCardBody, ctx: Caller) -> InstitutionState:
        return await run(IssueWarningCard(id=id, **body.model_dump()), ctx)

    api = FastAPI(
        title="Shuangjian registry",
        description="Commands to the register of off-campus training institutions.",
        version="1",
    )
    api.include_router(router)
    api.state.verifier = verifier

    @api.exception_handler(ShuangjianError)
    async def domain_error(_: Request, exc: ShuangjianError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthenticated) else None
        return JSONResponse(
            {"error": {"message": exc.message, **exc.extensions()}},
            status_code=STATUS_BY_CODE.get(exc.code, 500),
            headers=headers,
        )

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

    return api
