"""The monthly report on the embedded platform: every number equals GraphQL's, by hand too.

A city (固原市) gets two months of work, back-dated by an admin: registrations, a revocation
and a 转型, inspections with findings, a rectification closed late and one left overdue,
complaints by two channels, a law talk, a penalty, a prepaid order with lessons released
and refunded. Then the report of March 2025 (the clock is in April) is compared figure by
figure with an independent GraphQL query for the same region and months, with what the
scenario says by hand, and through the HTTP endpoint in both formats.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import httpx
import openpyxl
import pypdfium2
import pytest

from services.bootstrap import Platform, build_platform, embedded_app
from services.common.auth import Principal, Role, TokenVerifier
from services.common.config import Settings
from services.common.errors import BadInput, Forbidden
from services.common.timeutil import SHANGHAI
from services.gateway.context import GatewayContext
from services.gateway.schema import build_schema
from services.reports.model import MonthlyReport
from services.reports.monthly import METRICS, build
from services.reports.pdf import format_value
from tests.conftest import SECRET, GraphQL, bearer
from tests.factories import valid_credit_code

NOW = datetime(2025, 4, 10, 10, tzinfo=SHANGHAI)
CITY, YUANZHOU, XIJI = "640400", "640402", "640422"

# Each report figure and where GraphQL answers it: written out again here, apart from the
# report's own table, so a wrong path there cannot agree with itself.
GRAPHQL_PATHS = {
    "institutions_active": "atMonthEnd.institutionsActive",
    "subject": "atMonthEnd.subject",
    "subject_compression_rate": "atMonthEnd.subjectCompressionRate",
    "institutions_registered": "institutionsRegistered",
    "institutions_closed": "institutionsClosed",
    "inspections": "inspections",
    "personnel_dispatched": "personnelDispatched",
    "institutions_inspected": "institutionsInspected",
    "findings": "findings",
    "rectifications_opened": "rectificationsOpened",
    "rectifications_closed": "rectificationsClosed",
    "rectification_rate": "atMonthEnd.rectificationRate",
    "rectifications_overdue": "atMonthEnd.rectificationsOverdue",
    "complaints": "complaints",
    "law_talks": "lawTalks",
    "joint_actions": "jointActions",
    "penalties": "penalties",
    "orders": "orders",
    "order_amount": "orderAmount",
    "released": "released",
    "refunded": "refunded",
    "escrow_balance": "atMonthEnd.escrowBalance",
    "risk_red": "atMonthEnd.riskRed",
    "risk_yellow": "atMonthEnd.riskYellow",
    "risk_green": "atMonthEnd.riskGreen",
}
HISTORY = """query($code: String!, $from: Date!, $to: Date!) { region(code: $code) {
  stats { institutions { active subject subjectCompressionRate }
          inspections { rectificationsOverdue rectificationRate }
          finance { escrowBalance riskGreen } }
  children { code }
  history(from: $from, to: $to) {
    month institutionsRegistered institutionsClosed inspections personnelDispatched
    institutionsInspected findings rectificationsOpened rectificationsClosed complaints
    lawTalks jointActions penalties orders orderAmount released refunded
    findingsByType { type count } complaintsByChannel { channel count }
    atMonthEnd { institutionsActive subject subjectCompressionRate rectificationRate
                 rectificationsOverdue escrowBalance riskRed riskYellow riskGreen } } } }"""


def at_path(month: dict[str, Any], path: str) -> Any:
    for name in path.split("."):
        month = month[name]
    return month


def as_report_value(key: str, raw: Any) -> Any:
    kind = METRICS[key].measure.kind
    if raw is None:
        return None
    return Decimal(raw) if kind == "money" else float(raw) if kind == "rate" else int(raw)


class Clock:
    def __call__(self) -> datetime:
        return NOW


@pytest.fixture
async def timed(settings: Settings) -> AsyncIterator[Platform]:
    running = build_platform(settings, clock=Clock())
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
async def scenario(client: httpx.AsyncClient, timed: Platform) -> GraphQL:
    """Two months of a city's work; see the module docstring."""
    g = GraphQL(client)

    async def register(id: str, region: str, n: int, category: str, on: str) -> None:
        kind = None if category == "SUBJECT" else "ARTS"
        await g.data(
            "mutation($i: RegisterInstitutionInput!) { registerInstitution(input: $i) { id } }",
            {
                "i": {
                    "id": id,
                    "name": f"培训机构{id}",
                    "creditCode": valid_credit_code(region, f"MA{n:07d}"),
                    "region": region,
                    "category": category,
                    "nonSubjectKind": kind,
                    "mode": "OFFLINE",
                    "occurredAt": on,
                }
            },
        )

    async def run(mutation: str, **variables: Any) -> dict[str, Any]:
        return await g.data(mutation, variables)

    await register("a", YUANZHOU, 1, "SUBJECT", "2021-03-01T09:00:00")
    await register("b", YUANZHOU, 2, "SUBJECT", "2021-03-05T09:00:00")
    await register("d", XIJI, 3, "SUBJECT", "2021-05-01T09:00:00")
    await register("c", XIJI, 4, "NON_SUBJECT", "2025-03-03T09:00:00")
    await register("e", XIJI, 5, "NON_SUBJECT", "2024-06-01T09:00:00")
    approve = (
        "mutation($id: ID!, $at: DateTime) {"
        ' approveInstitution(id: $id, licenseNo: "宁教许1", occurredAt: $at) { id } }'
    )
    await run(approve, id="a", at="2021-04-01T09:00:00")
    await run(approve, id="e", at="2024-07-01T09:00:00")
    await run(
        'mutation { revokeInstitution(id: "b", reason: "无证"'
        ', occurredAt: "2025-02-10T09:00:00") { id } }'
    )
    await run(
        'mutation { reclassifyInstitution(id: "d", category: NON_SUBJECT, nonSubjectKind: SPORTS'
        ', occurredAt: "2025-03-15T09:00:00") { id } }'
    )

    record = """mutation($i: RecordInspectionInput!) { recordInspection(input: $i) {
      visits { rectification { id } } } }"""
    feb = await run(
        record,
        i={
            "id": "feb",
            "region": YUANZHOU,
            "kind": "DAILY",
            "startedAt": "2025-02-20T09:00:00",
            "personnel": 4,
            "visits": [
                {
                    "institutionId": "a",
                    "findings": [{"type": "FIRE_SAFETY", "description": "灭火器过期"}],
                }
            ],
            "rectifyWithinDays": 5,
        },
    )
    await run(
        record,
        i={
            "id": "mar-joint",
            "region": YUANZHOU,
            "kind": "JOINT",
            "startedAt": "2025-03-10T19:00:00",
            "personnel": 6,
            "departments": ["区教体局", "区市场监管局"],
            "visits": [
                {"institutionId": "a"},
                {
                    "venue": "幸福小区3栋",
                    "findings": [{"type": "HIDDEN_TRAINING", "description": "隐形变异学科培训"}],
                },
            ],
            "rectifyWithinDays": 10,
        },
    )
    await run(
        record,
        i={
            "id": "mar-xiji",
            "region": XIJI,
            "kind": "DAILY",
            "startedAt": "2025-03-12T09:00:00",
            "personnel": 2,
            "visits": [
                {"institutionId": "c", "findings": [{"type": "FEES", "description": "超期收费"}]}
            ],
            "rectifyWithinDays": 30,
        },
    )
    order_id = feb["recordInspection"]["visits"][0]["rectification"]["id"]
    await run(
        'mutation($id: ID!) { submitRectification(id: $id, note: "已更换"'
        ', occurredAt: "2025-03-03T09:00:00") { id } }',
        id=order_id,
    )
    await run(
        "mutation($id: ID!) { verifyRectification(id: $id, passed: true"
        ', occurredAt: "2025-03-05T09:00:00") { id } }',
        id=order_id,
    )
    complaint = "mutation($i: FileComplaintInput!) { fileComplaint(input: $i) { id } }"
    for id, region, channel, on in (
        ("k1", YUANZHOU, "PETITION", "2025-02-11T09:00:00"),
        ("k2", YUANZHOU, "HOTLINE_12345", "2025-03-02T09:00:00"),
        ("k3", XIJI, "PLATFORM", "2025-03-18T09:00:00"),
    ):
        await run(
            complaint,
            i={
                "id": id,
                "region": region,
                "channel": channel,
                "text": "周末上课",
                "occurredAt": on,
            },
        )
    await run(
        "mutation($i: RecordLawTalkInput!) { recordLawTalk(input: $i) }",
        i={
            "region": YUANZHOU,
            "institutionId": "a",
            "persons": 3,
            "occurredAt": "2025-03-20T09:00:00",
        },
    )
    await run(
        "mutation($i: RecordPenaltyInput!) { recordPenalty(input: $i) { id } }",
        i={
            "id": "p1",
            "region": XIJI,
            "venue": "幸福小区5栋",
            "article": "ARTICLE_17",
            "kind": "WARNING",
            "reason": "未经审批开展学科类培训",
            "occurredAt": "2025-03-25T09:00:00",
        },
    )
    await run(
        "mutation($i: OpenSupervisionAccountInput!) { openSupervisionAccount(input: $i) { bank } }",
        i={
            "institutionId": "e",
            "mode": "BANK_CUSTODY",
            "bank": "宁夏银行",
            "accountNo": "6222021001123456789",
            "occurredAt": "2025-01-10T09:00:00",
        },
    )
    await run(
        "mutation($i: RecordPrepaidOrderInput!) { recordPrepaidOrder(input: $i) { id } }",
        i={
            "id": "o1",
            "institutionId": "e",
            "payerRef": "payer-ref-Zq7Xw2Kp",
            "lessons": 20,
            "pricePerLesson": "100.00",
            "courseStart": "2025-02-15",
            "courseEnd": "2025-05-10",
            "paidAt": "2025-02-15T09:00:00",
        },
    )
    await run(
        'mutation { confirmLessons(orderId: "o1", lessons: 5'
        ', occurredAt: "2025-03-01T09:00:00") { id } }'
    )
    await run(
        'mutation { refundOrder(orderId: "o1", lessons: 5, reason: "家长退课"'
        ', occurredAt: "2025-03-20T09:00:00") { id } }'
    )
    await timed.settle()
    return g


