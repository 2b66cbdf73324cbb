"""The registry slice through GraphQL on the embedded platform (in-process HTTP)."""

from __future__ import annotations

from typing import Any

from services.bootstrap import Platform, build_platform
from services.common.application import CommandContext
from services.common.config import Settings
from services.registry.domain.commands import RegisterInstitution
from tests.conftest import GraphQL
from tests.factories import registration, valid_credit_code

REGISTER = """
mutation($input: RegisterInstitutionInput!) {
  registerInstitution(input: $input) {
    id name creditCode status category authority nonProfit listMark
    region { code name level parent { code } }
  }
}"""
APPROVE = """
mutation($id: ID!, $licenseNo: String!, $at: DateTime) {
  approveInstitution(id: $id, licenseNo: $licenseNo, occurredAt: $at) { id status licenseNo }
}"""
STATS = """
query($code: String!) {
  region(code: $code) {
    code name level
    stats { institutions { active subject nonSubject approved pending subjectBaseline } }
  }
}"""


async def stats(gql: GraphQL, code: str) -> dict[str, int]:
    data = await gql.data(STATS, {"code": code})
    return data["region"]["stats"]["institutions"]


async def test_register_then_approve_rolls_up_to_district_city_and_province(gql: GraphQL) -> None:
    created = (await gql.data(REGISTER, {"input": registration(id="yz-001")}))[
        "registerInstitution"
    ]
    assert created["status"] == "PENDING"
    assert created["authority"] == "EDUCATION"
    assert created["region"] == {
        "code": "640402",
        "name": "原州区",
        "level": "DISTRICT",
        "parent": {"code": "640400"},
    }

    for code in ("640402", "640400", "640000", "64", "6404"):
        assert await stats(gql, code) == {
            "active": 1,
            "subject": 1,
            "nonSubject": 0,
            "approved": 0,
            "pending": 1,
            "subjectBaseline": 1,
        }
    assert (await stats(gql, "340103"))["active"] == 0

    approved = await gql.data(APPROVE, {"id": "yz-001", "licenseNo": "教民640402001号"})
    assert approved["approveInstitution"]["status"] == "APPROVED"
    for code in ("640402", "640400", "640000"):
        got = await stats(gql, code)
        assert (got["approved"], got["pending"], got["active"]) == (1, 0, 1)


async def test_institutions_filter_by_region_subtree_and_search(gql: GraphQL) -> None:
    regions = ["640402", "640422", "120101"]
    for n, region in enumerate(regions):
        await gql.data(
            REGISTER,
            {
                "input": registration(
                    id=f"i{n}",
                    name=f"机构{n}",
                    region=region,
                    creditCode=valid_credit_code(region),
                    category="NON_SUBJECT",
                    nonSubjectKind="SPORTS",
                )
            },
        )
    query = """query($f: InstitutionFilter, $after: String) {
      institutions(filter: $f, first: 1, after: $after) {
        totalCount edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }"""

    async def ids(flt: dict[str, Any]) -> list[str]:
        found, after = [], None
        while True:
            page = (await gql.data(query, {"f": flt, "after": after}))["institutions"]
            found += [edge["node"]["id"] for edge in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]

    assert await ids({"region": "640400"}) == ["i0", "i1"]
    assert await ids({"region": "640000"}) == ["i0", "i1"]
    assert await ids({"region": "120000"}) == ["i2"]
    assert await ids({"region": "640400", "search": "机构1"}) == ["i1"]
    assert await ids({"search": valid_credit_code("120101").lower()}) == ["i2"]
    assert await ids({"status": "APPROVED"}) == []

    region_view = await gql.data(
        '{ region(code: "640422") { institutions { totalCount edges { node { id } } } } }'
    )
    assert region_view["region"]["institutions"]["totalCount"] == 1


async def test_regions_and_children_answer_from_the_shipped_list(gql: GraphQL) -> None:
    data = await gql.data(
        """{ region(code: "120000") { name level children { code name } }
             regions(level: CITY, parent: "640000") { code name } }"""
    )
    assert data["region"]["name"] == "天津市"
    assert data["region"]["children"] == [{"code": "120100", "name": "市辖区"}]
    assert {"code": "640400", "name": "固原市"} in data["regions"]
    # An unknown code is refused as in a filter (issue 10, defect 16), not silently null.
    unknown = await gql('{ region(code: "999999") { name } }')
    assert unknown["errors"][0]["extensions"] == {"code": "BAD_INPUT", "field": "code"}


async def test_resending_a_registration_with_its_id_is_a_no_op(
    gql: GraphQL, platform: Platform
) -> None:
    first = await gql.data(REGISTER, {"input": registration(id="same")})
    again = await gql.data(REGISTER, {"input": registration(id="same")})
    assert first == again
    # The registration and the reservation of its credit code, once.
    assert await platform.event_stores["registry"].max_position() == 2
    assert (await stats(gql, "640400"))["active"] == 1

    body = await gql(REGISTER, {"input": registration(id="same", name="改了名字")})
    assert body["errors"][0]["extensions"] == {"code": "CONFLICT", "field": "id"}
    assert await platform.event_stores["registry"].max_position() == 2


async def test_an_idempotency_key_makes_a_retried_approval_a_no_op(
    gql: GraphQL, platform: Platform
) -> None:
    await gql.data(REGISTER, {"input": registration(id="k1")})
    variables = {"id": "k1", "licenseNo": "L-1"}
    first = await gql(APPROVE, variables, **{"Idempotency-Key": "req-42"})
    again = await gql(APPROVE, variables, **{"Idempotency-Key": "req-42"})
    assert first == again and "errors" not in again
    # Registration, credit code reservation, approval.
    assert await platform.event_stores["registry"].max_position() == 3

    other = await gql(APPROVE, {"id": "k1", "licenseNo": "L-2"}, **{"Idempotency-Key": "req-42"})
    assert other["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert await platform.event_stores["registry"].max_position() == 3


async def test_state_survives_a_restart_and_nothing_is_applied_twice(settings: Settings) -> None:
    first = build_platform(settings)
    await first.start()
    outcome = await first.execute(
        RegisterInstitution(
            id="keep",
            name="固原博学学校",
            credit_code=valid_credit_code(),
            region="640402",
            category="SUBJECT",
            mode="OFFLINE",
        ),
        CommandContext(),
    )
    assert await first.applied(outcome.events)
    await first.stop()

    second = build_platform(settings)
    await second.start()
    try:
        await second.settle()
        doc = await second.read_store.get("institutions", "keep")
        assert doc is not None and doc["version"] == 1
        for code in ("640402", "640400", "640000"):
            counters = await second.read_store.get("region_stats", code)
            assert counters is not None and counters["institutions_active"] == 1
    finally:
        await second.stop()


async def test_an_explicit_null_page_size_means_the_default(gql: GraphQL) -> None:
    for n in range(22):
        await gql.data(
            REGISTER,
            {"input": registration(id=f"n{n:02d}", creditCode=valid_credit_code(org=f"MA{n:07d}"))},
        )
    data = await gql.data(
        "query($f: Int) { institutions(first: $f) { totalCount edges { node { id } } } }",
        {"f": None},
    )
    assert data["institutions"]["totalCount"] == 22
    assert len(data["institutions"]["edges"]) == 20
