"""The monthly report (每月通报) as data: what the XLSX and PDF renderers lay out.

``monthly.build`` fills it from the public GraphQL API, so every number in it is one
GraphQL answers for the same region and month; the renderers only format. Nothing here
does I/O.

A ``Measure`` is one figure's definition: a *flow* counts what happened in the month
(本月), a *stock* is the standing at the end of the month (月末; the current month: as of
now). Values are ``int`` for counts, ``Decimal`` yuan for money and ``float`` (0..1) for
rates; ``None`` where a rate has nothing to divide by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

Kind = Literal["count", "money", "rate"]
Value = int | Decimal | float | None


@dataclass(frozen=True)
class Measure:
    key: str
    label: str  # Chinese, as printed: "检查批次"
    kind: Kind
    stock: bool = False  # True: at the end of the month; False: during the month

    @property
    def unit(self) -> str:
        return {"count": "", "money": "元", "rate": "%"}[self.kind]


def change(value: Value, previous: Value) -> Value:
    """``value - previous``; ``None`` when either is missing."""
    if value is None or previous is None:
        return None
    if isinstance(value, Decimal) or isinstance(previous, Decimal):
        return Decimal(value) - Decimal(previous)
    return value - previous


@dataclass(frozen=True)
class Figure:
    """One headline figure of the month and of the month before."""

    measure: Measure
    value: Value
    previous: Value

    @property
    def change(self) -> Value:
        return change(self.value, self.previous)


@dataclass(frozen=True)
class Section:
    title: str  # "机构管理", "检查执法", "资金监管"
    figures: Sequence[Figure]


@dataclass(frozen=True)
class BreakdownRow:
    label: str  # "消防安全"
    value: int
    previous: int

    @property
    def change(self) -> int:
        return self.value - self.previous


@dataclass(frozen=True)
class Breakdown:
    """A count split by kind: findings by type, complaints by channel."""

    title: str
    rows: Sequence[BreakdownRow]


@dataclass(frozen=True)
class ChildRow:
    """One child region of the report's region, with its figures of the month."""

    rank: int  # 1 = first; equal values share a rank
    code: str
    name: str
    values: dict[str, Value]  # by Measure.key of ``MonthlyReport.child_measures``


@dataclass(frozen=True)
class Trend:
    """One chart: a few measures over the twelve months ending with the report's month."""

    title: str
    measures: Sequence[Measure]
    months: Sequence[date]  # first days, oldest first
    values: dict[str, Sequence[Value]]  # by Measure.key, one per month
    chart: Literal["bar", "line"] = "bar"


@dataclass(frozen=True)
class RegionInfo:
    code: str
    name: str
    full_name: str  # "宁夏回族自治区固原市原州区"
    level: Literal["PROVINCE", "CITY", "DISTRICT"]


@dataclass(frozen=True)
class MonthlyReport:
    region: RegionInfo
    month: date  # first day
    previous_month: date
    generated_at: datetime
    generated_by: str  # the token's subject
    sections: Sequence[Section]
    breakdowns: Sequence[Breakdown]
    child_level: str  # "市" / "区县"; empty for a district (it has no children)
    child_measures: Sequence[Measure]
    ranked_by: Measure  # one of child_measures; children come sorted by it
    children: Sequence[ChildRow]
    trends: Sequence[Trend]
    notes: Sequence[str] = field(default_factory=tuple)  # definitions printed at the end

    @property
    def title(self) -> str:
        return f"{self.region.full_name}“双减”工作{self.month.year}年{self.month.month}月通报"

    def figure(self, key: str) -> Figure:
        for section in self.sections:
            for figure in section.figures:
                if figure.measure.key == key:
                    return figure
        raise KeyError(key)
