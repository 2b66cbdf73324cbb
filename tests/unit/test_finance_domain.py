"""Prepaid-money rules in pure code: orders, escrow, the two working-day clocks, accounts, risk."""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.common.aggregate import Aggregate, Change, DomainEvent
from services.common.errors import BadInput, Conflict, NotFound, ShuangjianError
from services.common.timeutil import SHANGHAI, local_date
from services.common.workdays import WorkCalendar
from services.finance.domain.commands import OpenSupervisionAccount, RecordPrepaidOrder
from services.finance.domain.events import (
    LessonsConfirmed,
    LessonsDelivered,
    LessonsRefunded,
    PrepaidOrderRecorded,
    RefundRequestAnswered,
    RefundRequested,
    RiskLevelChanged,
    SupervisionAccountOpened,
)
from services.finance.domain.model import (
    Account,
    KnownInstitution,
    Order,
    Risk,
    masked,
    payer_hash,
)
from services.finance.domain.risk import Signals, assess
from services.finance.domain.rules import (
    FinancePolicy,
    RiskLevel,
    RiskPolicy,
    SupervisionMode,
    add_months,
)

KEY = b"payer-key-one"
OTHER_KEY = b"payer-key-two"
PAYER = "parent-ref-7f3a91"
POLICY = FinancePolicy()
CALENDAR = WorkCalendar()
PAID = datetime(2025, 1, 2, 9, 0, tzinfo=SHANGHAI)
APPROVED = KnownInstitution("inst-1", "120101", "APPROVED", "NON_SUBJECT", False)
SUBJECT_FOR_PROFIT = KnownInstitution("inst-1", "120101", "APPROVED", "SUBJECT", False)
SUBJECT_NON_PROFIT = KnownInstitution("inst-1", "120101", "APPROVED", "SUBJECT", True)

ORDER = RecordPrepaidOrder(
    id="order-1",
    institution_id="inst-1",
    payer_ref=PAYER,
    lessons=10,
    price_per_lesson=Decimal("123.45"),
    course_start=date(2025, 1, 2),
    course_end=date(2025, 4, 2),
    paid_at=PAID,
)

ORDER_FACT = PrepaidOrderRecorded(
    institution_id="inst-1",
    region="120101",
    payer_hash=payer_hash(KEY, PAYER),
    lessons=10,
    price_fen=12345,
    amount_fen=123450,
    course_start=ORDER.course_start,
    course_end=ORDER.course_end,
    paid_at=PAID,
)


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI)


def events(aggregate: Aggregate) -> list[DomainEvent]:
    return [change.event for change in aggregate.collect()]


def order_cmd(**changes: Any) -> RecordPrepaidOrder:
    return replace(ORDER, **changes)


def paid_order(lessons: int = 10, price: str = "123.45") -> Order:
    order = Order("order-1")
    cmd = order_cmd(lessons=lessons, price_per_lesson=Decimal(price))
    order.record(cmd, PAID, APPROVED, True, KEY, POLICY)
    order.collect()
    return order


def refused_order(
    cmd: RecordPrepaidOrder,
    institution: KnownInstitution | None = APPROVED,
    *,
    has_account: bool = True,
    policy: FinancePolicy = POLICY,
    when: datetime = PAID,
) -> ShuangjianError:
    order = Order("order-1")
    with pytest.raises(ShuangjianError) as info:
        order.record(cmd, when, institution, has_account, KEY, policy)
    assert order.collect() == []
    assert not order.exists
    return info.value


def accepted_order(
    cmd: RecordPrepaidOrder,
    institution: KnownInstitution = APPROVED,
    *,
    policy: FinancePolicy = POLICY,
    when: datetime = PAID,
) -> PrepaidOrderRecorded:
    order = Order("order-1")
    order.record(cmd, when, institution, True, KEY, policy)
    (fact,) = events(order)
    assert isinstance(fact, PrepaidOrderRecorded)
    return fact


def refused_step(order: Order, step: Any, kind: type[ShuangjianError], field: str) -> None:
    before = (order.version, order.consumed, order.refunded, order.awaiting_confirmation)
    with pytest.raises(ShuangjianError) as info:
        step()
    assert type(info.value) is kind, info.value
    assert info.value.field == field
    assert order.collect() == []
    assert (order.version, order.consumed, order.refunded, order.awaiting_confirmation) == before


def replayed(changes: list[Change]) -> Order:
    return Order("order-1").replay([(c.event, c.occurred_at) for c in changes])


# --- 1. orders: every refusal writes nothing -----------------------------------------


def test_an_institution_without_a_supervised_account_takes_no_order() -> None:
    error = refused_order(ORDER, has_account=False)
    assert type(error) is Conflict
    assert error.field == "institution_id"
    assert "supervised account" in error.message


