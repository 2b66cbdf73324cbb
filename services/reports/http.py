"""``GET /api/reports/monthly?region=…&month=YYYY-MM&format=xlsx|pdf``: the monthly report.

The caller's bearer token scopes it as it scopes GraphQL (the report is made of one
GraphQL query run as the caller: ``monthly.build``). Errors are the REST error body with
the field named: ``region``, ``month``, ``format``.
"""

from __future__ import annotations

import asyncio

import strawberry
from fastapi import APIRouter, Request, Response

from services.common.auth import TokenVerifier
from services.common.errors import BadInput, ShuangjianError
from services.common.http import error_response
from services.gateway.context import Backend, GatewayContext
from services.reports.formats import format_named
from services.reports.monthly import build

MONTHLY_PATH = "/api/reports/monthly"


def reports_router(
    backend: Backend, verifier: TokenVerifier, schema: strawberry.Schema
) -> APIRouter:
    router = APIRouter()

    @router.get(MONTHLY_PATH, include_in_schema=False)
    async def monthly(request: Request) -> Response:
        try:
            principal = verifier.verify(request.headers.get("authorization"))
            query = request.query_params
            for name in ("region", "month"):
                if not query.get(name):
                    raise BadInput(f"{name} is required", field=name)
            chosen = format_named(query.get("format", "xlsx"))
            context = GatewayContext(backend, principal)
            report = await build(schema, context, query["region"], query["month"])
        except ShuangjianError as exc:
            return error_response(exc)
        return Response(
            await asyncio.to_thread(chosen.render, report),  # CPU work: off the event loop
            media_type=chosen.media_type,
            headers={
                "Content-Disposition": chosen.content_disposition(report),
                "Cache-Control": "no-store",  # the figures change with every event
            },
        )

    return router
