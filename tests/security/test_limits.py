"""Hostile requests are refused before they cost anything: size, depth, tokens, aliases."""

from __future__ import annotations

from typing import Any

import httpx

from services.gateway.schema import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS
from tests.conftest import GraphQL, bearer


async def test_deep_nesting_is_refused(gql: GraphQL) -> None:
    nested = "code"
    for _ in range(MAX_DEPTH + 2):
        nested = f"parent {{ {nested} }}"
    body = await gql(f'{{ region(code: "640402") {{ {nested} }} }}')
    assert body["errors"][0]["extensions"]["code"] == "BAD_INPUT"
    assert "depth" in body["errors"][0]["message"]


async def test_alias_fan_out_is_refused(gql: GraphQL) -> None:
    aliases = " ".join(f'a{n}: region(code: "64") {{ name }}' for n in range(MAX_ALIASES + 1))
    body = await gql(f"{{ {aliases} }}")
    assert body["errors"][0]["extensions"]["code"] == "BAD_INPUT"
    assert "aliases" in body["errors"][0]["message"]


async def test_huge_documents_are_refused(gql: GraphQL) -> None:
    fields = " ".join(["name"] * (MAX_TOKENS + 10))
    body = await gql(f'{{ region(code: "64") {{ {fields} }} }}')
    assert body["errors"][0]["extensions"]["code"] == "BAD_INPUT"
    assert "token" in body["errors"][0]["message"].lower()


async def test_oversized_bodies_get_413(app: Any) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": bearer()},
    ) as client:
        padding = "#" + "x" * 300_000 + "\n"
        response = await client.post("/graphql", json={"query": padding + "{ __typename }"})
        assert response.status_code == 413
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_INPUT"

        async def chunks() -> Any:
            for _ in range(40):
                yield b"x" * 10_000

        streamed = await client.post(
            "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413


async def test_long_texts_are_bounded(gql: GraphQL) -> None:
    body = await gql('{ institutions(filter: {search: "' + "学" * 101 + '"}) { totalCount } }')
    assert body["errors"][0]["extensions"] == {"code": "BAD_INPUT", "field": "filter.search"}


async def test_syntax_errors_are_bad_input(gql: GraphQL) -> None:
    body = await gql("{ institutions(first: ")
    assert body["errors"][0]["extensions"]["code"] == "BAD_INPUT"