@pytest.mark.parametrize("status", ["PENDING", "SUSPENDED", "REVOKED", "EXITED"])
def test_only_an_approved_institution_takes_orders(status: str) -> None:
    error = refused_order(ORDER, replace(APPROVED, status=status))
    assert type(error) is Conflict
    assert error.field == "institution_id"
    assert status in error.message


def test_an_unknown_institution_is_bad_input() -> None:
    error = refused_order(ORDER, None)
    assert type(error) is BadInput
    assert error.field == "institution_id"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lessons": 61}, "lessons"),
        ({"lessons": 0}, "lessons"),
        ({"lessons": -1}, "lessons"),
        ({"course_start": date(2024, 1, 31), "course_end": date(2024, 5, 1)}, "course_end"),
        ({"course_start": date(2025, 3, 1), "course_end": date(2025, 2, 28)}, "course_end"),
        ({"lessons": 60, "price_per_lesson": Decimal("83.34")}, "price_per_lesson"),
        ({"price_per_lesson": Decimal("10.005")}, "price_per_lesson"),
        ({"price_per_lesson": Decimal("0")}, "price_per_lesson"),
        ({"price_per_lesson": Decimal("0.00")}, "price_per_lesson"),
        ({"price_per_lesson": Decimal("-5.00")}, "price_per_lesson"),
        ({"price_per_lesson": Decimal("NaN")}, "price_per_lesson"),
        ({"payer_ref": "   "}, "payer_ref"),
    ],
)
def test_an_order_breaking_a_limit_is_refused(changes: dict[str, Any], field: str) -> None:
    error = refused_order(order_cmd(**changes))
    assert type(error) is BadInput
    assert error.field == field


@pytest.mark.parametrize(
    ("changes", "amount_fen"),
    [
        ({"lessons": 60, "price_per_lesson": Decimal("50")}, 300_000),
        ({"lessons": 60, "price_per_lesson": Decimal("83.33")}, 499_980),
        ({"lessons": 50, "price_per_lesson": Decimal("100.00")}, 500_000),
        ({"lessons": 1, "price_per_lesson": Decimal("0.01")}, 1),
        (
            {"course_start": date(2024, 1, 31), "course_end": date(2024, 4, 30)},
            1_234_50,
        ),
        ({"course_start": date(2025, 3, 1), "course_end": date(2025, 3, 1)}, 1_234_50),
    ],
)
def test_an_order_at_a_limit_is_accepted(changes: dict[str, Any], amount_fen: int) -> None:
    fact = accepted_order(order_cmd(**changes))
    assert fact.amount_fen == amount_fen
    assert fact.lessons * fact.price_fen == amount_fen


def test_a_configured_amount_cap_applies() -> None:
    policy = FinancePolicy(max_amount_fen=300_000)
    error = refused_order(order_cmd(lessons=50, price_per_lesson=Decimal("60.01")), policy=policy)
    assert type(error) is BadInput
    assert error.field == "price_per_lesson"
    assert "3,000.00" in error.message
    fact = accepted_order(order_cmd(lessons=50, price_per_lesson=Decimal("60.00")), policy=policy)
    assert fact.amount_fen == 300_000


def test_a_configured_lesson_and_month_limit_apply() -> None:
    policy = FinancePolicy(max_lessons=20, max_course_months=1)
    assert refused_order(order_cmd(lessons=21), policy=policy).field == "lessons"
    late = order_cmd(course_start=date(2025, 1, 31), course_end=date(2025, 3, 1))
    assert refused_order(late, policy=policy).field == "course_end"
    fact = accepted_order(
        order_cmd(lessons=20, course_start=date(2025, 1, 31), course_end=date(2025, 2, 28)),
        policy=policy,
    )
    assert fact.lessons == 20


def test_a_for_profit_subject_institution_collects_nothing_after_the_deadline() -> None:
    after = datetime(2022, 1, 1, 0, 30, tzinfo=SHANGHAI)
    error = refused_order(ORDER, SUBJECT_FOR_PROFIT, when=after)
    assert type(error) is Conflict
    assert error.field == "institution_id"
    assert "2021-12-31" in error.message


def test_the_deadline_is_judged_on_the_date_in_china() -> None:
    # 17:30 UTC on 31 December is 01:30 on 1 January in Shanghai.
    utc_evening = datetime.fromisoformat("2021-12-31T17:30:00+00:00")
    assert type(refused_order(ORDER, SUBJECT_FOR_PROFIT, when=utc_evening)) is Conflict


def test_a_subject_institution_paid_before_the_deadline_or_non_profit_is_accepted() -> None:
    last_day = datetime(2021, 12, 31, 23, 59, tzinfo=SHANGHAI)
    assert accepted_order(ORDER, SUBJECT_FOR_PROFIT, when=last_day).paid_at == last_day
    assert accepted_order(ORDER, SUBJECT_NON_PROFIT).institution_id == "inst-1"


