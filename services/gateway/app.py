"""The ASGI application: GraphQL (with GraphiQL) and health endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from strawberry.fastapi import GraphQLRouter

from services.gateway.context import Backend, GatewayContext
from services.gateway.schema import build_schema


def create_app(
    backend: Backend,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    async def context() -> GatewayContext:
        return GatewayContext(backend)

    app = FastAPI(title="Shuangjian", lifespan=lifespan)
    app.include_router(
        GraphQLRouter(build_schema(), context_getter=context, graphql_ide="graphiql"),
        prefix="/graphql",
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


@asynccontextmanager
async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
