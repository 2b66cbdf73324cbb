"""Risk levels (红黄绿) of an institution: documented rules over signals, thresholds in
``RiskPolicy`` (configuration). The level is the worst any rule gives; every rule that
fires adds its reason.

1. **Deposit cover** (RISK_DEPOSIT accounts): deposit ÷ outstanding prepaid money (paid
   for lessons neither consumed nor refunded). Below ``deposit_cover_red`` (20%) RED,
   below ``deposit_cover_yellow`` (50%) YELLOW. A BANK_CUSTODY account holds the
   outstanding money itself: its cover is whole by construction.
2. **Refund requests surging**: requests in the last ``window_days`` (30) days, at least
   ``refund_requests_red`` (15) RED, at least ``refund_requests_yellow`` (5) YELLOW.
3. **Complaints**: complaints about the institution in the last 30 days (from the
   inspections service's events), at least ``complaints_red`` (10) RED, at least
   ``complaints_yellow`` (3) YELLOW.
4. **Overdue FEES rectification**: an order for a FEES finding not closed after its
   deadline: ``overdue_fees_level`` (RED).
5. **Money held while closed**: SUSPENDED, REVOKED or EXITED with outstanding money: RED.
6. **Balance under threshold** (e.g. Zhejiang's cities): the account balance (the escrow
   held, or the deposit) under the configured minimum of the region: YELLOW.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal

from services.finance.domain.rules import LEVEL_ORDER, RiskLevel, RiskPolicy, SupervisionMode, yuan

CLOSED_STATUSES = ("SUSPENDED", "REVOKED", "EXITED")


@dataclass(frozen=True)
class Signals:
    """What the rules look at, for one institution."""

    region: str
    status: str | None = None
    mode: SupervisionMode | None = None
    deposit_fen: int = 0
    outstanding_fen: int = 0
    refund_requests: Sequence[date] = ()
    complaints: Sequence[date] = ()
    # (deadline, closed) of each rectification order opened for a FEES finding.
    fees_rectifications: Sequence[tuple[date, bool]] = field(default_factory=tuple)

    @property
    def balance_fen(self) -> int:
        return (
            self.deposit_fen if self.mode is SupervisionMode.RISK_DEPOSIT else self.outstanding_fen
        )


def assess(signals: Signals, today: date, policy: RiskPolicy) -> tuple[RiskLevel, list[str]]:
    """The level and the reasons of every rule that fired (GREEN with none)."""
    found: list[tuple[RiskLevel, str]] = []
    s = signals
    if s.mode is SupervisionMode.RISK_DEPOSIT and s.outstanding_fen > 0:
        cover = Decimal(s.deposit_fen) / Decimal(s.outstanding_fen)
        level = (
            RiskLevel.RED
            if cover < policy.deposit_cover_red
            else RiskLevel.YELLOW
            if cover < policy.deposit_cover_yellow
            else None
        )
        if level:
            found.append(
                (
                    level,
                    f"DEPOSIT_COVER: deposit {yuan(s.deposit_fen)} covers "
                    f"{(cover * 100).quantize(Decimal('0.01'), ROUND_DOWN)}% of "
                    f"{yuan(s.outstanding_fen)} yuan prepaid and outstanding",
                )
            )
    since = today - timedelta(days=policy.window_days)
    requests = sum(1 for day in s.refund_requests if since < day <= today)
    level = _count_level(requests, policy.refund_requests_yellow, policy.refund_requests_red)
    if level:
        found.append(
            (level, f"REFUND_SURGE: {requests} refund requests in {policy.window_days} days")
        )
    complaints = sum(1 for day in s.complaints if since < day <= today)
    level = _count_level(complaints, policy.complaints_yellow, policy.complaints_red)
    if level:
        found.append((level, f"COMPLAINTS: {complaints} complaints in {policy.window_days} days"))
    overdue = [
        deadline for deadline, closed in s.fees_rectifications if not closed and deadline < today
    ]
    if overdue:
        found.append(
            (
                policy.overdue_fees_level,
                f"OVERDUE_FEES_RECTIFICATION: {len(overdue)} FEES rectification order(s) past "
                f"their deadline (the earliest {min(overdue).isoformat()})",
            )
        )
    if s.status in CLOSED_STATUSES and s.outstanding_fen > 0:
        found.append(
            (
                RiskLevel.RED,
                f"MONEY_HELD_WHILE_{s.status}: {yuan(s.outstanding_fen)} yuan prepaid and "
                "not yet consumed or refunded",
            )
        )
    minimum = policy.min_balance_for(s.region)
    if minimum is not None and s.mode is not None and s.balance_fen < minimum:
        found.append(
            (
                RiskLevel.YELLOW,
                f"LOW_BALANCE: account balance {yuan(s.balance_fen)} is under the "
                f"{yuan(minimum)} yuan set for the region",
            )
        )
    if not found:
        return RiskLevel.GREEN, []
    worst = max((level for level, _ in found), key=LEVEL_ORDER.__getitem__)
    return worst, [reason for _, reason in found]


def _count_level(count: int, yellow: int, red: int) -> RiskLevel | None:
    if red and count >= red:
        return RiskLevel.RED
    if yellow and count >= yellow:
        return RiskLevel.YELLOW
    return None