def test_recording_the_same_order_again_is_a_no_op_and_different_details_a_conflict() -> None:
    order = paid_order()
    order.record(ORDER, PAID, APPROVED, True, KEY, POLICY)
    assert order.collect() == []
    refused_step(
        order,
        lambda: order.record(order_cmd(lessons=9), PAID, APPROVED, True, KEY, POLICY),
        Conflict,
        "id",
    )


# --- 2. payer privacy ----------------------------------------------------------------


def test_the_payer_is_stored_only_as_a_keyed_hash() -> None:
    fact = accepted_order(ORDER)
    expected = hmac.new(KEY, PAYER.encode(), hashlib.sha256).hexdigest()
    assert fact.payer_hash == expected
    assert PAYER not in fact.model_dump_json()
    assert PAYER not in repr(fact)


def test_the_payer_hash_depends_on_the_key_and_the_reference() -> None:
    assert payer_hash(KEY, PAYER) == payer_hash(KEY, PAYER)
    assert payer_hash(KEY, PAYER) != payer_hash(OTHER_KEY, PAYER)
    assert payer_hash(KEY, PAYER) != payer_hash(KEY, PAYER + "x")
    assert len(payer_hash(KEY, PAYER)) == 64


# --- 3. money is exact, escrow never negative ----------------------------------------


def test_confirming_lessons_releases_their_exact_price() -> None:
    order = paid_order(lessons=10, price="123.45")
    order.confirm(3, at(date(2025, 1, 10)))
    (fact,) = events(order)
    assert fact == LessonsConfirmed(
        institution_id="inst-1", lessons=3, amount_fen=37035, deliveries=(), automatic=False
    )
    assert order.remaining == 7


def test_confirming_more_than_escrow_holds_is_refused() -> None:
    order = paid_order(lessons=10)
    order.confirm(8, at(date(2025, 1, 10)))
    order.collect()
    refused_step(order, lambda: order.confirm(3, at(date(2025, 1, 11))), Conflict, "lessons")
    refused_step(order, lambda: order.confirm(0, at(date(2025, 1, 11))), BadInput, "lessons")


def test_nothing_happens_before_the_order_was_paid() -> None:
    order = paid_order()
    early = PAID - timedelta(minutes=1)
    refused_step(order, lambda: order.confirm(1, early), BadInput, "occurred_at")


def test_refunding_without_a_count_refunds_every_refundable_lesson() -> None:
    order = paid_order(lessons=10, price="99.99")
    order.confirm(4, at(date(2025, 1, 10)))
    order.collect()
    order.refund(None, "moving away", at(date(2025, 1, 11)))
    (fact,) = events(order)
    assert fact == LessonsRefunded(
        institution_id="inst-1", lessons=6, amount_fen=59994, reason="moving away", request=None
    )
    assert order.remaining == 0


def test_a_spent_order_refuses_every_further_release_and_refund() -> None:
    order = paid_order(lessons=10)
    order.confirm(6, at(date(2025, 1, 10)))
    order.refund(4, "moving away", at(date(2025, 1, 11)))
    order.collect()
    later = at(date(2025, 1, 12))
    refused_step(order, lambda: order.confirm(1, later), Conflict, "lessons")
    refused_step(order, lambda: order.refund(1, "again", later), Conflict, "lessons")
    refused_step(
        order, lambda: order.report_delivered(1, later, CALENDAR, POLICY), Conflict, "lessons"
    )
    refused_step(
        order, lambda: order.request_refund(None, "again", later, CALENDAR, POLICY), Conflict, "id"
    )
    refused_step(
        order,
        lambda: order.request_refund(1, "again", later, CALENDAR, POLICY),
        Conflict,
        "lessons",
    )


def test_refunding_everything_when_nothing_is_refundable_is_a_conflict() -> None:
    # Like request_refund(None): "nothing left" is a conflict with the order's state, not
    # a malformed "lessons" the caller never sent.
    order = paid_order(lessons=10)
    order.confirm(10, at(date(2025, 1, 10)))
    order.collect()
    with pytest.raises(ShuangjianError) as info:
        order.refund(None, "moving away", at(date(2025, 1, 11)))
    assert order.collect() == []
    assert type(info.value) is Conflict, f"{type(info.value).__name__}: {info.value.message}"


