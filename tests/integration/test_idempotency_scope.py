"""An Idempotency-Key belongs to its caller and to one operation, and is at most 200 long."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from services.bootstrap import Platform
from services.common.auth import Role
from tests.conftest import GraphQL, bearer
from tests.factories import registration
from tests.integration.test_registry_graphql import APPROVE, REGISTER

WARN = """
mutation($id: ID!) {
  issueWarningCard(id: $id, color: YELLOW, reason: "消防通道堵塞") { id warnings { color } }
}"""
SUSPEND = """
mutation($id: ID!) { suspendInstitution(id: $id, reason: "整改") { id status } }"""
TRAIL = """
query($id: ID!) { institution(id: $id) { events { edges { node { type actor } } } } }"""


@asynccontextmanager
async def as_subject(app: Any, subject: str) -> AsyncIterator[GraphQL]:
    """A district operator of 固原 called ``subject``."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": bearer(Role.OPERATOR, "640400", subject=subject)},
    ) as client:
        yield GraphQL(client)


async def trail(gql: GraphQL, ident: str) -> list[tuple[str, str]]:
    data = await gql.data(TRAIL, {"id": ident})
    return [(e["node"]["type"], e["node"]["actor"]) for e in data["institution"]["events"]["edges"]]


async def test_another_caller_replaying_a_key_has_its_own_command_carried_out(
    app: Any, gql: GraphQL, platform: Platform
) -> None:
    await gql.data(REGISTER, {"input": registration(id="k1")})
    async with as_subject(app, "zhang") as zhang, as_subject(app, "li") as li:
        first = await zhang(WARN, {"id": "k1"}, **{"Idempotency-Key": "req-42"})
        retried = await zhang(WARN, {"id": "k1"}, **{"Idempotency-Key": "req-42"})
        assert "errors" not in first and retried == first
        # Li happens to send the same key: Li's card is recorded, as Li's.
        theirs = await li(WARN, {"id": "k1"}, **{"Idempotency-Key": "req-42"})
        assert "errors" not in theirs
        assert len(theirs["data"]["issueWarningCard"]["warnings"]) == 2
        # And Li's retry changes nothing either.
        assert await li(WARN, {"id": "k1"}, **{"Idempotency-Key": "req-42"}) == theirs

    await platform.settle()
    cards = [t for t in await trail(gql, "k1") if t[0] == "registry.WarningCardIssued"]
    assert sorted(cards) == [
        ("registry.WarningCardIssued", "li"),
        ("registry.WarningCardIssued", "zhang"),
    ]


async def test_a_key_belongs_to_one_operation(app: Any, gql: GraphQL, platform: Platform) -> None:
    await gql.data(REGISTER, {"input": registration(id="k2")})
    await gql.data(APPROVE, {"id": "k2", "licenseNo": "L-2"})
    async with as_subject(app, "zhang") as zhang:
        warned = await zhang(WARN, {"id": "k2"}, **{"Idempotency-Key": "batch-7"})
        suspended = await zhang(SUSPEND, {"id": "k2"}, **{"Idempotency-Key": "batch-7"})
    assert "errors" not in warned
    assert suspended == {"data": {"suspendInstitution": {"id": "k2", "status": "SUSPENDED"}}}


async def test_an_idempotency_key_over_200_characters_is_refused(
    gql: GraphQL, platform: Platform
) -> None:
    await gql.data(REGISTER, {"input": registration(id="k3")})
    store = platform.event_stores["registry"]
    before = await store.max_position()

    long_key = {"Idempotency-Key": "k" * 201}
    approve = await gql(APPROVE, {"id": "k3", "licenseNo": "L-1"}, **long_key)
    register = await gql(REGISTER, {"input": registration(id="k4")}, **long_key)
    for body in (approve, register):
        assert body["data"] is None
        assert body["errors"][0]["extensions"] == {"code": "BAD_INPUT", "field": "idempotencyKey"}
        assert "200" in body["errors"][0]["message"]
    assert await store.max_position() == before

    at_most = await gql(APPROVE, {"id": "k3", "licenseNo": "L-1"}, **{"Idempotency-Key": "k" * 200})
    assert at_most["data"]["approveInstitution"]["status"] == "APPROVED"


async def test_a_correlation_id_over_200_characters_is_refused(
    gql: GraphQL, platform: Platform
) -> None:
    store = platform.event_stores["registry"]
    long_id = {"X-Correlation-Id": "c" * 201}
    body = await gql(REGISTER, {"input": registration(id="c1")}, **long_id)
    assert body["errors"][0]["extensions"] == {"code": "BAD_INPUT", "field": "correlationId"}
    assert await store.max_position() == 0

    fitting = {"X-Correlation-Id": "c" * 200}
    assert "errors" not in await gql(REGISTER, {"input": registration(id="c1")}, **fitting)
    trail = await gql.data('{ institution(id: "c1") { events { edges { node { id } } } } }')
    assert len(trail["institution"]["events"]["edges"]) == 1