async def report_of(
    platform: Platform, region: str, month: str, principal: Principal | None = None
) -> MonthlyReport:
    who = principal or Principal.of("tester", Role.VIEWER, None, platform.regions)
    return await build(build_schema(), GatewayContext(platform, who), region, month)


async def test_every_figure_equals_graphql_and_the_scenario(
    scenario: GraphQL, timed: Platform
) -> None:
    report = await report_of(timed, CITY, "2025-03")
    answer = await scenario.data(HISTORY, {"code": CITY, "from": "2024-04-01", "to": "2025-03-01"})
    months = {m["month"]: m for m in answer["region"]["history"]}
    march, february = months["2025-03-01"], months["2025-02-01"]

    # Every headline figure and the month before, as GraphQL answers them.
    shown = {f.measure.key: f for s in report.sections for f in s.figures}
    assert set(shown) == set(GRAPHQL_PATHS)
    for key, path in GRAPHQL_PATHS.items():
        assert shown[key].value == as_report_value(key, at_path(march, path)), key
        assert shown[key].previous == as_report_value(key, at_path(february, path)), key

    # ... and what the scenario says, so the answers are not merely equal but right.
    def figure(key: str) -> tuple[Any, Any]:
        return shown[key].value, shown[key].previous

    assert figure("institutions_active") == (4, 3)  # b revoked in Feb, c registered in Mar
    assert figure("subject") == (1, 2)  # d turned to sports in March
    assert figure("subject_compression_rate") == (pytest.approx(2 / 3), pytest.approx(1 / 3))
    assert figure("institutions_registered") == (1, 0)
    assert figure("institutions_closed") == (0, 1)
    assert figure("inspections") == (2, 1)
    assert figure("personnel_dispatched") == (8, 4)
    assert figure("institutions_inspected") == (3, 1)  # a, the flat, c
    assert figure("findings") == (2, 1)
    assert figure("rectifications_opened") == (2, 1)
    assert figure("rectifications_closed") == (1, 0)
    assert figure("rectification_rate") == (pytest.approx(1 / 3), 0.0)
    # February's order was late at the end of February; the flat's is late at the end of
    # March; 西吉's is due in April.
    assert figure("rectifications_overdue") == (1, 1)
    assert figure("complaints") == (2, 1)
    assert figure("law_talks") == (3, 0)
    assert figure("joint_actions") == (1, 0)
    assert figure("penalties") == (1, 0)
    assert figure("orders") == (0, 1)
    assert figure("order_amount") == (Decimal("0.00"), Decimal("2000.00"))
    assert figure("released") == (Decimal("500.00"), Decimal("0.00"))
    assert figure("refunded") == (Decimal("500.00"), Decimal("0.00"))
    assert figure("escrow_balance") == (Decimal("1000.00"), Decimal("2000.00"))

    findings, channels = report.breakdowns
    assert sorted((r.label, r.value, r.previous) for r in findings.rows) == [
        ("收费", 1, 0),
        ("消防安全", 0, 1),
        ("隐形变异培训", 1, 0),
    ]
    assert sorted((r.label, r.value, r.previous) for r in channels.rows) == [
        ("12345热线", 1, 0),
        ("信访", 0, 1),
        ("监管平台", 1, 0),
    ]

    # Twelve months of trends, each point GraphQL's.
    for trend in report.trends:
        assert [m.isoformat() for m in trend.months] == sorted(months)
        for measure in trend.measures:
            expected = [
                as_report_value(measure.key, at_path(months[m], GRAPHQL_PATHS[measure.key]))
                for m in sorted(months)
            ]
            assert list(trend.values[measure.key]) == expected, (trend.title, measure.key)