def random_step(order: Order, rng: random.Random, count: int | None, when: datetime) -> None:
    kind = rng.choice(["confirm", "refund", "report", "request", "answer", "settle"])
    if kind == "confirm":
        order.confirm(count or 1, when)
    elif kind == "refund":
        order.refund(count, "reason", when)
    elif kind == "report":
        order.report_delivered(count or 1, when, CALENDAR, POLICY)
    elif kind == "request":
        order.request_refund(count, "reason", when, CALENDAR, POLICY)
    elif kind == "answer":
        request = rng.randint(1, len(order.requests) + 1)
        order.answer_refund(request, rng.random() < 0.5, None, when)
    else:
        order.settle_due(local_date(when), when)


def test_random_histories_never_release_or_refund_more_than_was_paid() -> None:
    rng = random.Random(20250120)
    for _ in range(150):
        lessons = rng.randint(1, 60)
        price_fen = rng.randint(1, POLICY.max_amount_fen // lessons)
        order = paid_order(lessons=lessons, price=f"{price_fen // 100}.{price_fen % 100:02d}")
        assert order.fact is not None
        assert order.fact.price_fen == price_fen
        paid_fen = order.fact.amount_fen
        history = [Change(order.fact, PAID, order.region)]
        moved_fen = 0
        when = PAID
        for _ in range(30):
            when += timedelta(days=rng.randint(0, 6), hours=rng.randint(0, 12))
            count = rng.choice([None, 0, 1, 1, 2, 3, rng.randint(1, lessons + 2)])
            before = (order.version, order.consumed, order.refunded)
            try:
                random_step(order, rng, count, when)
            except ShuangjianError:
                assert order.collect() == []
                assert (order.version, order.consumed, order.refunded) == before
                continue
            for change in order.collect():
                history.append(change)
                if isinstance(change.event, LessonsConfirmed | LessonsRefunded):
                    assert change.event.amount_fen == change.event.lessons * price_fen
                    moved_fen += change.event.amount_fen
            assert order.consumed + order.refunded <= lessons
            assert 0 <= order.awaiting_confirmation <= order.remaining
            assert moved_fen == (order.consumed + order.refunded) * price_fen
            assert moved_fen <= paid_fen
        again = replayed(history)
        assert (again.consumed, again.refunded, again.version) == (
            order.consumed,
            order.refunded,
            order.version,
        )
        assert again.deliveries == order.deliveries
        assert again.requests == order.requests


# --- 4. deliveries and the 15-working-day clock --------------------------------------

REPORTED = date(2025, 1, 20)
# 15 working days after Mon 20 Jan 2025: 21-24 Jan (4), Sun 26 Jan make-up day (5), Mon 27
# (6); 28 Jan-4 Feb Spring Festival rest; 5-7 Feb (9), Sat 8 Feb make-up day (10), 10-14
# Feb (15).
CONFIRM_BY = date(2025, 2, 14)


def reported_order(lessons: int = 5) -> Order:
    order = paid_order(lessons=10)
    order.report_delivered(lessons, at(REPORTED), CALENDAR, POLICY)
    return order


def test_reported_lessons_must_be_confirmed_within_15_working_days() -> None:
    order = reported_order(5)
    (fact,) = events(order)
    assert fact == LessonsDelivered(
        institution_id="inst-1", delivery=1, lessons=5, confirm_by=CONFIRM_BY
    )
    assert CALENDAR.working_days_after(REPORTED, 15) == CONFIRM_BY
    assert order.awaiting_confirmation == 5
    assert order.refundable == 5


def test_unconfirmed_lessons_count_as_confirmed_the_day_after_the_deadline() -> None:
    order = reported_order(5)
    order.collect()
    order.settle_due(CONFIRM_BY, at(CONFIRM_BY, 23))
    assert order.collect() == []
    order.settle_due(CONFIRM_BY + timedelta(days=1), at(CONFIRM_BY + timedelta(days=1), 1))
    (fact,) = events(order)
    assert fact == LessonsConfirmed(
        institution_id="inst-1", lessons=5, amount_fen=5 * 12345, deliveries=(1,), automatic=True
    )
    assert (order.consumed, order.awaiting_confirmation) == (5, 0)
    order.settle_due(CONFIRM_BY + timedelta(days=2), at(CONFIRM_BY + timedelta(days=2)))
    assert order.collect() == []


def test_a_parent_confirmation_settles_the_reported_lessons_first() -> None:
    order = reported_order(5)
    order.confirm(5, at(date(2025, 1, 22)))
    confirmed = events(order)[-1]
    assert isinstance(confirmed, LessonsConfirmed)
    assert (confirmed.deliveries, confirmed.automatic) == ((1,), False)
    order.settle_due(CONFIRM_BY + timedelta(days=5), at(CONFIRM_BY + timedelta(days=5)))
    assert order.collect() == []
    assert (order.consumed, order.refundable) == (5, 5)


def test_confirmations_settle_deliveries_oldest_first() -> None:
    order = paid_order(lessons=10)
    order.report_delivered(2, at(date(2025, 1, 6)), CALENDAR, POLICY)
    order.report_delivered(3, at(REPORTED), CALENDAR, POLICY)
    order.confirm(4, at(date(2025, 1, 21)))
    confirmed = events(order)[-1]
    assert isinstance(confirmed, LessonsConfirmed)
    assert confirmed.deliveries == (1, 2)
    assert (order.deliveries[1].pending, order.deliveries[2].pending) == (0, 1)
    order.settle_due(CONFIRM_BY + timedelta(days=1), at(CONFIRM_BY + timedelta(days=1)))
    (auto,) = events(order)
    assert isinstance(auto, LessonsConfirmed)
    assert (auto.lessons, auto.deliveries, auto.automatic) == (1, (2,), True)


def test_settling_releases_only_the_deliveries_that_fell_due() -> None:
    # Delivery 1 reported on 21 Jan (due after 17 Feb); delivery 2 reported back-dated to
    # 20 Jan (due after 14 Feb). On 15 Feb only delivery 2's lessons count as confirmed.
    order = paid_order(lessons=10)
    order.report_delivered(3, at(date(2025, 1, 21)), CALENDAR, POLICY)
    order.report_delivered(2, at(REPORTED), CALENDAR, POLICY)
    order.collect()
    assert order.deliveries[1].confirm_by == date(2025, 2, 17)
    assert order.deliveries[2].confirm_by == CONFIRM_BY
    day = CONFIRM_BY + timedelta(days=1)
    order.settle_due(day, at(day))
    (auto,) = events(order)
    assert isinstance(auto, LessonsConfirmed)
    assert (auto.lessons, auto.automatic) == (2, True)
    assert order.deliveries[1].pending == 3, "lessons released before their parent's deadline"
    assert auto.deliveries == (2,)
    order.settle_due(day, at(day, 11))
    assert order.collect() == []


def test_reporting_more_lessons_than_remain_unreported_is_refused() -> None:
    order = reported_order(8)
    order.collect()
    when = at(REPORTED, 11)
    refused_step(
        order, lambda: order.report_delivered(3, when, CALENDAR, POLICY), Conflict, "lessons"
    )
    refused_step(
        order, lambda: order.report_delivered(0, when, CALENDAR, POLICY), BadInput, "lessons"
    )
    order.report_delivered(2, when, CALENDAR, POLICY)
    assert [e.delivery for e in events(order) if isinstance(e, LessonsDelivered)] == [2]


def test_refunds_cannot_take_lessons_awaiting_confirmation() -> None:
    order = reported_order(8)
    order.collect()
    when = at(REPORTED, 11)
    refused_step(order, lambda: order.refund(3, "moving away", when), Conflict, "lessons")
    order.refund(None, "moving away", when)
    (fact,) = events(order)
    assert isinstance(fact, LessonsRefunded)
    assert fact.lessons == 2
    assert (order.remaining, order.awaiting_confirmation, order.refundable) == (8, 8, 0)


# --- 5. refund requests and the 5-working-day clock ----------------------------------

# 5 working days after Mon 20 Jan 2025: 21-24 Jan (4) and Sun 26 Jan, a make-up working day.
ANSWER_BY = date(2025, 1, 26)


def requested_order(lessons: int | None = 3) -> Order:
    order = paid_order(lessons=10)
    order.request_refund(lessons, "moving away", at(REPORTED), CALENDAR, POLICY)
    return order


def test_a_refund_request_must_be_answered_within_5_working_days() -> None:
    order = requested_order(3)
    (fact,) = events(order)
    assert fact == RefundRequested(
        institution_id="inst-1", request=1, lessons=3, reason="moving away", answer_by=ANSWER_BY
    )
    assert CALENDAR.working_days_after(REPORTED, 5) == ANSWER_BY


def test_accepting_a_request_refunds_the_requested_lessons() -> None:
    order = requested_order(3)
    order.collect()
    order.answer_refund(1, True, "  sorry to see you go ", at(date(2025, 1, 21)))
    answered, refunded = events(order)
    assert answered == RefundRequestAnswered(
        institution_id="inst-1",
        request=1,
        accepted=True,
        note="sorry to see you go",
        automatic=False,
    )
    assert isinstance(refunded, LessonsRefunded)
    assert (refunded.lessons, refunded.amount_fen, refunded.request) == (3, 3 * 12345, 1)
    assert order.remaining == 7


def test_accepting_a_request_for_everything_refunds_every_refundable_lesson() -> None:
    order = paid_order(lessons=10)
    order.confirm(2, at(REPORTED))
    order.report_delivered(3, at(REPORTED), CALENDAR, POLICY)
    order.request_refund(None, "moving away", at(REPORTED), CALENDAR, POLICY)
    order.collect()
    order.answer_refund(1, True, None, at(date(2025, 1, 21)))
    _, refunded = events(order)
    assert isinstance(refunded, LessonsRefunded)
    assert refunded.lessons == 5
    assert (order.remaining, order.refundable) == (3, 0)


def test_refusing_a_request_refunds_nothing() -> None:
    order = requested_order(3)
    order.collect()
    order.answer_refund(1, False, "the course is half over", at(date(2025, 1, 21)))
    (answered,) = events(order)
    assert isinstance(answered, RefundRequestAnswered)
    assert not answered.accepted
    assert order.refunded == 0
    after = ANSWER_BY + timedelta(days=1)
    order.settle_due(after, at(after))
    assert order.collect() == []


def test_a_request_is_answered_once_and_an_unknown_one_is_not_found() -> None:
    order = requested_order(3)
    order.answer_refund(1, False, None, at(date(2025, 1, 21)))
    order.collect()
    when = at(date(2025, 1, 22))
    refused_step(order, lambda: order.answer_refund(1, True, None, when), Conflict, "request")
    refused_step(order, lambda: order.answer_refund(2, True, None, when), NotFound, "request")


def test_an_unanswered_request_is_accepted_after_its_deadline_and_only_once() -> None:
    order = requested_order(3)
    history = order.collect()
    order.settle_due(ANSWER_BY, at(ANSWER_BY, 23))
    assert order.collect() == []
    after = ANSWER_BY + timedelta(days=1)
    order.settle_due(after, at(after, 1))
    changes = order.collect()
    answered, refunded = (c.event for c in changes)
    assert answered == RefundRequestAnswered(
        institution_id="inst-1", request=1, accepted=True, note=None, automatic=True
    )
    assert isinstance(refunded, LessonsRefunded)
    assert (refunded.lessons, refunded.request) == (3, 1)
    order.settle_due(after, at(after, 2))
    assert order.collect() == []

    paid = Change(ORDER_FACT, PAID, "120101")
    fresh = replayed([paid, *history, *changes])
    assert (fresh.refunded, fresh.requests[1].answered) == (3, True)
    fresh.settle_due(after + timedelta(days=30), at(after + timedelta(days=30)))
    assert fresh.collect() == []
    refused_step(fresh, lambda: fresh.answer_refund(1, False, None, at(after)), Conflict, "request")


def test_the_recorded_order_is_the_fact_replayed() -> None:
    assert accepted_order(ORDER) == ORDER_FACT


# --- 6. account ----------------------------------------------------------------------


def account_cmd(**changes: Any) -> OpenSupervisionAccount:
    base = OpenSupervisionAccount(
        id="inst-1", mode="BANK_CUSTODY", bank="Bank of Tianjin", account_no="6222021234567890"
    )
    return replace(base, **changes)


def refused_account(
    cmd: OpenSupervisionAccount, institution: KnownInstitution | None = APPROVED
) -> ShuangjianError:
    account = Account("inst-1")
    with pytest.raises(ShuangjianError) as info:
        account.open(cmd, PAID, institution)
    assert account.collect() == []
    assert account.opened is None
    return info.value


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"deposit": Decimal("20000.00")}, "deposit"),
        ({"mode": "RISK_DEPOSIT"}, "deposit"),
        ({"mode": "RISK_DEPOSIT", "deposit": Decimal("0")}, "deposit"),
        ({"mode": "ESCROW"}, "mode"),
        ({"account_no": "12345"}, "account_no"),
        ({"account_no": "1" * 35}, "account_no"),
        ({"account_no": "622202123456789!"}, "account_no"),
        ({"account_no": "６２２２０２１２３４５６７８９０"}, "account_no"),
        ({"account_no": " - - "}, "account_no"),
        ({"bank": ""}, "bank"),
    ],
)
def test_an_account_breaking_a_rule_is_refused(changes: dict[str, Any], field: str) -> None:
    error = refused_account(account_cmd(**changes))
    assert type(error) is BadInput
    assert error.field == field


