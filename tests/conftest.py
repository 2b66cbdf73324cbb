"""Fixtures shared by the test rings: an embedded platform and a GraphQL client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.bootstrap import Platform, build_platform, embedded_app
from services.common.auth import Role, TokenVerifier, issue_token
from services.common.config import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
async def platform(settings: Settings) -> AsyncIterator[Platform]:
    running = build_platform(settings)
    await running.start()
    yield running
    await running.stop()


class GraphQL:
    """Posts GraphQL over HTTP and returns the decoded body."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def __call__(
        self, query: str, variables: dict[str, Any] | None = None, **headers: str
    ) -> dict[str, Any]:
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = await self(query, variables)
        assert "errors" not in body, body["errors"]
        return body["data"]


SECRET = "test-secret-that-is-long-enough-for-hs256"


def bearer(role: Role = Role.ADMIN, region: str | None = None, subject: str = "tester") -> str:
    return f"Bearer {issue_token(SECRET, subject, role=role, region=region)}"


@pytest.fixture
def app(platform: Platform) -> Any:
    return embedded_app(platform, TokenVerifier(platform.regions, secret=SECRET))


@pytest.fixture
async def gql(app: Any) -> AsyncIterator[GraphQL]:
    """A national admin's GraphQL client."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"Authorization": bearer()}
    ) as client:
        yield GraphQL(client)
