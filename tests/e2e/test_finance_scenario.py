"""Tianjin's prepaid money through GraphQL over HTTP, against ``shuangjian up``.

Eight approved NON_SUBJECT (ARTS) institutions in four districts of 天津市 (和平, 河西,
南开, 滨海新区, all under 市辖区 120100) each open a BANK_CUSTODY supervised account
and take 660 prepaid orders between them, 1,420,000.00 yuan in all (each order at most
5,000.00 yuan and 60 lessons). Every district shows its own share, and the city and the
province the whole: 660 orders, 1,420,000.00 collected, 1,420,000.00 in escrow. Then 10
orders have 3 lessons confirmed (一课一销) and 5 orders are refunded in full (one of them
after its 3 confirmed lessons): every figure moves by exactly what was released or
refunded at every level, ``escrowBalance == orderAmount - released - refunded``, and
every amount is an exact ``Money`` string ("1420000.00"), never a float.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from services.common.regions import RegionTree
from tests.e2e.conftest import Suite
from tests.factories import valid_credit_code

REGISTER = """mutation($input: RegisterInstitutionInput!) {
  registerInstitution(input: $input) { id status } }"""
APPROVE = """mutation($id: ID!, $license: String!) {
  approveInstitution(id: $id, licenseNo: $license, occurredAt: "2023-01-20T09:00:00")
  { status } }"""
OPEN = """mutation($id: ID!) {
  openSupervisionAccount(input: {institutionId: $id, mode: BANK_CUSTODY, bank: "工商银行",
    accountNo: "6222021234567890"}) { mode accountNo balance } }"""
RECORD = """mutation($input: RecordPrepaidOrderInput!) {
  recordPrepaidOrder(input: $input) { id lessons pricePerLesson amount escrowHeld } }"""
CONFIRM = """mutation($id: ID!) {
  confirmLessons(orderId: $id, lessons: 3, occurredAt: "2024-07-10T10:00:00")
  { lessonsConsumed released refunded escrowHeld } }"""
REFUND = """mutation($id: ID!) {
  refundOrder(orderId: $id, reason: "家长申请退费", occurredAt: "2024-07-15T10:00:00")
  { lessonsConsumed lessonsRefunded released refunded escrowHeld } }"""
STATS = """query($code: String!) { region(code: $code) {
  stats { finance { supervisedAccounts orders orderAmount escrowBalance released refunded
    riskGreen } }
  history(from: "2024-01-01", to: "2024-07-01") { month orders orderAmount released refunded }
} }"""

TIANJIN, CITY = "120000", "120100"
DISTRICTS = ["120101", "120103", "120104", "120116"]  # 和平区, 河西区, 南开区, 滨海新区
INSTITUTIONS = [(f"tj-{district}-{n}", district) for district in DISTRICTS for n in range(2)]
TOTAL = Decimal("1420000.00")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Planned:
    id: str
    institution: str
    district: str
    lessons: int
    price: Decimal
    paid: date

    @property
    def amount(self) -> Decimal:
        return self.lessons * self.price


def plan() -> list[Planned]:
    """660 orders of exactly 1,420,000.00 yuan: 600 × (20 × 107.50) + 40 × (40 × 75.25) +
    16 × (12 × 33.33) + 4 × (8 × 100.02), spread over the institutions and six months."""
    shapes = (
        [(20, "107.50")] * 600 + [(40, "75.25")] * 40 + [(12, "33.33")] * 16 + [(8, "100.02")] * 4
    )
    orders = []
    for n, (lessons, price) in enumerate(shapes):
        institution, district = INSTITUTIONS[n % len(INSTITUTIONS)]
        paid = date(2024, 1 + n % 6, 1 + n % 28)
        orders.append(
            Planned(f"tj-o-{n:04d}", institution, district, lessons, Decimal(price), paid)
        )
    return orders


@dataclass
class Figures:
    """What a region should show: counts and exact yuan."""

    orders: int = 0
    amount: Decimal = Decimal(0)
    released: Decimal = Decimal(0)
    refunded: Decimal = Decimal(0)

    @property
    def escrow(self) -> Decimal:
        return self.amount - self.released - self.refunded


def yuan(value: Decimal) -> str:
    """A Money string: exact, two decimals."""
    return f"{value.quantize(CENT)}"


def expected(
    orders: list[Planned], released: dict[str, Decimal], refunded: dict[str, Decimal]
) -> dict[str, Figures]:
    figures = {code: Figures() for code in [*DISTRICTS, CITY, TIANJIN]}
    for order in orders:
        for code in (order.district, CITY, TIANJIN):
            f = figures[code]
            f.orders += 1
            f.amount += order.amount
            f.released += released.get(order.id, Decimal(0))
            f.refunded += refunded.get(order.id, Decimal(0))
    return figures


def finance(suite: Suite, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    region = suite.data(STATS, {"code": code})["region"]
    return region["stats"]["finance"], region["history"]


def assert_figures(suite: Suite, figures: dict[str, Figures]) -> None:
    for code, want in figures.items():
        got, history = finance(suite, code)
        for name in ("orderAmount", "escrowBalance", "released", "refunded"):
            assert isinstance(got[name], str), (code, name, got)  # Money: never a float
        assert got["orders"] == want.orders, (code, got)
        assert got["orderAmount"] == yuan(want.amount), (code, got)
        assert got["released"] == yuan(want.released), (code, got)
        assert got["refunded"] == yuan(want.refunded), (code, got)
        assert got["escrowBalance"] == yuan(want.escrow), (code, got)
        assert Decimal(got["escrowBalance"]) == (
            Decimal(got["orderAmount"]) - Decimal(got["released"]) - Decimal(got["refunded"])
        )
        accounts = 8 if code in (CITY, TIANJIN) else 2
        assert (got["supervisedAccounts"], got["riskGreen"]) == (accounts, accounts), code
        # The month buckets add up to the same: orders by the month paid, money released
        # and refunded in July.
        assert sum(m["orders"] for m in history) == want.orders, code
        assert sum(Decimal(m["orderAmount"]) for m in history) == want.amount, code
        july = history[-1]
        assert july["month"] == "2024-07-01"
        assert (july["released"], july["refunded"]) == (yuan(want.released), yuan(want.refunded))


@pytest.fixture
def tianjin(tmp_path: Path) -> Iterator[Suite]:
    running = Suite(tmp_path, tmp_path / "data", "--no-demo")
    running.start()
    try:
        yield running
    finally:
        running.kill()


def test_tianjin_escrow_adds_up_at_every_level(tianjin: Suite) -> None:
    regions = RegionTree.load()
    for district in DISTRICTS:
        assert [r.code for r in regions.lineage(district)] == [TIANJIN, CITY, district]

    orders = plan()
    assert len(orders) == 660
    assert sum((o.amount for o in orders), Decimal(0)) == TOTAL
    assert all(o.amount <= Decimal("5000.00") and o.lessons <= 60 for o in orders)
    per_district = Counter({d: Decimal(0) for d in DISTRICTS})
    for o in orders:
        per_district[o.district] += o.amount
    assert sum(per_district.values(), Decimal(0)) == TOTAL

    for n, (institution, district) in enumerate(INSTITUTIONS):
        registered = tianjin.data(
            REGISTER,
            {
                "input": {
                    "id": institution,
                    "name": f"天津{district}第{n}艺术培训中心",
                    "creditCode": valid_credit_code(district, f"MA{n:07d}"),
                    "region": district,
                    "category": "NON_SUBJECT",
                    "nonSubjectKind": "ARTS",
                    "mode": "OFFLINE",
                    "occurredAt": "2023-01-05T09:00:00",
                }
            },
        )
        assert registered["registerInstitution"]["status"] == "PENDING"
        approved = tianjin.data(APPROVE, {"id": institution, "license": f"教民{district}{n}号"})
        assert approved["approveInstitution"]["status"] == "APPROVED"
        account = tianjin.data(OPEN, {"id": institution})["openSupervisionAccount"]
        assert account == {
            "mode": "BANK_CUSTODY",
            "accountNo": "************7890",
            "balance": "0.00",
        }

    for n, order in enumerate(orders):
        start = order.paid
        recorded = tianjin.data(
            RECORD,
            {
                "input": {
                    "id": order.id,
                    "institutionId": order.institution,
                    "payerRef": f"tj-payer-{n:04d}",
                    "lessons": order.lessons,
                    "pricePerLesson": str(order.price),
                    "courseStart": start.isoformat(),
                    "courseEnd": (start + timedelta(days=60)).isoformat(),
                    "paidAt": f"{order.paid.isoformat()}T10:00:00",
                }
            },
        )["recordPrepaidOrder"]
        assert recorded == {
            "id": order.id,
            "lessons": order.lessons,
            "pricePerLesson": yuan(order.price),
            "amount": yuan(order.amount),
            "escrowHeld": yuan(order.amount),
        }

    before = expected(orders, {}, {})
    assert (before[CITY].orders, before[TIANJIN].orders) == (660, 660)
    for code in (CITY, TIANJIN):
        assert yuan(before[code].amount) == yuan(before[code].escrow) == "1420000.00"
    for district in DISTRICTS:
        assert before[district].amount == per_district[district]
    assert_figures(tianjin, before)
    got, _ = finance(tianjin, TIANJIN)
    assert (got["orderAmount"], got["escrowBalance"]) == ("1420000.00", "1420000.00")

    # 一课一销: 10 orders (every district) have 3 lessons confirmed; then 5 orders are
    # refunded in full, one of them (tj-o-0007) after its 3 confirmed lessons.
    by_id = {o.id: o for o in orders}
    confirmed = [orders[n] for n in (0, 7, 66, 133, 200, 301, 402, 503, 604, 659)]
    refunded_orders = [orders[n] for n in (1, 7, 250, 452, 658)]
    assert (
        {o.district for o in confirmed} == {o.district for o in refunded_orders} == set(DISTRICTS)
    )
    released: dict[str, Decimal] = {}
    for order in confirmed:
        after = tianjin.data(CONFIRM, {"id": order.id})["confirmLessons"]
        released[order.id] = 3 * order.price
        assert after == {
            "lessonsConsumed": 3,
            "released": yuan(3 * order.price),
            "refunded": "0.00",
            "escrowHeld": yuan((order.lessons - 3) * order.price),
        }
    refunded: dict[str, Decimal] = {}
    for order in refunded_orders:
        after = tianjin.data(REFUND, {"id": order.id})["refundOrder"]
        consumed = 3 if order.id in released else 0
        refunded[order.id] = (order.lessons - consumed) * order.price
        assert after == {
            "lessonsConsumed": consumed,
            "lessonsRefunded": order.lessons - consumed,
            "released": yuan(released.get(order.id, Decimal(0))),
            "refunded": yuan(refunded[order.id]),
            "escrowHeld": "0.00",
        }
    assert set(released) | set(refunded) <= set(by_id)

    after = expected(orders, released, refunded)
    total_released = sum(released.values(), Decimal(0))
    total_refunded = sum(refunded.values(), Decimal(0))
    assert after[TIANJIN].released == total_released
    assert after[TIANJIN].refunded == total_refunded
    for code, figures in after.items():
        # Exactly what was released and refunded there moved out of escrow, nothing more.
        assert figures.amount == before[code].amount
        assert before[code].escrow - figures.escrow == figures.released + figures.refunded
    assert_figures(tianjin, after)
    got, _ = finance(tianjin, CITY)
    assert got["orderAmount"] == "1420000.00"
    assert got["escrowBalance"] == yuan(TOTAL - total_released - total_refunded)