def test_an_account_number_is_normalised_and_read_masked() -> None:
    account = Account("inst-1")
    cmd = account_cmd(
        mode="RISK_DEPOSIT", deposit=Decimal("20000.50"), account_no=" 6222 0212-3456 7890 ab "
    )
    account.open(cmd, PAID, APPROVED)
    (fact,) = events(account)
    assert fact == SupervisionAccountOpened(
        institution_id="inst-1",
        region="120101",
        mode=SupervisionMode.RISK_DEPOSIT,
        bank="Bank of Tianjin",
        account_no="6222021234567890AB",
        deposit_fen=2_000_050,
    )
    assert masked("6222021234567890") == "************7890"
    assert masked("ABC123") == "**C123"


def test_one_account_per_institution() -> None:
    account = Account("inst-1")
    account.open(account_cmd(account_no="6222 0212 3456 7890"), PAID, APPROVED)
    account.collect()
    account.open(account_cmd(account_no="6222-0212-3456-7890"), PAID, APPROVED)
    assert account.collect() == []
    with pytest.raises(ShuangjianError) as info:
        account.open(account_cmd(account_no="6222029999999999"), PAID, APPROVED)
    assert type(info.value) is Conflict
    assert info.value.field == "institution_id"
    assert account.collect() == []
    assert account.opened is not None
    assert account.opened.account_no == "6222021234567890"


