"""Prepaid money through GraphQL on the embedded platform: every refusal names its rule
and writes nothing, money is exact at every region level, the working-day clock settles
what nobody answered (once, and after a pause), payers and account numbers stay private,
the registry's lifecycle and the inspections' signals drive orders and risk levels, and
region scopes bound every read and write."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.bootstrap import Platform, build_platform, embedded_app
from services.common.auth import Role, TokenVerifier
from services.common.config import Settings
from services.common.envelope import Envelope
from services.common.timeutil import SHANGHAI
from tests.conftest import SECRET, GraphQL, bearer
from tests.factories import valid_credit_code

NOW = datetime(2025, 1, 20, 10, tzinfo=SHANGHAI)  # a Monday, a week before the Spring Festival
PAYER = "payer-ref-Zq7Xw2Kp"  # a pseudonymous reference that must never be shown
ACCOUNT_NO = "6222 0210 0112 3456 789"
ACCOUNT_DIGITS = ACCOUNT_NO.replace(" ", "")
AUTOMATIC = "automatic:finance-clock"

REGISTER = (
    "mutation($input: RegisterInstitutionInput!) { registerInstitution(input: $input) { id } }"
)
APPROVE = (
    'mutation($id: ID!) { approveInstitution(id: $id, licenseNo: "津教许2024001") { status } }'
)
SUSPEND = 'mutation($id: ID!) { suspendInstitution(id: $id, reason: "停业整顿") { status } }'
RESUME = "mutation($id: ID!) { resumeInstitution(id: $id) { status } }"
OPEN = """mutation($input: OpenSupervisionAccountInput!) {
  openSupervisionAccount(input: $input) { mode bank accountNo balance } }"""
ORDER_FIELDS = """id lessons lessonsConsumed lessonsRefunded lessonsAwaitingConfirmation
  pricePerLesson amount released refunded escrowHeld paidAt courseStart courseEnd
  deliveries { number lessons confirmed confirmBy }
  refundRequests { number lessons reason answerBy answered accepted automatic }
  institution { id }"""
RECORD = (
    "mutation($input: RecordPrepaidOrderInput!) { recordPrepaidOrder(input: $input) { "
    + ORDER_FIELDS
    + " } }"
)
CONFIRM = (
    "mutation($id: ID!, $n: Int!, $at: DateTime) { confirmLessons(orderId: $id, lessons: $n, "
    "occurredAt: $at) { " + ORDER_FIELDS + " } }"
)
REFUND = (
    "mutation($id: ID!, $n: Int, $at: DateTime) { refundOrder(orderId: $id, lessons: $n, "
    'reason: "家长退课", occurredAt: $at) { ' + ORDER_FIELDS + " } }"
)
DELIVERED = (
    "mutation($id: ID!, $n: Int!) { reportLessonsDelivered(orderId: $id, lessons: $n) { "
    + ORDER_FIELDS
    + " } }"
)
REQUEST_REFUND = (
    "mutation($id: ID!, $n: Int) { requestRefund(orderId: $id, lessons: $n, "
    'reason: "孩子不想学了") { ' + ORDER_FIELDS + " } }"
)
ORDER = "query($id: ID!) { order(id: $id) { " + ORDER_FIELDS + " } }"
FINANCE = """query($code: String!) { region(code: $code) { stats { finance {
  supervisedAccounts orders orderAmount escrowBalance released refunded
  riskGreen riskYellow riskRed } } } }"""
HISTORY = """query($code: String!, $from: Date!, $to: Date!) { region(code: $code) {
  history(from: $from, to: $to) { month orders orderAmount released refunded } } }"""
INSTITUTION = """query($id: ID!) { institution(id: $id) {
  status riskLevel riskReasons account { mode bank accountNo balance }
  orders { totalCount edges { node { id } } }
  events(first: 100) { totalCount edges { node { type actor data } } } } }"""
AT_RISK = """query($level: RiskLevel) { institutions(filter: {riskLevel: $level}) {
  totalCount edges { node { id } } } }"""
COMPLAIN = """mutation($id: ID!) { fileComplaint(input: {region: "120101",
  channel: HOTLINE_12345, institutionId: $id, text: "退费难"}) { id } }"""
INSPECT = """mutation($input: RecordInspectionInput!) { recordInspection(input: $input) {
  visits { rectification { id deadline } } } }"""


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


# --- set-up ------------------------------------------------------------------------------


async def register(
    g: GraphQL,
    id: str,
    region: str = "120101",
    n: int = 1,
    *,
    subject: bool = False,
    approve: bool = True,
) -> str:
    given: dict[str, Any] = {
        "id": id,
        "name": f"培训机构{id}",
        "creditCode": valid_credit_code(region, f"MA{n:07d}"),
        "region": region,
        "mode": "OFFLINE",
    }
    if subject:  # back-dated before 2021-07-24, so it can still be approved; for-profit
        given.update(category="SUBJECT", occurredAt="2021-03-01T09:00:00")
    else:
        given.update(
            category="NON_SUBJECT", nonSubjectKind="ARTS", occurredAt="2024-01-05T09:00:00"
        )
    await g.data(REGISTER, {"input": given})
    if approve:
        assert (await g.data(APPROVE, {"id": id}))["approveInstitution"]["status"] == "APPROVED"
    return id


async def open_account(
    g: GraphQL, id: str, mode: str = "BANK_CUSTODY", deposit: str | None = None
) -> dict[str, Any]:
    given: dict[str, Any] = {
        "institutionId": id,
        "mode": mode,
        "bank": "中国银行天津和平支行",
        "accountNo": ACCOUNT_NO,
    }
    if deposit is not None:
        given["deposit"] = deposit
    opened: dict[str, Any] = (await g.data(OPEN, {"input": given}))["openSupervisionAccount"]
    return opened


async def supervised(g: GraphQL, id: str = "a", region: str = "120101", n: int = 1) -> str:
    """An approved ARTS institution with a BANK_CUSTODY account."""
    await register(g, id, region, n)
    await open_account(g, id)
    return id


def order(**overrides: Any) -> dict[str, Any]:
    given = {
        "institutionId": "a",
        "payerRef": PAYER,
        "lessons": 10,
        "pricePerLesson": "100.00",
        "courseStart": "2025-01-20",
        "courseEnd": "2025-04-20",
        "paidAt": "2025-01-20T09:00:00",
    }
    return {**given, **overrides}


async def record(g: GraphQL, **overrides: Any) -> dict[str, Any]:
    recorded: dict[str, Any] = (await g.data(RECORD, {"input": order(**overrides)}))[
        "recordPrepaidOrder"
    ]
    return recorded


async def positions(platform: Platform) -> dict[str, int]:
    return {name: await s.max_position() for name, s in platform.event_stores.items()}


async def figures(g: GraphQL, code: str) -> dict[str, Any]:
    stats: dict[str, Any] = (await g.data(FINANCE, {"code": code}))["region"]["stats"]["finance"]
    return stats


async def show(g: GraphQL, id: str) -> dict[str, Any]:
    shown: dict[str, Any] = (await g.data(ORDER, {"id": id}))["order"]
    return shown


async def institution(g: GraphQL, id: str) -> dict[str, Any]:
    found: dict[str, Any] = (await g.data(INSTITUTION, {"id": id}))["institution"]
    return found


async def finance_events(platform: Platform, kind: str) -> list[Envelope]:
    return [e for e in await platform.event_stores["finance"].read_all() if e.type == kind]


async def tick(platform: Platform, clock: Clock, at: datetime) -> None:
    clock.now = at
    await platform.timers.tick()
    await platform.settle()


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=SHANGHAI)


# --- 1. refusals --------------------------------------------------------------------------


async def _bare(g: GraphQL) -> None:
    await register(g, "bare", n=2)


async def _pending(g: GraphQL) -> None:
    await register(g, "pending", n=3, approve=False)
    await open_account(g, "pending")


async def _suspended(g: GraphQL) -> None:
    await g.data(SUSPEND, {"id": "a"})


async def _for_profit_subject(g: GraphQL) -> None:
    await register(g, "subj", n=4, subject=True)
    await open_account(g, "subj")


async def _nothing(g: GraphQL) -> None:
    return None


REFUSED = [
    ("no supervised account", _bare, {"institutionId": "bare"}, "CONFLICT", "input.institutionId"),
    (
        "pending institution",
        _pending,
        {"institutionId": "pending"},
        "CONFLICT",
        "input.institutionId",
    ),
    ("suspended institution", _suspended, {}, "CONFLICT", "input.institutionId"),
    ("61 lessons", _nothing, {"lessons": 61}, "BAD_INPUT", "input.lessons"),
    ("over 3 months", _nothing, {"courseEnd": "2025-04-21"}, "BAD_INPUT", "input.courseEnd"),
    (
        "over 5,000 yuan",
        _nothing,
        {"lessons": 60, "pricePerLesson": "83.34"},
        "BAD_INPUT",
        "input.pricePerLesson",
    ),
    (
        "three decimals",
        _nothing,
        {"pricePerLesson": "10.005"},
        "BAD_INPUT",
        "input.pricePerLesson",  # refused by the Money scalar itself
    ),
    ("free", _nothing, {"pricePerLesson": "0"}, "BAD_INPUT", "input.pricePerLesson"),
    (
        "for-profit SUBJECT after 营转非",
        _for_profit_subject,
        {"institutionId": "subj"},
        "CONFLICT",
        "input.institutionId",
    ),
    (
        "unknown institution",
        _nothing,
        {"institutionId": "nobody"},
        "BAD_INPUT",
        "input.institutionId",
    ),
]


@pytest.mark.parametrize(
    ("case", "prepare", "given", "code", "field"), REFUSED, ids=[r[0] for r in REFUSED]
)
async def test_a_refused_order_names_its_rule_and_field_and_writes_nothing(
    g: GraphQL,
    timed: Platform,
    case: str,
    prepare: Any,
    given: dict[str, Any],
    code: str,
    field: str,
) -> None:
    await supervised(g)
    await prepare(g)
    await timed.settle()
    before = await positions(timed)
    body = await g(RECORD, {"input": order(**given)})
    assert body["data"] is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == code, error
    assert error["extensions"]["field"] == field, error
    await timed.settle()
    assert await positions(timed) == before
    for code_ in ("120101", "120000"):
        stats = await figures(g, code_)
        assert (stats["orders"], stats["orderAmount"], stats["escrowBalance"]) == (
            0,
            "0.00",
            "0.00",
        )


async def test_the_domain_s_rule_is_in_each_message(g: GraphQL, timed: Platform) -> None:
    await supervised(g)
    await register(g, "subj", n=4, subject=True)
    await open_account(g, "subj")
    cases = [
        ({"lessons": 61}, "60 lessons"),
        ({"courseEnd": "2025-04-21"}, "2025-04-20"),
        ({"lessons": 60, "pricePerLesson": "83.34"}, "5,000.00"),
        ({"institutionId": "subj"}, "营转非"),
    ]
    for given, words in cases:
        body = await g(RECORD, {"input": order(**given)})
        assert words in body["errors"][0]["message"], body


async def test_no_more_lessons_are_released_or_refunded_than_escrow_holds(
    g: GraphQL, timed: Platform
) -> None:
    await supervised(g)
    await record(g, id="o1", lessons=10, pricePerLesson="99.99")
    await g.data(CONFIRM, {"id": "o1", "n": 4})
    await timed.settle()
    before = await positions(timed)
    attempts = [
        (CONFIRM, {"id": "o1", "n": 7}),
        (REFUND, {"id": "o1", "n": 7}),
        (DELIVERED, {"id": "o1", "n": 7}),
        (REQUEST_REFUND, {"id": "o1", "n": 7}),
    ]
    for query, variables in attempts:
        body = await g(query, variables)
        assert body["data"] is None, body
        assert body["errors"][0]["extensions"] == {"code": "CONFLICT", "field": "lessons"}, body
        assert "6 lesson(s)" in body["errors"][0]["message"]
    await timed.settle()
    assert await positions(timed) == before
    shown = await show(g, "o1")
    assert (shown["released"], shown["refunded"], shown["escrowHeld"]) == (
        "399.96",
        "0.00",
        "599.94",
    )
    # Exactly what is held can go.
    refunded = (await g.data(REFUND, {"id": "o1", "n": 6}))["refundOrder"]
    assert (refunded["escrowHeld"], refunded["refunded"]) == ("0.00", "599.94")
    body = await g(CONFIRM, {"id": "o1", "n": 1})
    assert body["errors"][0]["extensions"] == {"code": "CONFLICT", "field": "lessons"}


# --- 2. exact money ----------------------------------------------------------------------


def dec(value: str) -> Decimal:
    return Decimal(value)


async def test_money_is_exact_at_every_region_level_and_in_every_month(
    g: GraphQL, timed: Platform
) -> None:
    await supervised(g, "a", "120101", 1)
    await supervised(g, "b", "120103", 2)
    await record(g, id="o1", lessons=10, pricePerLesson="123.45", paidAt="2024-12-10T15:00:00")
    await record(g, id="o2", lessons=3, pricePerLesson="0.01", paidAt="2025-01-15T09:00:00")
    await record(
        g, id="o3", institutionId="b", lessons=1, pricePerLesson="4999.99", paidAt="2025-01-18"
    )
    expected = {
        "120101": (2, dec("1234.53")),
        "120103": (1, dec("4999.99")),
        "120100": (3, dec("6234.52")),
        "120000": (3, dec("6234.52")),
    }
    for code, (count, amount) in expected.items():
        stats = await figures(g, code)
        assert stats["orders"] == count, code
        assert stats["orderAmount"] == f"{amount:.2f}", code
        assert stats["escrowBalance"] == f"{amount:.2f}", code
        assert (stats["released"], stats["refunded"]) == ("0.00", "0.00")
    assert (await figures(g, "120000"))["supervisedAccounts"] == 2

    # One lesson confirmed back in December, three now; two refunded; the cent; the big one.
    await g.data(CONFIRM, {"id": "o1", "n": 1, "at": "2024-12-20T18:00:00"})
    before = await figures(g, "120100")
    after_one = (await g.data(CONFIRM, {"id": "o1", "n": 3}))["confirmLessons"]
    assert after_one["released"] == "493.80"  # 4 × 123.45
    after = await figures(g, "120100")
    assert dec(after["released"]) - dec(before["released"]) == 3 * dec("123.45")
    assert dec(before["escrowBalance"]) - dec(after["escrowBalance"]) == 3 * dec("123.45")

    before = after
    await g.data(REFUND, {"id": "o1", "n": 2})
    after = await figures(g, "120100")
    assert dec(after["refunded"]) - dec(before["refunded"]) == 2 * dec("123.45")
    assert dec(before["escrowBalance"]) - dec(after["escrowBalance"]) == 2 * dec("123.45")
    assert after["released"] == before["released"]

    await g.data(CONFIRM, {"id": "o2", "n": 1})
    await g.data(REFUND, {"id": "o3", "n": None})  # every remaining lesson

    released = {"120101": 4 * dec("123.45") + dec("0.01"), "120103": dec(0)}
    refunded = {"120101": 2 * dec("123.45"), "120103": dec("4999.99")}
    for code in ("120101", "120103"):
        count, amount = expected[code]
        stats = await figures(g, code)
        assert (stats["orders"], dec(stats["orderAmount"])) == (count, amount)
        assert stats["released"] == f"{released[code]:.2f}", (code, stats)
        assert stats["refunded"] == f"{refunded[code]:.2f}", (code, stats)
        assert dec(stats["escrowBalance"]) == amount - released[code] - refunded[code]
    for code in ("120100", "120000"):
        stats = await figures(g, code)
        assert stats["orderAmount"] == "6234.52"
        assert stats["released"] == "493.81"
        assert stats["refunded"] == "5246.89"
        assert stats["escrowBalance"] == "493.82"
        assert dec(stats["escrowBalance"]) == (
            dec(stats["orderAmount"]) - dec(stats["released"]) - dec(stats["refunded"])
        )
    # The orders themselves add up to the same.
    for id, held in (("o1", "493.80"), ("o2", "0.02"), ("o3", "0.00")):
        shown = await show(g, id)
        assert shown["escrowHeld"] == held, id
        assert dec(shown["amount"]) == dec(shown["released"]) + dec(shown["refunded"]) + dec(held)

    # Months: orders by the month they were paid, money moved by the month it moved.
    history = (await g.data(HISTORY, {"code": "120000", "from": "2024-11-01", "to": "2025-02-01"}))[
        "region"
    ]["history"]
    months = {
        m["month"]: (m["orders"], m["orderAmount"], m["released"], m["refunded"]) for m in history
    }
    assert months == {
        "2024-11-01": (0, "0.00", "0.00", "0.00"),
        "2024-12-01": (1, "1234.50", "123.45", "0.00"),
        "2025-01-01": (2, "5000.02", "370.36", "5246.89"),
        "2025-02-01": (0, "0.00", "0.00", "0.00"),
    }
    district = (
        await g.data(HISTORY, {"code": "120103", "from": "2024-12-01", "to": "2025-01-01"})
    )["region"]["history"]
    assert [(m["orders"], m["orderAmount"], m["refunded"]) for m in district] == [
        (0, "0.00", "0.00"),
        (1, "4999.99", "4999.99"),
    ]


# --- 3. the clock alone ------------------------------------------------------------------


async def test_the_working_day_clock_confirms_and_accepts_what_nobody_answered(
    g: GraphQL, timed: Platform, clock: Clock
) -> None:
    await supervised(g)
    await record(g, id="o1", lessons=10, pricePerLesson="88.88")
    delivered = (await g.data(DELIVERED, {"id": "o1", "n": 5}))["reportLessonsDelivered"]
    # 15 working days from Monday 20 January 2025, across the Spring Festival (28 Jan-4 Feb
    # off, Sunday 26 Jan and Saturday 8 Feb made up).
    assert delivered["deliveries"] == [
        {"number": 1, "lessons": 5, "confirmed": 0, "confirmBy": "2025-02-14"}
    ]
    assert delivered["lessonsAwaitingConfirmation"] == 5
    requested = (await g.data(REQUEST_REFUND, {"id": "o1", "n": 2}))["requestRefund"]
    [asked] = requested["refundRequests"]
    assert asked["answerBy"] == "2025-01-26"  # the Sunday make-up working day is the 5th
    assert (asked["answered"], asked["accepted"], asked["automatic"]) == (False, None, False)
    await timed.settle()

    # On the answer day itself nothing happens; the day after, the request counts as accepted.
    await tick(timed, clock, at("2025-01-26", 23))
    assert (await show(g, "o1"))["refunded"] == "0.00"
    await tick(timed, clock, at("2025-01-27", 0))
    shown = await show(g, "o1")
    assert shown["refundRequests"][0] | {"reason": None} == {
        "number": 1,
        "lessons": 2,
        "reason": None,
        "answerBy": "2025-01-26",
        "answered": True,
        "accepted": True,
        "automatic": True,
    }
    assert (shown["refunded"], shown["lessonsRefunded"]) == ("177.76", 2)  # 2 × 88.88

    await tick(timed, clock, at("2025-02-14", 23))
    shown = await show(g, "o1")
    assert (shown["released"], shown["lessonsConsumed"]) == ("0.00", 0)
    stats = await figures(g, "120000")
    await tick(timed, clock, at("2025-02-15", 0))
    shown = await show(g, "o1")
    assert (shown["released"], shown["lessonsConsumed"]) == ("444.40", 5)  # 5 × 88.88
    assert shown["deliveries"][0]["confirmed"] == 5
    assert shown["lessonsAwaitingConfirmation"] == 0
    assert shown["escrowHeld"] == "266.64"  # 3 lessons left
    grown = await figures(g, "120000")
    assert dec(grown["released"]) - dec(stats["released"]) == 5 * dec("88.88")

    [confirmed] = await finance_events(timed, "finance.LessonsConfirmed")
    assert confirmed.actor == AUTOMATIC
    assert confirmed.data["automatic"] is True
    [refunded] = await finance_events(timed, "finance.LessonsRefunded")
    assert refunded.actor == AUTOMATIC
    # And the audit trail says who did it.
    trail = (await institution(g, "a"))["events"]["edges"]
    actors = {e["node"]["type"]: e["node"]["actor"] for e in trail}
    assert actors["finance.LessonsConfirmed"] == AUTOMATIC


async def test_a_parent_s_own_answer_leaves_the_clock_nothing_to_do(
    g: GraphQL, timed: Platform, clock: Clock
) -> None:
    await supervised(g)
    await record(g, id="o1", lessons=10, pricePerLesson="50.00")
    await g.data(DELIVERED, {"id": "o1", "n": 5})
    await g.data(CONFIRM, {"id": "o1", "n": 5})  # the parent confirms them in time
    await g.data(REQUEST_REFUND, {"id": "o1", "n": 2})
    await g.data(
        'mutation { answerRefundRequest(orderId: "o1", request: 1, accept: false, '
        'note: "已上课") { id } }'
    )
    await timed.settle()
    before = await positions(timed)
    await tick(timed, clock, NOW + timedelta(days=60))
    assert await positions(timed) == before
    shown = await show(g, "o1")
    assert (shown["released"], shown["refunded"], shown["lessonsConsumed"]) == ("250.00", "0.00", 5)
    assert shown["refundRequests"][0]["accepted"] is False
    assert shown["refundRequests"][0]["automatic"] is False


async def test_two_ticks_at_once_settle_each_item_exactly_once(
    g: GraphQL, timed: Platform, clock: Clock
) -> None:
    await supervised(g)
    for n in range(1, 4):
        await record(g, id=f"o{n}", lessons=10, pricePerLesson="10.01")
        await g.data(DELIVERED, {"id": f"o{n}", "n": 3})
        await g.data(REQUEST_REFUND, {"id": f"o{n}", "n": 2})
    await timed.settle()
    clock.now = at("2025-02-15", 8)
    await asyncio.gather(timed.timers.tick(), timed.timers.tick())
    await timed.settle()
    await asyncio.gather(timed.timers.tick(), timed.timers.tick())  # nothing left to do
    await timed.settle()
    confirmed = await finance_events(timed, "finance.LessonsConfirmed")
    refunded = await finance_events(timed, "finance.LessonsRefunded")
    answered = await finance_events(timed, "finance.RefundRequestAnswered")
    assert sorted(e.stream for e in confirmed) == ["o1", "o2", "o3"]
    assert sorted(e.stream for e in refunded) == ["o1", "o2", "o3"]
    assert sorted(e.stream for e in answered) == ["o1", "o2", "o3"]
    stats = await figures(g, "120101")
    assert stats["released"] == "90.09"  # 3 orders × 3 lessons × 10.01
    assert stats["refunded"] == "60.06"  # 3 orders × 2 lessons × 10.01
    assert stats["escrowBalance"] == "150.15"


async def test_after_a_pause_one_tick_catches_up_on_everything_due_meanwhile(
    g: GraphQL, timed: Platform, clock: Clock
) -> None:
    await supervised(g)
    await record(g, id="o1", lessons=10, pricePerLesson="33.33")
    await g.data(DELIVERED, {"id": "o1", "n": 4})
    await g.data(REQUEST_REFUND, {"id": "o1", "n": 1})
    clock.now = NOW + timedelta(days=3)
    await record(g, id="o2", lessons=5, pricePerLesson="20.00", paidAt="2025-01-23T09:00:00")
    await g.data(DELIVERED, {"id": "o2", "n": 5})
    await g.data(REQUEST_REFUND, {"id": "o1", "n": 2})
    await timed.settle()
    await tick(timed, clock, NOW + timedelta(days=40))  # 1 March: the clock was not running
    one, two = await show(g, "o1"), await show(g, "o2")
    assert (one["lessonsConsumed"], one["lessonsRefunded"]) == (4, 3)
    assert [r["automatic"] for r in one["refundRequests"]] == [True, True]
    assert (one["released"], one["refunded"], one["escrowHeld"]) == ("133.32", "99.99", "99.99")
    assert (two["lessonsConsumed"], two["released"], two["escrowHeld"]) == (5, "100.00", "0.00")
    stats = await figures(g, "120000")
    assert (stats["released"], stats["refunded"], stats["escrowBalance"]) == (
        "233.32",
        "99.99",
        "99.99",
    )


# --- 4. privacy --------------------------------------------------------------------------


async def test_the_payer_and_the_account_number_are_never_shown(
    g: GraphQL, client: httpx.AsyncClient, timed: Platform
) -> None:
    await register(g, "a")
    live = timed.live_events()
    subscribers = timed.bus.subscribers
    first = asyncio.ensure_future(anext(live))
    await asyncio.sleep(0)  # the subscription joins the bus on its first read
    assert timed.bus.subscribers == subscribers + 1
    async with asyncio.timeout(5):
        opened = await open_account(g, "a")
        event = await first
    await live.aclose()
    assert event.type == "finance.SupervisionAccountOpened"
    assert event.data["account_no"] == "*" * 15 + "6789"
    assert opened["accountNo"] == "*" * 15 + "6789"

    answers: list[str] = [json.dumps(opened, ensure_ascii=False)]
    answers.append(json.dumps(await record(g, id="o1"), ensure_ascii=False))
    await g.data(REQUEST_REFUND, {"id": "o1", "n": 1})
    await g.data(DELIVERED, {"id": "o1", "n": 2})
    await timed.settle()
    shown = await institution(g, "a")
    assert shown["account"]["accountNo"] == "*" * 15 + "6789"
    answers.append(json.dumps(shown, ensure_ascii=False))
    answers.append(json.dumps(await show(g, "o1"), ensure_ascii=False))
    answers.append(
        (
            await client.post(
                "/graphql",
                json={"query": "{ orders { edges { node { " + ORDER_FIELDS + " } } } }"},
            )
        ).text
    )
    trail = [e["node"] for e in shown["events"]["edges"]]
    [account_fact] = [e for e in trail if e["type"] == "finance.SupervisionAccountOpened"]
    assert json.loads(account_fact["data"])["account_no"] == "*" * 15 + "6789"
    assert any(e["type"] == "finance.PrepaidOrderRecorded" for e in trail)
    for answer in answers:
        assert PAYER not in answer
        assert ACCOUNT_DIGITS[:-4] not in answer

    collections = sorted(
        {c.name for p in timed.runner.projections for c in getattr(p, "collections", ())}
    )
    assert {"orders", "finance_accounts", "institution_events", "region_stats"} <= set(collections)
    for name in collections:
        dumped = json.dumps(await timed.read_store.dump(name), ensure_ascii=False, default=str)
        assert PAYER not in dumped, name
        assert ACCOUNT_DIGITS[:-4] not in dumped, name
    # The stored facts keep a keyed hash of the payer, never the reference.
    stored = json.dumps(
        [e.data for e in await timed.event_stores["finance"].read_all()], ensure_ascii=False
    )
    assert PAYER not in stored


# --- 5. the registry's lifecycle, by its events ------------------------------------------


async def test_a_suspended_institution_takes_no_order_right_after_each_suspension(
    g: GraphQL, timed: Platform
) -> None:
    await supervised(g)
    for n in range(5):
        assert (await g.data(SUSPEND, {"id": "a"}))["suspendInstitution"]["status"] == "SUSPENDED"
        body = await g(RECORD, {"input": order(id=f"refused-{n}")})
        assert body["data"] is None, (n, body)
        assert body["errors"][0]["extensions"] == {
            "code": "CONFLICT",
            "field": "input.institutionId",
        }, (n, body)
        assert "SUSPENDED" in body["errors"][0]["message"]
        assert (await g.data(RESUME, {"id": "a"}))["resumeInstitution"]["status"] == "APPROVED"
        accepted = await record(g, id=f"taken-{n}", lessons=1, pricePerLesson="1.00")
        assert accepted["amount"] == "1.00"
    await timed.settle()
    assert (await g.data(ORDER, {"id": "refused-0"}))["order"] is None
    stats = await figures(g, "120101")
    assert (stats["orders"], stats["orderAmount"]) == (5, "5.00")


# --- 6. risk levels, through events ------------------------------------------------------


async def test_suspension_with_money_held_is_red(g: GraphQL, timed: Platform) -> None:
    await supervised(g)
    await supervised(g, "b", n=2)
    await record(g, id="o1")
    await timed.settle()
    green = await figures(g, "120000")
    assert (green["riskGreen"], green["riskYellow"], green["riskRed"]) == (2, 0, 0)
    assert (await institution(g, "a"))["riskLevel"] == "GREEN"

    await g.data(SUSPEND, {"id": "a"})
    await timed.settle()
    shown = await institution(g, "a")
    assert shown["riskLevel"] == "RED"
    [reason] = shown["riskReasons"]
    assert reason.startswith("MONEY_HELD_WHILE_SUSPENDED"), reason
    assert "1,000.00" in reason
    listed = (await g.data(AT_RISK, {"level": "RED"}))["institutions"]
    assert [e["node"]["id"] for e in listed["edges"]] == ["a"]
    assert listed["totalCount"] == 1
    greens = (await g.data(AT_RISK, {"level": "GREEN"}))["institutions"]
    assert [e["node"]["id"] for e in greens["edges"]] == ["b"]
    for code in ("120101", "120100", "120000"):
        red = await figures(g, code)
        assert (red["riskGreen"], red["riskYellow"], red["riskRed"]) == (1, 0, 1), code
    trail = [e["node"] for e in shown["events"]["edges"]]
    changes = [json.loads(e["data"]) for e in trail if e["type"] == "finance.RiskLevelChanged"]
    assert [(c["previous"], c["level"]) for c in changes] == [("GREEN", "RED")]

    # Refunding everything leaves nothing held: GREEN again, though still suspended.
    await g.data(REFUND, {"id": "o1", "n": None})
    await timed.settle()
    shown = await institution(g, "a")
    assert (shown["status"], shown["riskLevel"], shown["riskReasons"]) == (
        "SUSPENDED",
        "GREEN",
        [],
    )
    assert (await figures(g, "120000"))["riskRed"] == 0


async def test_complaints_make_it_yellow_for_thirty_days(
    g: GraphQL, timed: Platform, clock: Clock
) -> None:
    await supervised(g)
    for n in range(3):
        await g.data(COMPLAIN, {"id": "a"})
        await timed.settle()
        assert (await institution(g, "a"))["riskLevel"] == ("YELLOW" if n == 2 else "GREEN")
    shown = await institution(g, "a")
    assert [r.split(":")[0] for r in shown["riskReasons"]] == ["COMPLAINTS"]
    stats = await figures(g, "120101")
    assert (stats["riskGreen"], stats["riskYellow"], stats["riskRed"]) == (0, 1, 0)

    await tick(timed, clock, NOW + timedelta(days=29))  # still within the 30-day window
    assert (await institution(g, "a"))["riskLevel"] == "YELLOW"
    await tick(timed, clock, NOW + timedelta(days=31))
    shown = await institution(g, "a")
    assert (shown["riskLevel"], shown["riskReasons"]) == ("GREEN", [])
    stats = await figures(g, "120101")
    assert (stats["riskGreen"], stats["riskYellow"], stats["riskRed"]) == (1, 0, 0)
    changes = await finance_events(timed, "finance.RiskLevelChanged")
    assert [(e.data["level"], e.actor) for e in changes][-1] == ("GREEN", AUTOMATIC)


@pytest.mark.parametrize("with_account", [True, False], ids=["with account", "without account"])
async def test_an_overdue_fees_rectification_turns_it_red_by_the_clock(
    g: GraphQL, timed: Platform, clock: Clock, with_account: bool
) -> None:
    """Charging fees wrongly is a FEES finding whether or not the institution has a
    supervised account: the clock must judge it once the deadline has passed."""
    if with_account:
        await supervised(g)
    else:
        await register(g, "a")
    recorded = await g.data(
        INSPECT,
        {
            "input": {
                "region": "120101",
                "kind": "DAILY",
                "startedAt": "2025-01-20T09:00:00",
                "personnel": 2,
                "visits": [
                    {
                        "institutionId": "a",
                        "findings": [{"type": "FEES", "description": "超期收费"}],
                    }
                ],
                "rectifyWithinDays": 1,
            }
        },
    )
    deadline = recorded["recordInspection"]["visits"][0]["rectification"]["deadline"]
    await timed.settle()
    assert (await institution(g, "a"))["riskLevel"] == "GREEN"
    await tick(timed, clock, at(deadline, 23))
    assert (await institution(g, "a"))["riskLevel"] == "GREEN"
    await tick(timed, clock, at(deadline, 10) + timedelta(days=1))
    shown = await institution(g, "a")
    assert shown["riskLevel"] == "RED", shown
    assert [r.split(":")[0] for r in shown["riskReasons"]] == ["OVERDUE_FEES_RECTIFICATION"]
    assert (await figures(g, "120000"))["riskRed"] == 1


async def test_a_deposit_that_covers_too_little_is_yellow_then_red(
    g: GraphQL, timed: Platform
) -> None:
    await register(g, "a")
    opened = await open_account(g, "a", "RISK_DEPOSIT", "1000")
    assert (opened["mode"], opened["balance"]) == ("RISK_DEPOSIT", "1000.00")
    await record(g, id="o1", lessons=60, pricePerLesson="83.33")  # 4,999.80: cover 20.0%
    await timed.settle()
    shown = await institution(g, "a")
    assert shown["riskLevel"] == "YELLOW"
    assert [r.split(":")[0] for r in shown["riskReasons"]] == ["DEPOSIT_COVER"]
    await record(g, id="o2", lessons=1, pricePerLesson="0.21")  # 5,000.01: under 20%
    await timed.settle()
    shown = await institution(g, "a")
    assert shown["riskLevel"] == "RED"
    [reason] = shown["riskReasons"]
    assert reason.startswith("DEPOSIT_COVER"), reason
    assert "5,000.01" in reason
    listed = (await g.data(AT_RISK, {"level": "RED"}))["institutions"]
    assert [e["node"]["id"] for e in listed["edges"]] == ["a"]
    assert shown["account"]["balance"] == "1000.00"
    # Consuming lessons lowers what the deposit must cover.
    await g.data(CONFIRM, {"id": "o1", "n": 40})  # 1,666.81 outstanding: cover 60%
    await timed.settle()
    assert (await institution(g, "a"))["riskLevel"] == "GREEN"


# --- 7. scope ----------------------------------------------------------------------------


async def test_another_region_s_operator_neither_sees_nor_moves_tianjin_money(
    g: GraphQL, client: httpx.AsyncClient, timed: Platform
) -> None:
    await supervised(g)
    await record(g, id="o1")
    await timed.settle()
    hefei = GraphQL(client)
    headers = {"Authorization": bearer(Role.OPERATOR, region="340103", subject="hefei")}
    reads = await hefei(
        '{ order(id: "o1") { id } orders { totalCount edges { node { id } } } }', **headers
    )
    assert reads.get("errors") is None, reads
    assert reads["data"] == {"order": None, "orders": {"totalCount": 0, "edges": []}}
    before = await positions(timed)
    writes = [
        (CONFIRM, {"id": "o1", "n": 1}),
        (REFUND, {"id": "o1", "n": 1}),
        (DELIVERED, {"id": "o1", "n": 1}),
        (REQUEST_REFUND, {"id": "o1", "n": 1}),
        (RECORD, {"input": order(id="o2")}),
    ]
    for query, variables in writes:
        body = await hefei(query, variables, **headers)
        assert body["data"] is None, body
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
    await timed.settle()
    assert await positions(timed) == before
    shown = await show(g, "o1")
    assert (shown["released"], shown["refunded"]) == ("0.00", "0.00")
    # Tianjin's own operator does see and move it.
    tianjin = {"Authorization": bearer(Role.OPERATOR, region="120101", subject="heping")}
    own = await hefei(CONFIRM, {"id": "o1", "n": 1}, **tianjin)
    assert own["data"]["confirmLessons"]["released"] == "100.00", own


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.IMPORTER, Role.VIEWER])
async def test_only_the_platform_settles_due_items_and_judges_risk(
    client: httpx.AsyncClient, timed: Platform, role: Role
) -> None:
    before = await positions(timed)
    headers = {"Authorization": bearer(role, region="120101", subject="district")}
    for path, body in (
        ("/api/finance/v1/orders/o-1/settle", {"today": "2025-01-20"}),
        ("/api/finance/v1/risk/inst-1/assess", {}),
    ):
        answer = await client.post(path, json=body, headers=headers)
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "FORBIDDEN"
    assert await positions(timed) == before


async def test_the_clock_judges_every_institution_once_a_day(
    timed: Platform, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.finance import views as finance_views

    sweeps: list[date] = []
    listed = finance_views.institutions_to_assess

    async def counted(store: Any, batch: int = 1_000) -> AsyncIterator[str]:
        sweeps.append(clock.now.date())
        async for institution in listed(store, batch):
            yield institution

    monkeypatch.setattr(finance_views, "institutions_to_assess", counted)
    for _ in range(3):
        await timed.timers.tick()
    clock.now += timedelta(days=1)
    await timed.timers.tick()
    await timed.timers.tick()
    assert len(sweeps) == 2  # one sweep per day however often the clock ticks


async def test_the_daily_sweep_pages_through_every_institution(tmp_path: Path) -> None:
    from services.common.ports import Batch, Put
    from services.common.sqlite import SQLiteReadStore
    from services.finance import views as finance_views
    from services.finance.projections import SIGNALS

    store = SQLiteReadStore(tmp_path / "read.db")
    try:
        await store.ensure([SIGNALS])
        ids = [f"inst-{n}" for n in range(7)]
        puts = [Put(SIGNALS.name, key, {"region": "640402"}, 1) for key in ids]
        await store.commit(Batch("finance", "finance", 1, puts=puts))
        swept = [i async for i in finance_views.institutions_to_assess(store, batch=2)]
        assert swept == ids  # four pages of two, each institution once
    finally:
        await store.close()
