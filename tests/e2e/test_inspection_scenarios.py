"""The seed articles' inspection figures reproduced through GraphQL over HTTP, against
``shuangjian up`` as a district would run it.

* 重庆江北 (seed: 43 institutions inspected, 31 finished rectification): of 43 inspected
  institutions 34 have findings and 31 finish rectification, so 整改率 = 31/34 at the
  district, its city and its province; the other three are overdue once their deadline
  has passed.
* 合肥庐阳's fire-safety campaign (129 batches, 1,975 personnel, 853 institutions
  checked): batches that revisit places still count 853 distinct ones, registered
  institutions and unregistered venues alike, and 8 JOINT batches are 8 joint actions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Suite
from tests.factories import valid_credit_code

REGISTER = """mutation($input: RegisterInstitutionInput!) {
  registerInstitution(input: $input) { id } }"""
RECORD = """mutation($input: RecordInspectionInput!) {
  recordInspection(input: $input) { id visits { rectification { id deadline status } } } }"""
SUBMIT = """mutation($id: ID!, $at: DateTime) {
  submitRectification(id: $id, note: "已整改", occurredAt: $at) { status } }"""
VERIFY = """mutation($id: ID!, $at: DateTime) {
  verifyRectification(id: $id, passed: true, occurredAt: $at) { status closedAt } }"""
STATS = """query($code: String!) { region(code: $code) { stats { inspections {
  inspections personnelDispatched institutionsInspected visits findings
  rectificationsOpened rectificationsClosed rectificationsOverdue rectificationRate
  jointActions findingsByType { type count } } } } }"""


@pytest.fixture
def district(tmp_path: Path) -> Any:
    running = Suite(tmp_path, tmp_path / "data", "--no-demo")
    running.start()
    try:
        yield running
    finally:
        running.kill()


def register(suite: Suite, region: str, count: int, prefix: str) -> list[str]:
    ids = []
    for n in range(count):
        institution_id = f"{prefix}-{n:04d}"
        suite.data(
            REGISTER,
            {
                "input": {
                    "id": institution_id,
                    "name": f"{prefix}第{n}培训机构",
                    "creditCode": valid_credit_code(region, f"MA{n:07d}"),
                    "region": region,
                    "category": "NON_SUBJECT",
                    "nonSubjectKind": "ARTS",
                    "mode": "OFFLINE",
                    "occurredAt": "2023-01-05T09:00:00",
                }
            },
        )
        ids.append(institution_id)
    return ids


def stats(suite: Suite, code: str) -> dict[str, Any]:
    figures: dict[str, Any] = suite.data(STATS, {"code": code})["region"]["stats"]["inspections"]
    return figures


def test_jiangbei_rate_is_31_of_34_at_every_level(district: Suite) -> None:
    institutions = register(district, "500105", 43, "jb")
    orders: list[str] = []
    for batch, first in enumerate(range(0, 43, 5)):
        visits = [
            {
                "institutionId": institution_id,
                "findings": [{"type": "FIRE_SAFETY", "description": "灭火器过期"}]
                if first + n < 34
                else [],
            }
            for n, institution_id in enumerate(institutions[first : first + 5])
        ]
        answer = district.data(
            RECORD,
            {
                "input": {
                    "id": f"jb-batch-{batch}",
                    "region": "500105",
                    "kind": "DAILY",
                    "startedAt": f"2023-03-{batch + 1:02d}T09:00:00",
                    "personnel": 4,
                    "visits": visits,
                    "rectifyWithinDays": 30,
                }
            },
        )["recordInspection"]
        orders += [v["rectification"]["id"] for v in answer["visits"] if v["rectification"]]
    assert len(orders) == 34
    for order in orders[:31]:
        district.data(SUBMIT, {"id": order, "at": "2023-03-20T10:00:00"})
        closed = district.data(VERIFY, {"id": order, "at": "2023-03-25T10:00:00"})
        assert closed["verifyRectification"]["status"] == "CLOSED"

    for code in ("500105", "500100", "500000"):  # district, 市辖区, municipality
        figures = stats(district, code)
        assert figures["inspections"] == 9
        assert figures["personnelDispatched"] == 36
        assert figures["institutionsInspected"] == 43
        assert figures["findings"] == 34
        assert figures["rectificationsOpened"] == 34
        assert figures["rectificationsClosed"] == 31
        assert figures["rectificationRate"] == pytest.approx(31 / 34)
        # Their deadlines (early April 2023) have long passed: the three open ones are late.
        assert figures["rectificationsOverdue"] == 3
        assert figures["findingsByType"] == [{"type": "FIRE_SAFETY", "count": 34}]


def test_luyang_campaign_counts_batches_personnel_and_distinct_places(district: Suite) -> None:
    registered = register(district, "340103", 150, "ly")
    venues = [f"庐阳区某小区{n}栋{n % 7}单元" for n in range(703)]  # unregistered: 853 places
    places: list[dict[str, Any]] = [{"institutionId": i} for i in registered]
    places += [{"venue": v} for v in venues]
    # 129 batches: every place once, and 100 places a second time (in other batches),
    # a venue the second time spelled with extra spaces.
    revisits = [dict(p) for p in places[::8][:100]]
    for place in revisits:
        if "venue" in place:
            place["venue"] = " ".join(place["venue"])
    visits = places + revisits
    personnel = [15] * 128 + [1975 - 15 * 128]
    for batch in range(129):
        district.data(
            RECORD,
            {
                "input": {
                    "id": f"ly-fire-{batch:03d}",
                    "region": "340103",
                    "kind": "JOINT" if batch < 8 else "SPECIAL",
                    "startedAt": "2023-11-05T19:30:00",
                    "personnel": personnel[batch],
                    "departments": ["区教体局", "区消防救援大队"],
                    "visits": visits[batch::129],
                }
            },
        )
    for code in ("340103", "340100", "340000"):
        figures = stats(district, code)
        assert figures["inspections"] == 129
        assert figures["personnelDispatched"] == 1975
        assert figures["institutionsInspected"] == 853
        assert figures["visits"] == 953
        assert figures["jointActions"] == 8
        assert figures["rectificationRate"] is None  # nothing found, nothing to rectify