@pytest.mark.parametrize("status", ["REVOKED", "EXITED"])
def test_a_closed_institution_opens_no_account(status: str) -> None:
    error = refused_account(account_cmd(), replace(APPROVED, status=status))
    assert type(error) is Conflict
    assert error.field == "institution_id"


def test_an_unknown_institution_opens_no_account() -> None:
    error = refused_account(account_cmd(), None)
    assert type(error) is BadInput
    assert error.field == "institution_id"


# --- 7. risk rules -------------------------------------------------------------------

TODAY = date(2025, 3, 1)
RISK = RiskPolicy()


def level(signals: Signals, policy: RiskPolicy = RISK) -> RiskLevel:
    return assess(signals, TODAY, policy)[0]


def deposit(deposit_fen: int, outstanding_fen: int = 1_000_000) -> Signals:
    return Signals(
        region="120101",
        status="APPROVED",
        mode=SupervisionMode.RISK_DEPOSIT,
        deposit_fen=deposit_fen,
        outstanding_fen=outstanding_fen,
    )


@pytest.mark.parametrize(
    ("deposit_fen", "expected"),
    [
        (1_000_000, RiskLevel.GREEN),
        (500_000, RiskLevel.GREEN),
        (499_900, RiskLevel.YELLOW),
        (200_000, RiskLevel.YELLOW),
        (199_999, RiskLevel.RED),
        (0, RiskLevel.RED),
    ],
)
def test_deposit_cover(deposit_fen: int, expected: RiskLevel) -> None:
    found, reasons = assess(deposit(deposit_fen), TODAY, RISK)
    assert found is expected
    assert len(reasons) == (expected is not RiskLevel.GREEN)
    assert all(reason.startswith("DEPOSIT_COVER") for reason in reasons)


