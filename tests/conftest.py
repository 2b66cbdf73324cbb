"""Fixtures shared by the test rings: an embedded platform and a GraphQL client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.bootstrap import Platform, build_platform, embedded_app, limited_schema
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


_schemas: dict[str, Any] = {}


def schema_for(settings: Settings) -> Any:
    """The GraphQL schema ``embedded_app`` builds for ``settings`` (``limited_schema``),
    built once per distinct configuration rather than once per test: strawberry takes
    ~0.3 s to build it, and it holds no state of a platform (each request's context
    carries the platform, as in the gateway, which serves every request with one)."""
    key = settings.model_dump_json(exclude={"data_dir"})
    if key not in _schemas:
        _schemas[key] = limited_schema(settings)
    return _schemas[key]


@pytest.fixture
def app(platform: Platform) -> Any:
    verifier = TokenVerifier(platform.regions, secret=SECRET)
    return embedded_app(platform, verifier, schema=schema_for(platform.settings))


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
    """At the end, where ``pytest -q`` (``make test``) shows it: the brokers really used
    (under pytest-xdist: by every worker, as each reported when it finished)."""
    from tests.kafka.brokers import summary

    terminalreporter.write_line(summary())
    terminalreporter.write_line(pytest_report_header(terminalreporter.config)[1])


# --- pytest-xdist (``make test`` runs ``-n 3 --dist loadfile``) ----------------------------
#
# Each worker is a pytest session of its own, with its own session fixtures: its own Kafka
# and FerretDB (a test that takes the broker down affects only its own worker's tests, which
# run one at a time, as without xdist). Which worker runs what: ``tests/scheduling.py``.
# Ports: ``tests/ports.py``.


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadfile":
        return None
    from tests.scheduling import ForegroundFirst

    return ForegroundFirst(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    from tests.scheduling import FOREGROUND_WORKER

    background = node.gateway.id != FOREGROUND_WORKER
    node.workerinput["background"] = background and node.config.getvalue("dist") == "loadfile"


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config, "workerinput", {}).get("background"):
        from tests.scheduling import lower_priority

        lower_priority()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker tells the controller which brokers its Kafka tests ran on."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        from tests.kafka.brokers import USED

        output["kafka_used"] = list(USED)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """The controller collects what each worker's Kafka tests ran on, for the summary."""
    from tests.kafka.brokers import USED

    for description in getattr(node, "workeroutput", {}).get("kafka_used", []):
        if description not in USED:
            USED.append(description)
