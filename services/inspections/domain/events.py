"""What inspection work records, as past-tense facts. Field names are the stored JSON.

Money is stored in fen (integers), never as a float.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict

from services.common.aggregate import DomainEvent, EventTypes
from services.inspections.domain.rules import (
    Circumstance,
    ComplaintChannel,
    FindingType,
    InspectionKind,
    PenaltyArticle,
    PenaltyKind,
)

SERVICE = "inspections"  # the prefix of every type below, the store's and the topic's name

RECTIFICATION_SEPARATOR = "~"
"""A rectification order's id is ``<inspection id>~<n>``, n counting the batch's visits
with findings from 1. ``~`` cannot appear in an inspection id, so the split is exact."""


def rectification_id(inspection_id: str, number: int) -> str:
    return f"{inspection_id}{RECTIFICATION_SEPARATOR}{number}"


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: FindingType
    description: str


class Visit(BaseModel):
    """One place the batch went to: a registered institution, or a free-text venue."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    institution_id: str | None
    venue: str | None
    findings: tuple[Finding, ...]
    # The rectification order the findings opened (``None`` for a visit without findings).
    rectification: str | None


class InspectionRecorded(DomainEvent):
    """检查批次: a batch went out, with its people, departments and visits."""

    TYPE = "inspections.InspectionRecorded"

    region: str
    kind: InspectionKind
    started_at: datetime
    personnel: int
    departments: tuple[str, ...]
    visits: tuple[Visit, ...]
    # Every rectification order the batch opened is due on this day.
    deadline: date


class RectificationSubmitted(DomainEvent):
    """The institution reports that it has rectified."""

    TYPE = "inspections.RectificationSubmitted"

    rectification: str
    institution_id: str | None
    note: str


class RectificationVerified(DomainEvent):
    """The inspector checked: passed closes the order, failed sends it back to OPEN."""

    TYPE = "inspections.RectificationVerified"

    rectification: str
    institution_id: str | None
    passed: bool
    note: str | None
    # Failed verifications of this order so far, this one included.
    failures: int


class ComplaintFiled(DomainEvent):
    """举报."""

    TYPE = "inspections.ComplaintFiled"

    region: str
    channel: ComplaintChannel
    institution_id: str | None
    text: str


class ComplaintResolved(DomainEvent):
    TYPE = "inspections.ComplaintResolved"

    institution_id: str | None
    substantiated: bool
    note: str


class LawTalkRecorded(DomainEvent):
    """法治谈话 with ``persons`` people."""

    TYPE = "inspections.LawTalkRecorded"

    region: str
    institution_id: str | None
    persons: int


class PenaltyImposed(DomainEvent):
    """An administrative penalty under 教育部令第53号."""

    TYPE = "inspections.PenaltyImposed"

    region: str
    institution_id: str | None
    venue: str | None
    article: PenaltyArticle
    circumstance: Circumstance
    kind: PenaltyKind
    fine_fen: int
    illegal_gains_fen: int | None
    reason: str


INSPECTION_EVENTS = EventTypes(
    InspectionRecorded,
    RectificationSubmitted,
    RectificationVerified,
    ComplaintFiled,
    ComplaintResolved,
    LawTalkRecorded,
    PenaltyImposed,
)
