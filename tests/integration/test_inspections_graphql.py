"""Inspection work through GraphQL on the embedded platform: the connections and their
filters, overdue judged by the clock alone, region scopes, and refusals that write
nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from services.bootstrap import Platform, build_platform, embedded_app
from services.common.auth import Role, TokenVerifier
from services.common.config import Settings
from services.common.timeutil import SHANGHAI
from tests.conftest import SECRET, GraphQL, bearer
from tests.factories import valid_credit_code

NOW = datetime(2026, 3, 2, 10, tzinfo=SHANGHAI)

REGISTER = (
    """mutation($input: RegisterInstitutionInput!) { registerInstitution(input: $input) { id } }"""
)
RECORD = """mutation($input: RecordInspectionInput!) {
  recordInspection(input: $input) {
    id kind personnel departments deadline region { code }
    visits { venue institution { id } findings { type description }
             rectification { id status deadline overdue } } } }"""
STATS = """query($code: String!) { region(code: $code) { stats { inspections {
  inspections institutionsInspected findings rectificationsOpened rectificationsClosed
  rectificationsOverdue rectificationRate complaints complaintsResolved lawTalks
  jointActions penalties fines complaintsByChannel { channel count } } } } }"""
OVERDUE = """query($overdue: Boolean) { rectifications(filter: {overdue: $overdue}) {
  totalCount edges { node { id overdue status deadline } } } }"""


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def timed(settings: Settings, clock: Clock) -> AsyncIterator[Platform]:
    running = build_platform(settings, clock=clock)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def client(timed: Platform) -> AsyncIterator[httpx.AsyncClient]:
    app = embedded_app(timed, TokenVerifier(timed.regions, secret=SECRET))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": bearer()},
    ) as running:
        yield running


@pytest.fixture
def g(client: httpx.AsyncClient) -> GraphQL:
    return GraphQL(client)


async def register(g: GraphQL, id: str, region: str = "500105", n: int = 1) -> str:
    await g.data(
        REGISTER,
        {
            "input": {
                "id": id,
                "name": f"培训机构{id}",
                "creditCode": valid_credit_code(region, f"MA{n:07d}"),
                "region": region,
                "category": "NON_SUBJECT",
                "nonSubjectKind": "ARTS",
                "mode": "OFFLINE",
                "occurredAt": "2025-01-05T09:00:00",
            }
        },
    )
    return id


def batch(**overrides: Any) -> dict[str, Any]:
    given = {
        "region": "500105",
        "kind": "DAILY",
        "startedAt": "2026-03-01T09:00:00",
        "personnel": 3,
        "visits": [],
        "rectifyWithinDays": 10,
    }
    return {**given, **overrides}


def finding(kind: str = "FIRE_SAFETY") -> dict[str, str]:
    return {"type": kind, "description": "灭火器过期"}


async def positions(platform: Platform) -> dict[str, int]:
    return {name: await s.max_position() for name, s in platform.event_stores.items()}


async def test_overdue_follows_the_clock_without_any_event(
    g: GraphQL, timed: Platform, clock: Clock
) -> None:
    a = await register(g, "a")
    recorded = await g.data(
        RECORD, {"input": batch(visits=[{"institutionId": a, "findings": [finding()]}])}
    )
    order = recorded["recordInspection"]["visits"][0]["rectification"]
    assert order["deadline"] == "2026-03-11"
    assert order["overdue"] is False
    before = await positions(timed)

    async def figures() -> tuple[int, int, int, bool]:
        stats = (await g.data(STATS, {"code": "500000"}))["region"]["stats"]["inspections"]
        late = (await g.data(OVERDUE, {"overdue": True}))["rectifications"]
        on_time = (await g.data(OVERDUE, {"overdue": False}))["rectifications"]
        mine = await g.data(
            "query($id: ID!) { rectification(id: $id) { overdue } }", {"id": order["id"]}
        )
        return (
            stats["rectificationsOverdue"],
            late["totalCount"],
            on_time["totalCount"],
            mine["rectification"]["overdue"],
        )

    assert await figures() == (0, 0, 1, False)
    clock.now = datetime(2026, 3, 11, 23, 59, tzinfo=SHANGHAI)  # the deadline day itself
    assert await figures() == (0, 0, 1, False)
    clock.now = datetime(2026, 3, 12, 0, 1, tzinfo=SHANGHAI)  # the day after: late
    assert await figures() == (1, 1, 0, True)
    assert await positions(timed) == before  # nothing was written to make it so

    # Submitted is still late; closed is not.
    await g.data(
        'mutation($id: ID!) { submitRectification(id: $id, note: "done") { status } }',
        {"id": order["id"]},
    )
    assert (await figures())[0] == 1
    await g.data(
        "mutation($id: ID!) { verifyRectification(id: $id, passed: true) { status } }",
        {"id": order["id"]},
    )
    assert await figures() == (0, 0, 1, False)


async def test_connections_filter_by_every_field_of_the_contract(g: GraphQL) -> None:
    a, b = await register(g, "a", n=1), await register(g, "b", n=2)
    other = await register(g, "c", region="340103", n=3)
    await g.data(
        RECORD,
        {
            "input": batch(
                id="night",
                kind="NIGHT",
                startedAt="2026-02-10T21:00:00",
                visits=[{"institutionId": a, "findings": [finding()]}, {"venue": "某小区3栋"}],
            )
        },
    )
    await g.data(
        RECORD,
        {
            "input": batch(
                id="joint",
                kind="JOINT",
                visits=[{"institutionId": a}, {"institutionId": b, "findings": [finding("FEES")]}],
            )
        },
    )
    await g.data(
        RECORD,
        {
            "input": batch(
                id="hefei",
                region="340103",
                startedAt="2026-03-01T10:00:00",
                visits=[{"institutionId": other}],
            )
        },
    )

    async def ids(query: str, variables: dict[str, Any]) -> list[str]:
        data = await g.data(query, variables)
        connection = next(iter(data.values()))
        assert connection["totalCount"] == len(connection["edges"])
        return [e["node"]["id"] for e in connection["edges"]]

    listing = (
        "query($f: InspectionFilter) { inspections(filter: $f) { totalCount "
        "edges { node { id } } } }"
    )
    assert await ids(listing, {"f": {"region": "500105"}}) == ["night", "joint"]
    assert await ids(listing, {"f": {"region": "34"}}) == ["hefei"]
    assert await ids(listing, {"f": {"institutionId": a}}) == ["night", "joint"]
    assert await ids(listing, {"f": {"institutionId": b}}) == ["joint"]
    assert await ids(listing, {"f": {"kind": "NIGHT"}}) == ["night"]
    assert await ids(listing, {"f": {"from": "2026-02-11"}}) == ["joint", "hefei"]
    assert await ids(listing, {"f": {"to": "2026-02-10"}}) == ["night"]

    orders = (
        "query($f: RectificationFilter) { rectifications(filter: $f) { "
        "totalCount edges { node { id } } } }"
    )
    assert await ids(orders, {"f": {"institutionId": b}}) == ["joint~1"]
    assert await ids(orders, {"f": {"status": "OPEN", "region": "500105"}}) == [
        "night~1",
        "joint~1",
    ]

    await g.data(
        'mutation { fileComplaint(input: {id: "c1", region: "500105", channel: '
        'HOTLINE_12345, institutionId: "a", text: "周末补课"}) { id } }'
    )
    await g.data(
        'mutation { fileComplaint(input: {id: "c2", region: "500105", channel: '
        'PETITION, text: "收费过高"}) { id } }'
    )
    await g.data(
        'mutation { resolveComplaint(id: "c2", substantiated: false, note: "查无实据") { status } }'
    )
    complaints = (
        "query($f: ComplaintFilter) { complaints(filter: $f) { totalCount edges { node { id } } } }"
    )
    assert await ids(complaints, {"f": {"channel": "HOTLINE_12345"}}) == ["c1"]
    assert await ids(complaints, {"f": {"status": "RESOLVED"}}) == ["c2"]
    assert await ids(complaints, {"f": {"institutionId": "a"}}) == ["c1"]

    mine = await g.data(
        'query { institution(id: "a") { inspections { totalCount } '
        "rectifications { edges { node { id } } } complaints { totalCount } "
        "events { edges { node { type } } } } }"
    )
    institution = mine["institution"]
    assert institution["inspections"]["totalCount"] == 2
    assert [e["node"]["id"] for e in institution["rectifications"]["edges"]] == ["night~1"]
    assert institution["complaints"]["totalCount"] == 1
    trail = [e["node"]["type"] for e in institution["events"]["edges"]]
    assert trail.count("inspections.InspectionRecorded") == 2
    assert "inspections.ComplaintFiled" in trail

    stats = (await g.data(STATS, {"code": "500105"}))["region"]["stats"]["inspections"]
    assert stats["institutionsInspected"] == 3  # a (twice), b and the flat
    assert stats["jointActions"] == 1
    assert stats["complaintsByChannel"] == [
        {"channel": "HOTLINE_12345", "count": 1},
        {"channel": "PETITION", "count": 1},
    ]


REFUSED = [
    (
        "unknown institution",
        batch(visits=[{"institutionId": "nobody"}]),
        "input.visits[0].institutionId",
    ),
    (
        "another district's institution",
        batch(visits=[{"institutionId": "hf"}]),
        "input.visits[0].institutionId",
    ),
    (
        "both institution and venue",
        batch(visits=[{"institutionId": "a", "venue": "x"}]),
        "input.visits[0].venue",
    ),
    ("no visit", batch(visits=[]), "input.visits"),
    ("a city, not a district", batch(region="500100", visits=[{"venue": "x"}]), "input.region"),
    ("no personnel", batch(personnel=0, visits=[{"venue": "x"}]), "input.personnel"),
    (
        "deadline too far",
        batch(rectifyWithinDays=4000, visits=[{"venue": "x"}]),
        "input.rectifyWithinDays",
    ),
    ("control character", batch(visits=[{"venue": "x\u0007"}]), "input.visits[0].venue"),
    (
        "huge description",
        batch(visits=[{"venue": "x", "findings": [{"type": "OTHER", "description": "长" * 2001}]}]),
        "input.visits[0].findings[0].description",
    ),
    (
        "in the future",
        batch(startedAt="2026-04-01T09:00:00", visits=[{"venue": "x"}]),
        "input.startedAt",
    ),
]


@pytest.mark.parametrize(("case", "given", "field"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_a_refused_batch_names_its_field_and_writes_nothing(
    g: GraphQL, timed: Platform, case: str, given: dict[str, Any], field: str
) -> None:
    await register(g, "a")
    await register(g, "hf", region="340103", n=2)
    before = await positions(timed)
    body = await g(RECORD, {"input": given})
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_INPUT", error
    assert error["extensions"]["field"] == field
    assert await positions(timed) == before
    stats = (await g.data(STATS, {"code": "500105"}))["region"]["stats"]["inspections"]
    assert stats["inspections"] == 0


async def test_penalties_and_law_talks_count_and_fines_out_of_range_are_refused(
    g: GraphQL, timed: Platform
) -> None:
    penalty = (
        "mutation($input: RecordPenaltyInput!) { recordPenalty(input: $input) { "
        "id fine kind article } }"
    )
    ok = await g.data(
        penalty,
        {
            "input": {
                "region": "500105",
                "venue": "某小区",
                "article": "ARTICLE_18",
                "kind": "FINE",
                "circumstance": "ESPECIALLY_SERIOUS",
                "fine": "80000",
                "reason": "隐形变异",
            }
        },
    )
    assert ok["recordPenalty"]["fine"] == "80000.00"
    before = await positions(timed)
    refused = await g(
        penalty,
        {
            "input": {
                "region": "500105",
                "venue": "某小区",
                "article": "ARTICLE_18",
                "kind": "FINE",
                "circumstance": "SERIOUS",
                "fine": "50000.01",
                "reason": "隐形变异",
            }
        },
    )
    assert refused["errors"][0]["extensions"] == {"code": "BAD_INPUT", "field": "input.fine"}
    assert "Article 18" in refused["errors"][0]["message"]
    assert await positions(timed) == before
    assert (await g.data('mutation { recordLawTalk(input: {region: "500105", persons: 42}) }'))[
        "recordLawTalk"
    ] == 42
    stats = (await g.data(STATS, {"code": "500000"}))["region"]["stats"]["inspections"]
    assert (stats["penalties"], stats["fines"], stats["lawTalks"]) == (1, "80000.00", 42)


async def test_region_scopes_bound_every_inspection_read_and_write(
    g: GraphQL, client: httpx.AsyncClient, timed: Platform
) -> None:
    a = await register(g, "a")
    await g.data(
        RECORD, {"input": batch(id="jb", visits=[{"institutionId": a, "findings": [finding()]}])}
    )
    await g.data(
        'mutation { fileComplaint(input: {id: "c1", region: "500105", channel: '
        'ONLINE, text: "t"}) { id } }'
    )
    hefei = GraphQL(client)
    headers = {"Authorization": bearer(Role.OPERATOR, region="340103", subject="hefei")}
    before = await positions(timed)
    writes = [
        (RECORD, {"input": batch(visits=[{"venue": "x"}])}),
        ('mutation { submitRectification(id: "jb~1", note: "n") { id } }', {}),
        ('mutation { resolveComplaint(id: "c1", substantiated: true, note: "n") { id } }', {}),
        ('mutation { recordLawTalk(input: {region: "500105", persons: 1}) }', {}),
    ]
    for query, variables in writes:
        body = await hefei(query, variables, **headers)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
    assert await positions(timed) == before
    reads = await hefei(
        '{ inspection(id: "jb") { id } rectification(id: "jb~1") { id } complaint(id: "c1") { id }'
        " inspections { totalCount } rectifications { totalCount } complaints { totalCount } }",
        **headers,
    )
    assert reads["data"] == {
        "inspection": None,
        "rectification": None,
        "complaint": None,
        "inspections": {"totalCount": 0},
        "rectifications": {"totalCount": 0},
        "complaints": {"totalCount": 0},
    }
    # Naming a Jiangbei institution in a Luyang batch is refused as outside the batch's region.
    own = await hefei(
        RECORD, {"input": batch(region="340103", visits=[{"institutionId": a}])}, **headers
    )
    assert own["errors"][0]["extensions"] == {
        "code": "BAD_INPUT",
        "field": "input.visits[0].institutionId",
    }


async def test_the_inspections_command_api_is_derived_from_its_tables(
    client: httpx.AsyncClient, g: GraphQL
) -> None:
    a = await register(g, "a")
    spec = (await client.get("/api/inspections/openapi.json")).json()
    assert {
        "/v1/inspections",
        "/v1/rectifications/{id}/submit",
        "/v1/rectifications/{id}/verify",
        "/v1/complaints",
        "/v1/complaints/{id}/resolve",
        "/v1/law-talks",
        "/v1/penalties",
    } <= set(spec["paths"])
    created = await client.post(
        "/api/inspections/v1/inspections",
        json={
            "id": "rest-1",
            "region": "500105",
            "kind": "RANDOM",
            "started_at": "2026-03-01T09:00:00",
            "personnel": 2,
            "visits": [
                {"institution_id": a, "findings": [{"type": "FEES", "description": "乱收费"}]}
            ],
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["rectifications"] == {"rest-1~1": "OPEN"}
    submitted = await client.post(
        "/api/inspections/v1/rectifications/rest-1~1/submit", json={"note": "已退费"}
    )
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["rectifications"] == {"rest-1~1": "SUBMITTED"}
    unknown = await client.post(
        "/api/inspections/v1/rectifications/rest-1~9/submit", json={"note": "x"}
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["field"] == "id"


@pytest.mark.parametrize("order", ["../x~1", "x", "x~", "x~one", "x~1\u0000", "~1", "x~١"])
async def test_a_malformed_rectification_id_is_bad_input(g: GraphQL, order: str) -> None:
    body = await g(
        'mutation($id: ID!) { submitRectification(id: $id, note: "n") { id } }', {"id": order}
    )
    assert body["errors"][0]["extensions"] == {"code": "BAD_INPUT", "field": "id"}, body


async def test_an_institution_s_inspections_page_through_without_repeats(g: GraphQL) -> None:
    a = await register(g, "a")
    for n in range(3):  # two visits to it in the same batch count once
        visits = [{"institutionId": a}, {"institutionId": a, "findings": [finding()]}]
        await g.data(RECORD, {"input": batch(id=f"b{n}", visits=visits)})
    seen: list[str] = []
    after = None
    for _ in range(4):
        page = await g.data(
            'query($after: String) { institution(id: "a") { inspections(first: 1, after: $after)'
            " { totalCount edges { node { id } cursor } pageInfo { hasNextPage endCursor } } } }",
            {"after": after},
        )
        connection = page["institution"]["inspections"]
        assert connection["totalCount"] == 3
        seen += [e["node"]["id"] for e in connection["edges"]]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["edges"][-1]["cursor"]  # resuming from an edge, not endCursor
    assert seen == ["b0", "b1", "b2"]
