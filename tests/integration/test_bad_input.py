"""Guarantee 8: bad input gets a clear, field-level error and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from services.bootstrap import Platform
from tests.conftest import GraphQL
from tests.factories import registration
from tests.integration.test_registry_graphql import APPROVE, REGISTER


@pytest.mark.parametrize(
    ("overrides", "code", "field", "message"),
    [
        ({"region": "999999"}, "BAD_INPUT", "input.region", "not a GB/T 2260 code"),
        ({"region": "640400"}, "BAD_INPUT", "input.region", "is a CITY"),
        ({"region": "64x"}, "BAD_INPUT", "input.region", "is malformed"),
        ({"creditCode": "12345"}, "BAD_INPUT", "input.creditCode", "18 characters"),
        (
            {"creditCode": "52640402MA00000010"},
            "BAD_INPUT",
            "input.creditCode",
            "check character",
        ),
        ({"name": ""}, "BAD_INPUT", "input.name", "must not be empty"),
        ({"category": "NON_SUBJECT"}, "BAD_INPUT", "input.nonSubjectKind", "needs its kind"),
        ({"occurredAt": "2999-01-01T00:00:00"}, "BAD_INPUT", "input.occurredAt", "future"),
        ({"occurredAt": "yesterday"}, "BAD_INPUT", None, "ISO 8601"),
        ({"id": "has spaces"}, "BAD_INPUT", "id", "an id is"),
        ({"category": "TUTORING"}, "BAD_INPUT", None, "TUTORING"),
    ],
)
async def test_bad_registration_is_refused_by_field_and_writes_nothing(
    gql: GraphQL,
    platform: Platform,
    overrides: dict[str, Any],
    code: str,
    field: str | None,
    message: str,
) -> None:
    body = await gql(REGISTER, {"input": registration(**overrides)})
    [error] = body["errors"]
    assert error["extensions"]["code"] == code
    if field is not None:
        assert error["extensions"]["field"] == field
    assert message in error["message"]
    assert body["data"] is None
    assert await platform.event_stores["registry"].max_position() == 0


async def test_missing_field_is_bad_input_naming_it(gql: GraphQL, platform: Platform) -> None:
    incomplete = registration()
    del incomplete["creditCode"]
    body = await gql(REGISTER, {"input": incomplete})
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_INPUT"
    assert error["extensions"]["field"] == "creditCode"
    assert await platform.event_stores["registry"].max_position() == 0


async def test_unknown_institution_is_not_found(gql: GraphQL, platform: Platform) -> None:
    body = await gql(APPROVE, {"id": "nobody", "licenseNo": "L-1"})
    assert body["errors"][0]["extensions"] == {"code": "NOT_FOUND", "field": "id"}
    assert (await gql.data('{ institution(id: "nobody") { id } }'))["institution"] is None
    assert await platform.event_stores["registry"].max_position() == 0


async def test_lifecycle_rule_is_a_conflict(gql: GraphQL, platform: Platform) -> None:
    late = registration(id="late", occurredAt="2021-09-01T10:00:00")
    await gql.data(REGISTER, {"input": late})
    body = await gql(APPROVE, {"id": "late", "licenseNo": "L-1"})
    assert body["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert "no new SUBJECT institutions" in body["errors"][0]["message"]
    # The registration and its credit code's reservation; the approval wrote nothing.
    assert await platform.event_stores["registry"].max_position() == 2


async def test_bad_query_arguments(gql: GraphQL) -> None:
    for query, field in (
        ('{ region(code: "abc") { name } }', "code"),
        ("{ institutions(first: 1000) { totalCount } }", "first"),
        ('{ institutions(after: "garbage") { totalCount } }', "after"),
        ('{ institutions(filter: {region: "990000"}) { totalCount } }', "filter.region"),
    ):
        body = await gql(query)
        assert body["errors"][0]["extensions"] == {"code": "BAD_INPUT", "field": field}, query


async def test_malformed_graphql_is_bad_input(gql: GraphQL) -> None:
    body = await gql("{ institutions { nope } }")
    assert body["errors"][0]["extensions"]["code"] == "BAD_INPUT"
