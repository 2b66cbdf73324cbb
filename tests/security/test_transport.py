"""Transport errors are the API's errors: GraphQL-over-HTTP requests and the REST 413/OpenAPI.

A request that is no GraphQL request at all gets a 4xx and a JSON GraphQL error coded
``BAD_INPUT`` (never a 500 or plain text) and runs nothing; ``application/graphql-response+json``
is negotiated, with 400 and no ``data`` entry for request errors; the command APIs answer
413 in their own ``{"error": …}`` shape and document every error status they can give.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.bootstrap import Platform, service_app
from services.common.auth import Role
from services.common.config import Settings
from services.gateway.app import GRAPHQL_RESPONSE_MEDIA, response_media
from services.registry.module import MODULE as REGISTRY
from tests.conftest import bearer
from tests.factories import registration, valid_credit_code

GR = GRAPHQL_RESPONSE_MEDIA
REGISTER_MUTATION = (
    "mutation Register($input: RegisterInstitutionInput!) "
    "{ registerInstitution(input: $input) { id } }"
)
NEW = registration(id="t-1", creditCode=valid_credit_code("640402", "MA0000T01"))


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://test",
        headers={"Authorization": bearer()},
    ) as http:
        yield http


def as_json(content: str | bytes) -> dict[str, Any]:
    return {"content": content, "headers": {"Content-Type": "application/json"}}


NOT_GRAPHQL_REQUESTS: dict[str, tuple[dict[str, Any], int]] = {
    "null body": (as_json("null"), 400),
    "string body": (as_json('"{ __typename }"'), 400),
    "number body": (as_json("123"), 400),
    "boolean body": (as_json("true"), 400),
    "bad JSON": (as_json('{"query": '), 400),
    "empty body": (as_json(""), 400),
    "batch": ({"json": [{"query": "{ __typename }"}, {"query": "{ __typename }"}]}, 400),
    "empty query": ({"json": {"query": ""}}, 400),
    "no query": ({"json": {"variables": {}}}, 400),
    "numeric operationName": ({"json": {"query": "{ __typename }", "operationName": 5}}, 400),
    "text/plain body": (
        {"content": b'{"query": "{ __typename }"}', "headers": {"Content-Type": "text/plain"}},
        415,
    ),
    # Valid variables: strawberry used to run the first operation, this registration.
    "two operations, no operationName": (
        {
            "json": {
                "query": REGISTER_MUTATION + " query B { __typename }",
                "variables": {"input": NEW},
            }
        },
        400,
    ),
    "unknown operationName": (
        {"json": {"query": "query A { __typename }", "operationName": "B"}},
        400,
    ),
    "subscription over POST": (
        {"json": {"query": 'subscription { events(region: "64") { type } }'}},
        400,
    ),
}


@pytest.mark.parametrize("accept", ["application/json", GR])
@pytest.mark.parametrize("case", sorted(NOT_GRAPHQL_REQUESTS))
async def test_a_request_that_is_not_graphql_gets_a_coded_4xx_and_runs_nothing(
    client: httpx.AsyncClient, platform: Platform, case: str, accept: str
) -> None:
    request, status = NOT_GRAPHQL_REQUESTS[case]
    headers = {**request.get("headers", {}), "Accept": accept}
    before = await platform.event_stores["registry"].max_position()
    response = await client.post("/graphql", **{**request, "headers": headers})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == accept
    body = response.json()
    assert "data" not in body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_INPUT"]
    assert body["errors"][0]["message"]
    assert await platform.event_stores["registry"].max_position() == before


async def test_two_operations_run_the_one_named(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    """Without the name the register mutation (the first) used to run; with it, only B runs."""
    before = await platform.event_stores["registry"].max_position()
    response = await client.post(
        "/graphql",
        json={
            "query": REGISTER_MUTATION + " query B { __typename }",
            "operationName": "B",
            "variables": {"input": NEW},
        },
    )
    assert response.json() == {"data": {"__typename": "Query"}}
    assert await platform.event_stores["registry"].max_position() == before


async def test_a_mutation_over_get_is_405_and_writes_nothing(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    before = await platform.event_stores["registry"].max_position()
    response = await client.get(
        "/graphql",
        params={"query": REGISTER_MUTATION, "variables": json.dumps({"input": NEW})},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_INPUT"
    assert await platform.event_stores["registry"].max_position() == before
    # The same mutation over POST is fine.
    posted = await client.post(
        "/graphql", json={"query": REGISTER_MUTATION, "variables": {"input": NEW}}
    )
    assert posted.json() == {"data": {"registerInstitution": {"id": "t-1"}}}


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("application/*", "application/json"),
        ("text/html", "application/json"),
        (GR, GR),
        (f"{GR}, application/json;q=0.9", GR),
        (f"application/json, {GR}", GR),
        (f"application/json, {GR};q=0.5", "application/json"),
        (f"{GR};q=0, */*", "application/json"),
        (f"*/*;q=0.1, {GR}", GR),
        (f"{GR};q=oops, application/json", "application/json"),
    ],
)
def test_the_response_media_type_follows_accept(accept: str | None, expected: str) -> None:
    assert response_media(accept) == expected


REQUEST_ERRORS = {
    "syntax": {"query": "{ region(code: "},
    "validation": {"query": "{ noSuchField }"},
    "variable coercion": {
        "query": "query($first: Int!) { institutions(first: $first) { totalCount } }",
        "variables": {"first": "many"},
    },
}


@pytest.mark.parametrize("case", sorted(REQUEST_ERRORS))
async def test_request_errors_are_400_without_data_for_graphql_response_json(
    client: httpx.AsyncClient, case: str
) -> None:
    payload = REQUEST_ERRORS[case]
    response = await client.post("/graphql", json=payload, headers={"Accept": GR})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == f"{GR}; charset=utf-8"
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "BAD_INPUT"

    # application/json keeps its 200 (what existing clients rely on).
    legacy = await client.post("/graphql", json=payload, headers={"Accept": "application/json"})
    assert legacy.status_code == 200
    assert legacy.headers["content-type"] == "application/json"
    assert legacy.json()["errors"][0]["extensions"]["code"] == "BAD_INPUT"


async def test_graphql_response_json_answers_200_with_data_once_execution_ran(
    client: httpx.AsyncClient,
) -> None:
    ok = await client.post("/graphql", json={"query": "{ __typename }"}, headers={"Accept": GR})
    assert (ok.status_code, ok.json()) == (200, {"data": {"__typename": "Query"}})
    assert ok.headers["content-type"] == f"{GR}; charset=utf-8"
    # An error at a field happens during execution: 200, and the data entry is there, even
    # when the error leaves it null (a listing outside the caller's regions).
    failed = await client.post(
        "/graphql",
        json={"query": '{ institutions(filter: {region: "340103"}) { totalCount } }'},
        headers={"Accept": GR, "Authorization": bearer(Role.VIEWER, "640402")},
    )
    assert failed.status_code == 200
    body = failed.json()
    assert body["data"] is None
    assert body["errors"][0]["path"] == ["institutions"]
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_an_oversized_body_gets_each_apis_own_413(client: httpx.AsyncClient) -> None:
    padding = "x" * 300_000
    rest = await client.post(
        "/api/registry/v1/institutions",
        json={"id": "big", "name": padding},
        headers={"Authorization": bearer(Role.OPERATOR, "640402")},
    )
    assert rest.status_code == 413
    assert rest.json() == {
        "error": {"message": "request body over 262144 bytes", "code": "BAD_INPUT"}
    }
    graphql = await client.post("/graphql", json={"query": "#" + padding + "\n{ __typename }"})
    assert graphql.status_code == 413
    assert graphql.json()["errors"][0]["extensions"]["code"] == "BAD_INPUT"


async def test_a_service_served_alone_answers_413_in_its_own_shape(settings: Settings) -> None:
    """`shuangjian serve registry`: the limit sits in front of the command API alone."""
    app = service_app(settings, REGISTRY)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        response = await http.post("/v1/institutions", content=b"{" + b" " * 300_000 + b"}")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "BAD_INPUT"


async def test_the_openapi_document_lists_every_error_response(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/api/registry/openapi.json")).json()
    error_schema = spec["components"]["schemas"]["ErrorBody"]
    assert error_schema["required"] == ["error"]
    detail = spec["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message"}
    assert "field" in detail["properties"]
    operations = [op for path in spec["paths"].values() for op in path.values()]
    assert len(operations) == 10
    for operation in operations:
        responses = operation["responses"]
        assert {"401", "403", "404", "409", "413", "422"} <= set(responses), operation[
            "operationId"
        ]
        for status in ("401", "403", "404", "409", "413", "422"):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (status, schema)
