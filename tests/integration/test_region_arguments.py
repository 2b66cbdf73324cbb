"""Every argument that names a region answers an unknown code the same way, and what of a
region is public to any authenticated caller and what is scoped (as the README says)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.common.auth import Role
from tests.conftest import GraphQL, bearer

UNKNOWN = "990000"  # well formed, in no edition of GB/T 2260


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (f'{{ region(code: "{UNKNOWN}") {{ name }} }}', "code"),
        (f'{{ institutions(filter: {{region: "{UNKNOWN}"}}) {{ totalCount }} }}', "filter.region"),
        (f'{{ regions(level: CITY, parent: "{UNKNOWN}") {{ code }} }}', "parent"),
    ],
)
async def test_an_unknown_region_code_is_bad_input_naming_the_argument(
    gql: GraphQL, query: str, field: str
) -> None:
    body = await gql(query)
    error = body["errors"][0]
    assert error["extensions"] == {"code": "BAD_INPUT", "field": field}, query
    assert f'region "{UNKNOWN}" is not a GB/T 2260 code' in error["message"]


async def test_region_names_are_public_and_figures_are_scoped(app: Any) -> None:
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": bearer(Role.VIEWER, "640400")}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        names = await c.post(
            "/graphql",
            json={"query": '{ region(code: "340100") { name children { code } } }'},
        )
        figures = await c.post(
            "/graphql",
            json={"query": '{ region(code: "340100") { stats { institutions { active } } } }'},
        )
    assert names.json()["data"]["region"]["name"] == "合肥市"
    assert {"code": "340103"} in names.json()["data"]["region"]["children"]
    assert figures.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
