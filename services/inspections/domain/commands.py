"""Commands of inspection work: what a caller asks for, before any rule is checked.

Each is a ``Command`` (an optional ``id`` and a business time ``occurred_at``) with its own
fields; their descriptions are what the HTTP API documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from services.common.commands import Command, described


@dataclass(frozen=True)
class FindingInput:
    type: str = described("FIRE_SAFETY, STAFF_QUALIFICATION, … (FindingType)")
    description: str = described("What was found.")


@dataclass(frozen=True)
class VisitInput:
    institution_id: str | None = described(
        "A registered institution in the batch's district.", None
    )
    venue: str | None = described(
        "Free-text place when no registered institution is involved (a flat, a café).", None
    )
    findings: list[FindingInput] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class RecordInspection(Command):
    """检查批次. ``occurred_at`` is ``started_at``."""

    region: str = described("6-digit district code of the inspecting office.")
    kind: str = described("DAILY, NIGHT, JOINT, RANDOM, SPECIAL or SUPERVISOR")
    started_at: datetime = described("When the batch went out; naive means Asia/Shanghai.")
    personnel: int = described("People sent out (出动人次).")
    departments: list[str] = field(default_factory=list)
    visits: list[VisitInput] = field(default_factory=list)
    rectify_within_days: int | None = described(
        "Days until the rectification deadline for visits with findings (default 30).", None
    )


@dataclass(frozen=True, kw_only=True)
class SubmitRectification(Command):
    """The institution reports the order rectified (``id`` is the order's)."""

    note: str


@dataclass(frozen=True, kw_only=True)
class VerifyRectification(Command):
    """The inspector's verification: passed closes the order, failed reopens it."""

    passed: bool
    note: str | None = None


@dataclass(frozen=True, kw_only=True)
class FileComplaint(Command):
    region: str = described("6-digit district code.")
    channel: str = described("PLATFORM, HOTLINE_12345, PETITION, ONLINE or OTHER")
    institution_id: str | None = described("The institution complained about, if registered.", None)
    text: str = described("What the complaint says.")


@dataclass(frozen=True, kw_only=True)
class ResolveComplaint(Command):
    substantiated: bool
    note: str


@dataclass(frozen=True, kw_only=True)
class RecordLawTalk(Command):
    """法治谈话."""

    region: str = described("6-digit district code.")
    institution_id: str | None = None
    persons: int = described("People talked to.")


@dataclass(frozen=True, kw_only=True)
class RecordPenalty(Command):
    """An administrative penalty under 教育部令第53号."""

    region: str = described("6-digit district code of the deciding office.")
    institution_id: str | None = described("A registered institution in that district.", None)
    venue: str | None = described("Who or where, when no registered institution is involved.", None)
    article: str = described("ARTICLE_17 (unapproved), ARTICLE_18 (disguised subject) or OTHER")
    kind: str = described(
        "WARNING, FINE, CONFISCATION, STOP_ENROLLING, STOP_OPERATING or LICENCE_REVOCATION"
    )
    circumstance: str = described("ORDINARY, SERIOUS or ESPECIALLY_SERIOUS (情节)", "ORDINARY")
    fine: Decimal | None = described("Yuan, at most two decimals; required for a FINE.", None)
    illegal_gains: Decimal | None = described("违法所得 in yuan, at most two decimals.", None)
    reason: str = described("The facts and the decision's reference.")
