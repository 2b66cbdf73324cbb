"""The stand-alone gateway: commands to the registry service over HTTP, reads from the store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.bootstrap import MODULES, Commands, build_projections, service_settings
from services.common.auth import Role, TokenVerifier
from services.common.config import Settings
from services.common.projection import ProjectionRunner
from services.common.regions import RegionTree
from services.common.sqlite import SQLiteEventStore, SQLiteReadStore
from services.gateway.app import create_app
from services.gateway.remote import DistributedBackend
from services.registry.domain.rules import RegistryPolicy
from services.registry.handlers import Registry
from services.registry.module import MODULE as REGISTRY
from services.registry.module import no_rectifications
from tests.conftest import SECRET, GraphQL, bearer
from tests.factories import registration, valid_credit_code
from tests.integration.test_registry_graphql import APPROVE, REGISTER


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[GraphQL, Any]]:
    regions, policy = RegionTree.load(), RegistryPolicy()
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    store = SQLiteEventStore(tmp_path / "registry.events.db")
    await store.start()
    verifier = TokenVerifier(regions, secret=SECRET)
    service = REGISTRY.api(
        Registry(store, regions, policy, rectification_overdue=no_rectifications), verifier
    )
    reads = SQLiteReadStore(tmp_path / "read-models.db")
    projector = ProjectionRunner(build_projections(settings, regions), reads, {"registry": store})
    await projector.prepare()

    async def project_forever() -> None:  # what `shuangjian project` does, by polling here
        while True:
            await projector.catch_up()
            await asyncio.sleep(0.02)

    projecting = asyncio.create_task(project_forever())
    remote = REGISTRY.client("http://registry", transport=httpx.ASGITransport(app=service))
    commands = Commands(MODULES, {"registry": remote})
    backend = DistributedBackend(regions, reads, commands, service_settings())
    app = create_app(backend, verifier)

    def client(authorization: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://gateway",
            headers={"Authorization": authorization},
        )

    # A district system loading history: the registrations are back-dated.
    async with client(bearer(Role.IMPORTER, "640400", subject="guyuan-op")) as c:
        try:
            yield GraphQL(c), client
        finally:
            projecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await projecting
            await remote.close()
            await reads.close()
            await store.close()


async def test_mutation_goes_to_the_service_and_answers_from_the_read_model(
    gateway: tuple[GraphQL, Any],
) -> None:
    gql, _ = gateway
    created = await gql.data(REGISTER, {"input": registration(id="d1")})
    assert created["registerInstitution"]["status"] == "PENDING"
    approved = await gql.data(APPROVE, {"id": "d1", "licenseNo": "L-1"})
    assert approved["approveInstitution"]["status"] == "APPROVED"
    trail = await gql.data('{ institution(id: "d1") { events { edges { node { actor } } } } }')
    assert {e["node"]["actor"] for e in trail["institution"]["events"]["edges"]} == {"guyuan-op"}


async def test_service_errors_keep_their_codes_through_the_gateway(
    gateway: tuple[GraphQL, Any],
) -> None:
    gql, client = gateway
    missing = await gql(APPROVE, {"id": "nobody", "licenseNo": "L"})
    assert missing["errors"][0]["extensions"] == {"code": "NOT_FOUND", "field": "id"}
    bad = await gql(REGISTER, {"input": registration(creditCode="123")})
    assert bad["errors"][0]["extensions"]["code"] == "BAD_INPUT"
    assert bad["errors"][0]["extensions"]["field"] == "input.creditCode"  # as when embedded
    elsewhere = await gql(
        REGISTER,
        {"input": registration(id="x", region="340103", creditCode=valid_credit_code("340103"))},
    )
    assert elsewhere["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    async with client(bearer(Role.VIEWER, "640400")) as viewer:
        body = (
            await viewer.post(
                "/graphql", json={"query": REGISTER, "variables": {"input": registration(id="v")}}
            )
        ).json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