async def test_children_are_ranked_by_batches_with_graphql_figures(
    scenario: GraphQL, timed: Platform
) -> None:
    report = await report_of(timed, CITY, "2025-03")
    children = await scenario.data(
        HISTORY, {"code": CITY, "from": "2025-03-01", "to": "2025-03-01"}
    )
    codes = [c["code"] for c in children["region"]["children"]]
    assert sorted(row.code for row in report.children) == sorted(codes)
    # 原州区 and 西吉县 had one batch each in March: a shared first place, by code.
    assert [(r.rank, r.code) for r in report.children[:2]] == [(1, YUANZHOU), (1, XIJI)]
    assert {r.rank for r in report.children[2:]} == {3}
    for row in report.children:
        answer = await scenario.data(
            HISTORY, {"code": row.code, "from": "2025-03-01", "to": "2025-03-01"}
        )
        march = answer["region"]["history"][0]
        for measure in report.child_measures:
            raw = at_path(march, GRAPHQL_PATHS[measure.key])
            assert row.values[measure.key] == as_report_value(measure.key, raw), (
                row.code,
                measure.key,
            )


async def test_the_current_month_stands_as_of_now(scenario: GraphQL, timed: Platform) -> None:
    report = await report_of(timed, CITY, "2025-04")
    stats = (
        await scenario.data(HISTORY, {"code": CITY, "from": "2025-04-01", "to": "2025-04-01"})
    )["region"]["stats"]
    assert report.figure("institutions_active").value == stats["institutions"]["active"]
    assert report.figure("subject").value == stats["institutions"]["subject"]
    assert (
        report.figure("rectifications_overdue").value
        == stats["inspections"]["rectificationsOverdue"]
    )
    assert report.figure("escrow_balance").value == Decimal(stats["finance"]["escrowBalance"])
    assert report.figure("risk_green").value == stats["finance"]["riskGreen"]
    # The end of March is last month now: the order due 11 April is not late yet either way.
    assert report.figure("rectifications_overdue").previous == 1


