"""What happens to prepaid money, as past-tense facts. Money is integer fen.

A supervised account's full number is in ``SupervisionAccountOpened`` (the store keeps
it); what readers may see of an event (the audit trail, live subscriptions) has it
masked (``module.redact``). A payer is only ever a keyed hash.
"""

from __future__ import annotations

from datetime import date, datetime

from services.common.aggregate import DomainEvent, EventTypes
from services.finance.domain.rules import RiskLevel, SupervisionMode

SERVICE = "finance"

ACCOUNT_STREAM = "account:"
"""An institution's account is the stream ``account:<institution id>``: one per institution."""
RISK_STREAM = "risk:"
"""An institution's risk assessment is the stream ``risk:<institution id>``."""


def account_stream(institution_id: str) -> str:
    return ACCOUNT_STREAM + institution_id


def risk_stream(institution_id: str) -> str:
    return RISK_STREAM + institution_id


class SupervisionAccountOpened(DomainEvent):
    TYPE = "finance.SupervisionAccountOpened"

    institution_id: str
    region: str
    mode: SupervisionMode
    bank: str
    account_no: str
    # RISK_DEPOSIT: the deposit held against the institution's prepaid liabilities.
    deposit_fen: int


class PrepaidOrderRecorded(DomainEvent):
    TYPE = "finance.PrepaidOrderRecorded"

    institution_id: str
    region: str
    payer_hash: str
    lessons: int
    price_fen: int
    amount_fen: int
    course_start: date
    course_end: date
    paid_at: datetime


class LessonsDelivered(DomainEvent):
    """The institution reports lessons given; the parent has until ``confirm_by`` (15
    working days) to confirm them, after which they count as confirmed."""

    TYPE = "finance.LessonsDelivered"

    institution_id: str
    delivery: int
    lessons: int
    confirm_by: date


class LessonsConfirmed(DomainEvent):
    """一课一销: lessons consumed, their fee released from escrow to the institution."""

    TYPE = "finance.LessonsConfirmed"

    institution_id: str
    lessons: int
    amount_fen: int
    # The delivery reports this confirmation settles, and whether nobody answered in time.
    deliveries: tuple[int, ...]
    automatic: bool


class RefundRequested(DomainEvent):
    """A parent asks for unconsumed lessons back; unanswered by ``answer_by`` (5 working
    days) it counts as accepted."""

    TYPE = "finance.RefundRequested"

    institution_id: str
    request: int
    lessons: int | None  # None: every remaining lesson
    reason: str
    answer_by: date


class RefundRequestAnswered(DomainEvent):
    TYPE = "finance.RefundRequestAnswered"

    institution_id: str
    request: int
    accepted: bool
    note: str | None
    automatic: bool


class LessonsRefunded(DomainEvent):
    """Unconsumed lessons' money goes back to the payer."""

    TYPE = "finance.LessonsRefunded"

    institution_id: str
    lessons: int
    amount_fen: int
    reason: str
    request: int | None


class RiskLevelChanged(DomainEvent):
    """The institution's risk level changed, or the rules that give it did (every
    institution starts GREEN, with no rule fired)."""

    TYPE = "finance.RiskLevelChanged"

    institution_id: str
    region: str
    level: RiskLevel
    previous: RiskLevel
    reasons: tuple[str, ...]


FINANCE_EVENTS = EventTypes(
    SupervisionAccountOpened,
    PrepaidOrderRecorded,
    LessonsDelivered,
    LessonsConfirmed,
    RefundRequested,
    RefundRequestAnswered,
    LessonsRefunded,
    RiskLevelChanged,
)
