"""The prepaid-money rules (RULES.md "Prepaid money") and their national defaults.

教育部等六部门《关于加强校外培训机构预收费监管工作的通知》(教监管函〔2021〕2号) and the 2022
thirteen-department opinion for the amount cap. Everything a jurisdiction may vary is in
``FinancePolicy`` and ``RiskPolicy``; the defaults are the national values.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from services.common.errors import BadInput


class SupervisionMode(enum.StrEnum):
    BANK_CUSTODY = "BANK_CUSTODY"  # 托管: the money sits in escrow, released per lesson
    RISK_DEPOSIT = "RISK_DEPOSIT"  # 风险保证金: a deposit held against prepaid liabilities


class RiskLevel(enum.StrEnum):
    GREEN = "GREEN"
    YELLOW = "YELLOW"
    RED = "RED"


LEVEL_ORDER = {RiskLevel.GREEN: 0, RiskLevel.YELLOW: 1, RiskLevel.RED: 2}


@dataclass(frozen=True)
class FinancePolicy:
    """National defaults; configuration overrides them."""

    max_lessons: int = 60  # one charge: at most 60 class hours ...
    max_course_months: int = 3  # ... or 3 months, whichever is shorter
    max_amount_fen: int = 500_000  # one charge at most 5,000 yuan
    max_price_fen: int = 100_000_00  # a sanity bound on one lesson's price (100,000 yuan)
    # 营转非: a for-profit SUBJECT institution may not collect fees after this day.
    non_profit_deadline: date = date(2021, 12, 31)
    confirm_within_working_days: int = 15  # then delivered lessons count as confirmed
    answer_refund_within_working_days: int = 5  # then a refund request counts as accepted


@dataclass(frozen=True)
class RiskPolicy:
    """The thresholds of the risk rules (``risk.assess``); each is documented there."""

    deposit_cover_yellow: Decimal = Decimal("0.5")
    deposit_cover_red: Decimal = Decimal("0.2")
    refund_requests_yellow: int = 5  # in the last 30 days
    refund_requests_red: int = 15
    complaints_yellow: int = 3  # in the last 30 days
    complaints_red: int = 10
    window_days: int = 30
    # An overdue FEES rectification: this level.
    overdue_fees_level: RiskLevel = RiskLevel.RED
    # A minimum account balance per region prefix (fen), e.g. a city's threshold; below it YELLOW.
    min_balance_fen: Mapping[str, int] = field(default_factory=dict)

    def min_balance_for(self, region: str) -> int | None:
        for prefix in sorted(self.min_balance_fen, key=len, reverse=True):
            if region.startswith(prefix):
                return self.min_balance_fen[prefix]
        return None


MAX_YUAN = Decimal("1000000000000")


def to_fen(value: Decimal | str | int, field: str, *, positive: bool = True) -> int:
    """Exact yuan as integer fen: at most two decimals, never a float."""
    if isinstance(value, float):
        raise BadInput("an amount is a decimal string, never a float", field=field)
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise BadInput(f"{value!r} is not an amount of yuan", field=field) from None
    if not amount.is_finite() or amount >= MAX_YUAN or amount < 0:
        raise BadInput("an amount is between 0 and 999,999,999,999.99 yuan", field=field)
    if positive and amount <= 0:
        raise BadInput("the amount must be positive", field=field)
    if amount != amount.quantize(Decimal("0.01")):
        raise BadInput(f"{amount} has more than two decimals (fen)", field=field)
    return int(amount * 100)


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, or the month's last day (31 Jan + 1 month = 28/29 Feb)."""
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")
