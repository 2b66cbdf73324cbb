"""The finance aggregates, every rule checked here (pure: no I/O).

* ``Account`` (stream ``account:<institution>``): the institution's one supervised account.
* ``Order`` (stream: the order id): one prepaid charge, its lessons consumed (一课一销),
  delivered and awaiting confirmation, refunded, and its refund requests. Escrow held =
  amount − released − refunded = the remaining lessons × price, so it can never go
  negative: confirming or refunding more lessons than remain is refused.
* ``Risk`` (stream ``risk:<institution>``): the institution's risk level; a change of
  level is an event with its reasons.

What a command needs to know of the institution (its status, category, non-profit flag,
from the registry's events) and of its account comes in as ``KnownInstitution`` and a
flag, looked up by the handler, so deciding stays pure.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date, datetime

from services.common.aggregate import DomainEvent, ExclusiveIds, event_dispatch
from services.common.commands import choice
from services.common.errors import BadInput, Conflict, NotFound
from services.common.text import clean_text
from services.common.timeutil import local_date
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
from services.finance.domain.rules import (
    FinancePolicy,
    RiskLevel,
    SupervisionMode,
    add_months,
    to_fen,
    yuan,
)

BANK_MAX = 100
REASON_MAX = 500
PAYER_MAX = 128
_ACCOUNT_NO = re.compile(r"^[0-9A-Z]{6,34}$")
TERMINAL = ("REVOKED", "EXITED")


@dataclass(frozen=True)
class KnownInstitution:
    """Finance's own view of an institution, kept from the registry's events."""

    id: str
    region: str
    status: str
    category: str
    non_profit: bool


def payer_hash(key: bytes, payer_ref: str) -> str:
    """The keyed hash (HMAC-SHA256) a payer is stored as; the reference itself never is."""
    return hmac.new(key, payer_ref.encode(), hashlib.sha256).hexdigest()


def masked(account_no: str) -> str:
    """What any read shows of an account number: its last four characters."""
    return "*" * max(0, len(account_no) - 4) + account_no[-4:]


class Account(ExclusiveIds):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.opened: SupervisionAccountOpened | None = None

    def open(
        self, cmd: OpenSupervisionAccount, at: datetime, institution: KnownInstitution | None
    ) -> None:
        if institution is None:
            raise BadInput(f"no registered institution has id {cmd.id!r}", field="institution_id")
        mode = choice(SupervisionMode, cmd.mode, "mode")
        number = re.sub(r"[\s-]", "", cmd.account_no or "").upper()
        if not _ACCOUNT_NO.match(number):
            raise BadInput(
                "an account number is 6-34 letters and digits (spaces and dashes ignored)",
                field="account_no",
            )
        if mode is SupervisionMode.RISK_DEPOSIT:
            if cmd.deposit is None:
                raise BadInput("a RISK_DEPOSIT account needs the deposit held", field="deposit")
            deposit = to_fen(cmd.deposit, "deposit")
        elif cmd.deposit is not None:
            raise BadInput(
                "a BANK_CUSTODY account holds the escrow, not a deposit", field="deposit"
            )
        else:
            deposit = 0
        fact = SupervisionAccountOpened(
            institution_id=institution.id,
            region=institution.region,
            mode=mode,
            bank=clean_text(cmd.bank, "bank", BANK_MAX),
            account_no=number,
            deposit_fen=deposit,
        )
        if self.opened is not None:
            if self.opened == fact:
                return
            raise Conflict(
                f"institution {institution.id} already has a supervised account (one per "
                "institution)",
                field="institution_id",
            )
        if institution.status in TERMINAL:
            raise Conflict(
                f"institution {institution.id} is {institution.status}: it takes no account",
                field="institution_id",
            )
        self.region = institution.region
        self._record(fact, at)

    @event_dispatch
    def when(self, event: DomainEvent, at: datetime) -> None:
        super().when(event, at)

    @when.register
    def _(self, event: SupervisionAccountOpened, at: datetime) -> None:
        self.opened = event
        self.region = event.region


@dataclass
class Delivery:
    lessons: int
    confirm_by: date
    confirmed: int = 0

    @property
    def pending(self) -> int:
        return self.lessons - self.confirmed


@dataclass
class Request:
    lessons: int | None
    answer_by: date
    answered: bool = False


class Order(ExclusiveIds):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.fact: PrepaidOrderRecorded | None = None
        self.consumed = 0
        self.refunded = 0
        self.deliveries: dict[int, Delivery] = {}
        self.requests: dict[int, Request] = {}

    # --- derived --------------------------------------------------------------------

    @property
    def remaining(self) -> int:
        """Lessons paid for and neither consumed nor refunded: what escrow still holds."""
        assert self.fact is not None
        return self.fact.lessons - self.consumed - self.refunded

    @property
    def awaiting_confirmation(self) -> int:
        return sum(d.pending for d in self.deliveries.values())

    @property
    def refundable(self) -> int:
        """Remaining lessons not reported as given (those are the parent's to confirm)."""
        return self.remaining - self.awaiting_confirmation

    # --- decisions ------------------------------------------------------------------

    def record(
        self,
        cmd: RecordPrepaidOrder,
        at: datetime,
        institution: KnownInstitution | None,
        has_account: bool,
        payer_key: bytes,
        policy: FinancePolicy,
    ) -> None:
        fact = order_event(cmd, at, institution, has_account, payer_key, policy)
        if self.fact is not None:
            if self.fact == fact:
                return
            raise Conflict(
                f"order {self.id} is already recorded with different details", field="id"
            )
        self.region = fact.region
        self._record(fact, at)

    def confirm(self, lessons: int, at: datetime) -> None:
        self._require(at)
        self._lessons(lessons, "lessons", self.remaining, "held in escrow")
        self._confirm(lessons, at, automatic=False)

    def report_delivered(
        self, lessons: int, at: datetime, calendar: WorkCalendar, policy: FinancePolicy
    ) -> None:
        fact = self._require(at)
        self._lessons(
            lessons, "lessons", self.refundable, "neither consumed, refunded nor reported"
        )
        self._record(
            LessonsDelivered(
                institution_id=fact.institution_id,
                delivery=len(self.deliveries) + 1,
                lessons=lessons,
                confirm_by=calendar.working_days_after(
                    local_date(at), policy.confirm_within_working_days
                ),
            ),
            at,
        )

    def refund(self, lessons: int | None, reason: str, at: datetime) -> None:
        self._require(at)
        reason = clean_text(reason, "reason", REASON_MAX, multiline=True)
        if lessons is None and not self.refundable:
            raise Conflict(f"order {self.id} has no refundable lesson left", field="id")
        count = self.refundable if lessons is None else lessons
        self._lessons(
            count, "lessons", self.refundable, "refundable (unconsumed, not reported given)"
        )
        self._refund(count, reason, at, None)

    def request_refund(
        self,
        lessons: int | None,
        reason: str,
        at: datetime,
        calendar: WorkCalendar,
        policy: FinancePolicy,
    ) -> None:
        fact = self._require(at)
        reason = clean_text(reason, "reason", REASON_MAX, multiline=True)
        if lessons is not None:
            self._lessons(lessons, "lessons", self.refundable, "refundable")
        elif not self.refundable:
            raise Conflict(f"order {self.id} has no refundable lesson left", field="id")
        self._record(
            RefundRequested(
                institution_id=fact.institution_id,
                request=len(self.requests) + 1,
                lessons=lessons,
                reason=reason,
                answer_by=calendar.working_days_after(
                    local_date(at), policy.answer_refund_within_working_days
                ),
            ),
            at,
        )

    def answer_refund(self, request: int, accept: bool, note: str | None, at: datetime) -> None:
        self._require(at)
        asked = self.requests.get(request)
        if asked is None:
            raise NotFound(f"order {self.id} has no refund request {request}", field="request")
        if asked.answered:
            raise Conflict(
                f"refund request {request} of order {self.id} is answered", field="request"
            )
        note = clean_text(note, "note", REASON_MAX, multiline=True) if note else None
        self._answer(request, accept, note, at, automatic=False)

    def settle_due(self, today: date, at: datetime) -> None:
        """What nobody answered in time: delivered lessons count as confirmed the day after
        their 15th working day, refund requests as accepted after their 5th."""
        if self.fact is None:
            raise NotFound(f"no order with id {self.id}", field="id")
        due = [n for n, d in sorted(self.deliveries.items()) if d.pending and d.confirm_by < today]
        lessons = min(sum(self.deliveries[n].pending for n in due), self.remaining)
        if lessons:
            self._confirm(lessons, at, automatic=True, among=due)
        for n, asked in sorted(self.requests.items()):
            if not asked.answered and asked.answer_by < today:
                self._answer(n, True, None, at, automatic=True)

    def _confirm(
        self, lessons: int, at: datetime, *, automatic: bool, among: list[int] | None = None
    ) -> None:
        """Consume lessons, settling delivery reports oldest first (``among`` only, for the
        clock: a report not yet due is never confirmed for the parent)."""
        assert self.fact is not None
        settled: list[int] = []
        left = lessons
        for n, delivery in sorted(self.deliveries.items()):
            if among is not None and n not in among:
                continue
            if left and delivery.pending:
                settled.append(n)
                left -= min(left, delivery.pending)
        self._record(
            LessonsConfirmed(
                institution_id=self.fact.institution_id,
                lessons=lessons,
                amount_fen=lessons * self.fact.price_fen,
                deliveries=tuple(settled),
                automatic=automatic,
            ),
            at,
        )

    def _answer(
        self, request: int, accept: bool, note: str | None, at: datetime, *, automatic: bool
    ) -> None:
        assert self.fact is not None
        self._record(
            RefundRequestAnswered(
                institution_id=self.fact.institution_id,
                request=request,
                accepted=accept,
                note=note,
                automatic=automatic,
            ),
            at,
        )
        if accept:
            asked = self.requests[request]
            count = min(asked.lessons or self.refundable, self.refundable)
            if count:
                self._refund(count, f"refund request {request} accepted", at, request)

    def _refund(self, lessons: int, reason: str, at: datetime, request: int | None) -> None:
        assert self.fact is not None
        self._record(
            LessonsRefunded(
                institution_id=self.fact.institution_id,
                lessons=lessons,
                amount_fen=lessons * self.fact.price_fen,
                reason=reason,
                request=request,
            ),
            at,
        )

    def _require(self, at: datetime) -> PrepaidOrderRecorded:
        if self.fact is None:
            raise NotFound(f"no order with id {self.id}", field="id")
        if at < self.fact.paid_at:
            raise BadInput(
                f"{at.isoformat()} is before the order was paid ({self.fact.paid_at.isoformat()})",
                field="occurred_at",
            )
        return self.fact

    def _lessons(self, lessons: int, field: str, available: int, what: str) -> None:
        if lessons < 1:
            raise BadInput("lessons is at least 1", field=field)
        if lessons > available:
            assert self.fact is not None
            raise Conflict(
                f"order {self.id} has {available} lesson(s) {what} "
                f"({yuan(available * self.fact.price_fen)} yuan); {lessons} asked: nothing "
                "beyond what escrow holds is released or refunded",
                field=field,
            )

    # --- state ----------------------------------------------------------------------

    @event_dispatch
    def when(self, event: DomainEvent, at: datetime) -> None:
        super().when(event, at)

    @when.register
    def _(self, event: PrepaidOrderRecorded, at: datetime) -> None:
        self.fact = event
        self.region = event.region

    @when.register
    def _(self, event: LessonsDelivered, at: datetime) -> None:
        self.deliveries[event.delivery] = Delivery(event.lessons, event.confirm_by)

    @when.register
    def _(self, event: LessonsConfirmed, at: datetime) -> None:
        self.consumed += event.lessons
        left = event.lessons
        for n in event.deliveries:
            delivery = self.deliveries[n]
            take = min(left, delivery.pending)
            delivery.confirmed += take
            left -= take

    @when.register
    def _(self, event: RefundRequested, at: datetime) -> None:
        self.requests[event.request] = Request(event.lessons, event.answer_by)

    @when.register
    def _(self, event: RefundRequestAnswered, at: datetime) -> None:
        self.requests[event.request].answered = True

    @when.register
    def _(self, event: LessonsRefunded, at: datetime) -> None:
        self.refunded += event.lessons


def order_event(
    cmd: RecordPrepaidOrder,
    at: datetime,
    institution: KnownInstitution | None,
    has_account: bool,
    payer_key: bytes,
    policy: FinancePolicy,
) -> PrepaidOrderRecorded:
    """Check a prepaid order against every rule and turn it into the fact to record."""
    payer = clean_text(cmd.payer_ref, "payer_ref", PAYER_MAX)
    if not cmd.lessons >= 1:
        raise BadInput("lessons is at least 1", field="lessons")
    if cmd.lessons > policy.max_lessons:
        raise BadInput(
            f"one charge covers at most {policy.max_lessons} lessons (教监管函〔2021〕2号); "
            f"{cmd.lessons} asked",
            field="lessons",
        )
    price = to_fen(cmd.price_per_lesson, "price_per_lesson")
    if price > policy.max_price_fen:
        raise BadInput(
            f"a lesson costs at most {yuan(policy.max_price_fen)} yuan", field="price_per_lesson"
        )
    if cmd.course_end < cmd.course_start:
        raise BadInput("the course ends before it starts", field="course_end")
    latest = add_months(cmd.course_start, policy.max_course_months)
    if cmd.course_end > latest:
        raise BadInput(
            f"one charge covers at most {policy.max_course_months} months of course "
            f"(教监管函〔2021〕2号): from {cmd.course_start.isoformat()} it ends by "
            f"{latest.isoformat()}",
            field="course_end",
        )
    amount = cmd.lessons * price
    if amount > policy.max_amount_fen:
        raise BadInput(
            f"one charge is at most {yuan(policy.max_amount_fen)} yuan; {cmd.lessons} × "
            f"{yuan(price)} = {yuan(amount)}",
            field="price_per_lesson",
        )
    if institution is None:
        raise BadInput(
            f"no registered institution has id {cmd.institution_id!r}", field="institution_id"
        )
    if not has_account:
        raise Conflict(
            f"institution {institution.id} has no supervised account: all prepaid fees go "
            "into one (教监管函〔2021〕2号)",
            field="institution_id",
        )
    if institution.status != "APPROVED":
        raise Conflict(
            f"institution {institution.id} is {institution.status}: only an APPROVED "
            "institution takes prepaid orders",
            field="institution_id",
        )
    if (
        institution.category == "SUBJECT"
        and not institution.non_profit
        and local_date(at) > policy.non_profit_deadline
    ):
        raise Conflict(
            f"institution {institution.id} is a for-profit SUBJECT institution after the 营转非 "
            f"deadline ({policy.non_profit_deadline.isoformat()}): it may not collect fees",
            field="institution_id",
        )
    return PrepaidOrderRecorded(
        institution_id=institution.id,
        region=institution.region,
        payer_hash=payer_hash(payer_key, payer),
        lessons=cmd.lessons,
        price_fen=price,
        amount_fen=amount,
        course_start=cmd.course_start,
        course_end=cmd.course_end,
        paid_at=at,
    )


class Risk(ExclusiveIds):
    """An institution's risk level: GREEN until a rule says otherwise; each change of
    level is a fact with its reasons."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.level = RiskLevel.GREEN
        self.rules: frozenset[str] = frozenset()

    def assess(
        self, institution_id: str, region: str, level: RiskLevel, reasons: list[str], at: datetime
    ) -> None:
        """Record the level when it, or the set of rules that give it, changed (a count
        going from 5 to 6 is no new fact; complaints joining refund requests is)."""
        rules = frozenset(reason.split(":", 1)[0] for reason in reasons)
        if level == self.level and rules == self.rules:
            return
        self.region = region
        self._record(
            RiskLevelChanged(
                institution_id=institution_id,
                region=region,
                level=level,
                previous=self.level,
                reasons=tuple(reasons),
            ),
            at,
        )

    @event_dispatch
    def when(self, event: DomainEvent, at: datetime) -> None:
        super().when(event, at)

    @when.register
    def _(self, event: RiskLevelChanged, at: datetime) -> None:
        self.level = event.level
        self.rules = frozenset(reason.split(":", 1)[0] for reason in event.reasons)
        self.region = event.region
