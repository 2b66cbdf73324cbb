"""Control and bidi formatting characters through GraphQL: BAD_INPUT by field, nothing written."""

from __future__ import annotations

import pytest

from services.bootstrap import Platform
from tests.conftest import GraphQL
from tests.factories import registration
from tests.integration.test_registry_graphql import APPROVE, REGISTER

SUSPEND = """
mutation($id: ID!, $reason: String!) {
  suspendInstitution(id: $id, reason: $reason) { id status statusReason }
}"""


@pytest.mark.parametrize(
    ("overrides", "field", "shown"),
    [
        ({"name": "启明\u0000学校"}, "input.name", "U+0000"),
        ({"name": "启明\u0007学校"}, "input.name", "U+0007"),
        ({"name": "启明学校\u202e科培"}, "input.name", "U+202E"),
        ({"name": "启明\n学校"}, "input.name", "single line"),
        ({"address": "原州区\u2066文化街\u2069"}, "input.address", "U+2066"),
    ],
)
async def test_control_characters_in_a_registration_are_bad_input(
    gql: GraphQL, platform: Platform, overrides: dict[str, str], field: str, shown: str
) -> None:
    body = await gql(REGISTER, {"input": registration(id="ctl", **overrides)})
    [error] = body["errors"]
    assert error["extensions"] == {"code": "BAD_INPUT", "field": field}
    assert shown in error["message"]
    assert body["data"] is None
    assert await platform.event_stores["registry"].max_position() == 0
    assert (await gql.data('{ institution(id: "ctl") { id } }'))["institution"] is None


async def test_text_is_shown_as_stored_in_nfc_with_line_breaks_where_allowed(
    gql: GraphQL, platform: Platform
) -> None:
    nfd = "Cafe\u0301 艺术"
    created = await gql.data(
        REGISTER, {"input": registration(id="nfc", name=nfd, address="原州区\r\n文化街 1 号")}
    )
    assert created["registerInstitution"]["name"] == "Café 艺术"
    shown = await gql.data('{ institution(id: "nfc") { name address } }')
    assert shown["institution"] == {"name": "Café 艺术", "address": "原州区\n文化街 1 号"}
    await gql.data(APPROVE, {"id": "nfc", "licenseNo": "L-1"})

    before = await platform.event_stores["registry"].max_position()
    body = await gql(SUSPEND, {"id": "nfc", "reason": "消防\u202e隐患"})
    assert body["errors"][0]["extensions"] == {"code": "BAD_INPUT", "field": "reason"}
    assert await platform.event_stores["registry"].max_position() == before

    suspended = await gql.data(SUSPEND, {"id": "nfc", "reason": "消防通道堵塞\n灭火器过期"})
    assert suspended["suspendInstitution"]["statusReason"] == "消防通道堵塞\n灭火器过期"
