"""Fixtures shared by the test rings: an embedded platform and a GraphQL client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.bootstrap import Platform, build_platform, embedded_app
from services.common.auth import Role, TokenVerifier, issue_token
from services.common.config import Settings
from tests.brokers import ferretdb


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


@pytest.fixture(scope="session")
def ferretdb_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """URI of a FerretDB (MongoDB wire protocol, SQLite backend) shared by the whole session.

    Started on first request, so a run that never asks builds and starts nothing; stopped
    at the end of the session (and killed with pytest, however pytest dies). None when it
    cannot run here (no Go to build it, or ``SHUANGJIAN_TEST_FERRETDB=off``): the reason is
    ``tests.brokers.ferretdb.reason``; skip with it, or leave the param out as the contract
    suite does. With Go present a failed build or start is an error, not a skip.

    ``SHUANGJIAN_TEST_MONGODB_URI`` does not replace it: a configured real MongoDB is used
    *as well* (the ``mongo`` params), since the two answer different questions (does the
    adapter keep to the protocol and a real query engine at every commit; does it work on
    the production server, transactions included).

    Tests share the server, never a database: take one of your own with
    ``tests.brokers.ferretdb.scratch_database(uri)`` (a unique name, dropped afterwards).
    """
    if not ferretdb.available():
        yield None
        return
    with ferretdb.FerretDB(tmp_path_factory.mktemp("ferretdb")) as server:
        yield server.uri


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which broker and which MongoDB wire-protocol server the suite runs on, and why."""
    from tests.kafka.brokers import describe_choice

    if ferretdb.available():
        mongo = f"mongodb: FerretDB {ferretdb.VERSION} (SQLite backend, built by the suite)"
    else:
        mongo = f"mongodb: the in-process fake only ({ferretdb.reason})"
    if os.environ.get("SHUANGJIAN_TEST_MONGODB_URI"):
        mongo += ", and the server at SHUANGJIAN_TEST_MONGODB_URI"
    return [describe_choice(), mongo]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """At the end, where ``pytest -q`` (``make test``) shows it: the brokers really used."""
    from tests.kafka.brokers import summary

    terminalreporter.write_line(summary())
    terminalreporter.write_line(pytest_report_header(terminalreporter.config)[1])
