"""The registry's command API over HTTP: same rules, same codes, its own token check."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.bootstrap import Platform
from services.common.auth import Role
from tests.conftest import GraphQL, bearer
from tests.factories import valid_credit_code

BASE = "/api/registry/v1/institutions"


def body(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": "api-1",
        "name": "西吉县育才学科培训学校",
        "credit_code": valid_credit_code("640422"),
        "region": "640422",
        "category": "SUBJECT",
        "mode": "OFFLINE",
        "occurred_at": "2021-03-01T09:00:00",
    }
    fields.update(overrides)
    return fields


@pytest.fixture
async def api(app: Any) -> Any:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        # A district system loading history: body() is back-dated.
        headers={"Authorization": bearer(Role.IMPORTER, "640400", subject="xiji-operator")},
    ) as client:
        yield client


async def test_register_and_approve_over_http(api: Any, gql: GraphQL, platform: Platform) -> None:
    created = await api.post(BASE, json=body())
    assert created.status_code == 201, created.text
    state = created.json()
    assert (state["id"], state["status"], state["version"]) == ("api-1", "PENDING", 1)
    assert state["events"][0]["type"] == "registry.InstitutionRegistered"

    approved = await api.post(f"{BASE}/api-1/approve", json={"license_no": "教民640422001号"})
    assert approved.json()["status"] == "APPROVED"
    again = await api.post(BASE, json=body())
    assert again.status_code == 201 and again.json()["events"] == []

    # The service answers once the events are stored; read models follow.
    await platform.settle()
    stats = await gql.data('{ region(code: "640400") { stats { institutions { approved } } } }')
    assert stats["region"]["stats"]["institutions"]["approved"] == 1
    trail = await gql.data('{ institution(id: "api-1") { events { edges { node { actor } } } } }')
    actors = {e["node"]["actor"] for e in trail["institution"]["events"]["edges"]}
    assert actors == {"xiji-operator"}


@pytest.mark.parametrize(
    ("path", "payload", "status", "code", "field"),
    [
        (BASE, body(credit_code="123"), 422, "BAD_INPUT", "credit_code"),
        (BASE, {**body(), "unexpected": 1}, 422, "BAD_INPUT", "unexpected"),
        (BASE, {k: v for k, v in body().items() if k != "name"}, 422, "BAD_INPUT", "name"),
        (
            BASE,
            body(region="340103", credit_code=valid_credit_code("340103")),
            403,
            "FORBIDDEN",
            "region",
        ),
        (f"{BASE}/nobody/approve", {"license_no": "L"}, 404, "NOT_FOUND", "id"),
        (f"{BASE}/api-1/resume", {}, 409, "CONFLICT", "id"),
    ],
)
async def test_refusals_keep_their_codes(
    api: Any,
    platform: Platform,
    path: str,
    payload: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    if path.startswith(f"{BASE}/api-1"):
        await api.post(BASE, json=body())
    before = await platform.event_stores["registry"].max_position()
    response = await api.post(path, json=payload)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["field"] == field
    assert await platform.event_stores["registry"].max_position() == before


async def test_the_service_checks_tokens_itself(app: Any) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.post(BASE, json=body())
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_openapi_document_describes_every_command(app: Any) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        spec = (await c.get("/api/registry/openapi.json")).json()
    paths = set(spec["paths"])
    assert {
        "/v1/institutions",
        "/v1/institutions/{id}/approve",
        "/v1/institutions/{id}/exit",
    } <= paths
    assert len(paths) == 10
