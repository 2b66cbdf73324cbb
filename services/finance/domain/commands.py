"""Commands about prepaid money: what a caller asks for, before any rule is checked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from services.common.commands import Command, described


@dataclass(frozen=True, kw_only=True)
class OpenSupervisionAccount(Command):
    """``id`` is the institution's: it has one supervised account."""

    mode: str = described("BANK_CUSTODY or RISK_DEPOSIT")
    bank: str
    account_no: str = described("Stored; every read shows only its last four digits.")
    deposit: Decimal | None = described("RISK_DEPOSIT: the deposit held, in yuan.", None)


@dataclass(frozen=True, kw_only=True)
class RecordPrepaidOrder(Command):
    institution_id: str
    payer_ref: str = described("Pseudonymous payer reference, stored only as a keyed hash.")
    lessons: int
    price_per_lesson: Decimal = described("Yuan, at most two decimals.")
    course_start: date
    course_end: date
    paid_at: datetime


@dataclass(frozen=True, kw_only=True)
class ConfirmLessons(Command):
    """The parent confirms lessons (``id`` is the order's)."""

    lessons: int


@dataclass(frozen=True, kw_only=True)
class ReportLessonsDelivered(Command):
    """The institution reports lessons given; unconfirmed in 15 working days, they count."""

    lessons: int


@dataclass(frozen=True, kw_only=True)
class RefundOrder(Command):
    """Refund unconsumed lessons (every remaining one when ``lessons`` is omitted)."""

    lessons: int | None = None
    reason: str


@dataclass(frozen=True, kw_only=True)
class RequestRefund(Command):
    """A parent's refund request; unanswered in 5 working days it counts as accepted."""

    lessons: int | None = None
    reason: str


@dataclass(frozen=True, kw_only=True)
class AnswerRefundRequest(Command):
    """The institution's answer to request ``request`` of the order."""

    request: int
    accept: bool
    note: str | None = None


@dataclass(frozen=True, kw_only=True)
class SettleDue(Command):
    """The clock's command: whatever of the order has fallen due by ``today`` (delivered
    lessons nobody confirmed, requests nobody answered) is settled automatically."""

    today: date


@dataclass(frozen=True, kw_only=True)
class AssessRisk(Command):
    """Judge an institution's risk level again (``id`` is the institution's)."""