def test_deposit_cover_never_fires_for_bank_custody_or_nothing_outstanding() -> None:
    custody = Signals(region="120101", mode=SupervisionMode.BANK_CUSTODY, outstanding_fen=10**8)
    assert assess(custody, TODAY, RISK) == (RiskLevel.GREEN, [])
    assert level(deposit(0, outstanding_fen=0)) is RiskLevel.GREEN


def days_ago(*days: int) -> tuple[date, ...]:
    return tuple(TODAY - timedelta(days=n) for n in days)


@pytest.mark.parametrize(
    ("requests", "expected"),
    [
        (days_ago(29, 29, 29, 29, 30), RiskLevel.GREEN),
        (days_ago(29, 29, 29, 29, 29), RiskLevel.YELLOW),
        (days_ago(0, 1, 2, 3, 4, 40, 50), RiskLevel.YELLOW),
        (days_ago(*range(14), 30), RiskLevel.YELLOW),
        (days_ago(*range(15)), RiskLevel.RED),
    ],
)
def test_refund_requests_in_the_last_30_days(
    requests: tuple[date, ...], expected: RiskLevel
) -> None:
    found, reasons = assess(Signals(region="120101", refund_requests=requests), TODAY, RISK)
    assert found is expected
    assert all(reason.startswith("REFUND_SURGE") for reason in reasons)


@pytest.mark.parametrize(
    ("complaints", "expected"),
    [
        (days_ago(1, 2), RiskLevel.GREEN),
        (days_ago(1, 2, 30), RiskLevel.GREEN),
        (days_ago(1, 2, 29), RiskLevel.YELLOW),
        (days_ago(*range(9)), RiskLevel.YELLOW),
        (days_ago(*range(10)), RiskLevel.RED),
    ],
)
def test_complaints_in_the_last_30_days(complaints: tuple[date, ...], expected: RiskLevel) -> None:
    found, reasons = assess(Signals(region="120101", complaints=complaints), TODAY, RISK)
    assert found is expected
    assert all(reason.startswith("COMPLAINTS") for reason in reasons)


@pytest.mark.parametrize(
    ("rectifications", "expected"),
    [
        (((TODAY - timedelta(days=1), False),), RiskLevel.RED),
        (((TODAY - timedelta(days=1), True),), RiskLevel.GREEN),
        (((TODAY, False),), RiskLevel.GREEN),
        (((TODAY + timedelta(days=9), False),), RiskLevel.GREEN),
    ],
)
def test_an_overdue_fees_rectification(
    rectifications: tuple[tuple[date, bool], ...], expected: RiskLevel
) -> None:
    signals = Signals(region="120101", fees_rectifications=rectifications)
    assert level(signals) is expected