async def test_scope_month_and_region_are_checked(scenario: GraphQL, timed: Platform) -> None:
    district = Principal.of("xiji", Role.VIEWER, XIJI, timed.regions)
    with pytest.raises(Forbidden) as refused:
        await report_of(timed, CITY, "2025-03", district)
    assert refused.value.field == "region"
    mine = await report_of(timed, XIJI, "2025-03", district)
    assert mine.figure("inspections").value == 1 and mine.children == []
    for month, reason in (("2025-13", "YYYY-MM"), ("2025-05", "not begun"), ("三月", "YYYY-MM")):
        with pytest.raises(BadInput) as bad:
            await report_of(timed, CITY, month)
        assert bad.value.field == "month" and reason in bad.value.message
    with pytest.raises(BadInput) as bad:
        await report_of(timed, "999999", "2025-03")
    assert bad.value.field == "region"


async def test_the_endpoint_serves_both_formats_with_graphql_numbers(
    scenario: GraphQL, client: httpx.AsyncClient, timed: Platform
) -> None:
    report = await report_of(timed, CITY, "2025-03")
    params = {"region": CITY, "month": "2025-03"}

    xlsx = await client.get("/api/reports/monthly", params={**params, "format": "xlsx"})
    assert xlsx.status_code == 200, xlsx.text
    assert xlsx.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert "filename*=UTF-8''640400-2025-03-" in xlsx.headers["content-disposition"]
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    assert book.sheetnames[0] == "概览"
    cells = [c for row in book["概览"].iter_rows() for c in row]
    labels = {c.value: c for c in cells if isinstance(c.value, str)}
    for key in ("inspections", "personnel_dispatched", "rectifications_overdue", "law_talks"):
        label = labels[METRICS[key].measure.label]
        row = [c.value for c in label.parent[label.row]]
        assert report.figure(key).value in row, (key, row)
        assert report.figure(key).previous in row, (key, row)

    pdf = await client.get("/api/reports/monthly", params={**params, "format": "pdf"})
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    document = pypdfium2.PdfDocument(pdf.content)
    text = "".join(page.get_textpage().get_text_range() for page in document)
    assert report.title in text.replace("\r", "").replace("\n", "")
    for key in (
        "escrow_balance",
        "order_amount",
        "subject_compression_rate",
        "institutions_inspected",
    ):
        assert format_value(report.figure(key).value, METRICS[key].measure.kind) in text, key
    for child in report.children:
        assert child.name in text

    # The caller's scope, the arguments and the token, as over GraphQL.
    xiji = {"Authorization": bearer(Role.VIEWER, XIJI)}
    forbidden = await client.get("/api/reports/monthly", params=params, headers=xiji)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["field"] == "region"
    bad = await client.get("/api/reports/monthly", params={**params, "format": "docx"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "format"
    huge = await client.get("/api/reports/monthly", params={**params, "region": "6" * 5_000})
    assert huge.status_code == 422 and huge.json()["error"]["field"] == "region"
    assert len(huge.content) < 500  # the refusal does not echo the megabytes back
    missing = await client.get("/api/reports/monthly", params={"region": CITY})
    assert missing.status_code == 422 and missing.json()["error"]["field"] == "month"
    anonymous = await client.get(
        "/api/reports/monthly", params=params, headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401


def test_month_boundaries_follow_china_time() -> None:
    from services.reports.monthly import add_months, parse_month

    assert add_months(date(2025, 1, 1), -1) == date(2024, 12, 1)
    assert add_months(date(2025, 12, 1), 1) == date(2026, 1, 1)
    assert parse_month("2025-03", date(2025, 3, 31)) == date(2025, 3, 1)