@pytest.mark.parametrize("status", ["SUSPENDED", "REVOKED", "EXITED"])
def test_money_held_while_closed(status: str) -> None:
    held = Signals(region="120101", status=status, outstanding_fen=1)
    found, reasons = assess(held, TODAY, RISK)
    assert found is RiskLevel.RED
    assert reasons == [
        f"MONEY_HELD_WHILE_{status}: 0.01 yuan prepaid and not yet consumed or refunded"
    ]
    assert level(replace(held, outstanding_fen=0)) is RiskLevel.GREEN
    assert level(replace(held, status="APPROVED")) is RiskLevel.GREEN


def test_a_balance_under_the_regional_minimum() -> None:
    policy = RiskPolicy(min_balance_fen={"1201": 100_000, "120101": 50_000, "33": 10**9})
    low = Signals(region="120102", mode=SupervisionMode.BANK_CUSTODY, outstanding_fen=99_999)
    assert level(low, policy) is RiskLevel.YELLOW
    assert level(replace(low, outstanding_fen=100_000), policy) is RiskLevel.GREEN
    assert level(replace(low, region="120101"), policy) is RiskLevel.GREEN
    assert level(replace(low, region="310101"), policy) is RiskLevel.GREEN
    held = deposit(99_999, outstanding_fen=0)
    assert level(replace(held, region="120102"), policy) is RiskLevel.YELLOW
    assert level(replace(held, region="120102")) is RiskLevel.GREEN


def test_several_rules_give_the_worst_level_and_every_reason() -> None:
    signals = replace(
        deposit(400_000),
        status="SUSPENDED",
        complaints=days_ago(1, 2, 3),
        refund_requests=days_ago(1, 2, 3, 4, 5),
    )
    found, reasons = assess(signals, TODAY, RISK)
    assert found is RiskLevel.RED
    assert [reason.split(":")[0] for reason in reasons] == [
        "DEPOSIT_COVER",
        "REFUND_SURGE",
        "COMPLAINTS",
        "MONEY_HELD_WHILE_SUSPENDED",
    ]


def changed(level: RiskLevel, previous: RiskLevel, *reasons: str) -> RiskLevelChanged:
    return RiskLevelChanged(
        institution_id="inst-1",
        region="120101",
        level=level,
        previous=previous,
        reasons=reasons,
    )


def test_a_risk_level_is_recorded_when_it_or_its_rules_change() -> None:
    risk = Risk("risk:inst-1")
    risk.assess("inst-1", "120101", RiskLevel.GREEN, [], PAID)
    risk.assess("inst-1", "120101", RiskLevel.GREEN, [], PAID)
    risk.assess("inst-1", "120101", RiskLevel.YELLOW, ["COMPLAINTS: 3"], PAID)
    risk.assess("inst-1", "120101", RiskLevel.YELLOW, ["COMPLAINTS: 4"], PAID)
    risk.assess("inst-1", "120101", RiskLevel.RED, ["A", "B"], PAID)
    changes = risk.collect()
    assert [c.event for c in changes] == [  # every institution starts GREEN
        changed(RiskLevel.YELLOW, RiskLevel.GREEN, "COMPLAINTS: 3"),
        changed(RiskLevel.RED, RiskLevel.YELLOW, "A", "B"),
    ]
    again = Risk("risk:inst-1").replay([(c.event, c.occurred_at) for c in changes])
    again.assess("inst-1", "120101", RiskLevel.RED, ["A: 1", "B: 2"], PAID)
    assert again.collect() == []  # the same rules, other counts: no new fact
    again.assess("inst-1", "120101", RiskLevel.RED, ["A"], PAID)
    assert [c.event for c in again.collect()] == [changed(RiskLevel.RED, RiskLevel.RED, "A")]
    again.assess("inst-1", "120101", RiskLevel.GREEN, [], PAID)
    assert [c.event for c in again.collect()] == [changed(RiskLevel.GREEN, RiskLevel.RED)]


# --- 8. months -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2023, 11, 30), 3, date(2024, 2, 29)),
        (date(2023, 1, 31), 1, date(2023, 2, 28)),
        (date(2024, 1, 31), 3, date(2024, 4, 30)),
        (date(2024, 10, 15), 3, date(2025, 1, 15)),
        (date(2024, 12, 31), 12, date(2025, 12, 31)),
    ],
)
def test_add_months_keeps_the_day_or_takes_the_months_last(
    day: date, months: int, expected: date
) -> None:
    assert add_months(day, months) == expected
