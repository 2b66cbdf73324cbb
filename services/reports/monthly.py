"""The monthly report (每月通报) of a region, filled from the public GraphQL API.

``build`` runs one GraphQL query (``QUERY``) through the gateway's schema as the caller,
with the caller's token scope, and lays the answer out as a ``MonthlyReport``: so every
number in a report is one GraphQL answers for the same region and month, and a region
outside the caller's scope is ``FORBIDDEN`` exactly as it is over GraphQL. The renderers
(``xlsx.py``, ``pdf.py``) only format.

What a report holds, per ``MEASURES``: the month's flows (本月: what happened in it) and
the standing at its end (月末, ``MonthlyStats.atMonthEnd``; as of now for the current
month), each beside the month before; findings by type and complaints by channel; the
child regions ranked by inspection batches; twelve-month trends.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import strawberry

from services.common.errors import BadInput, from_code
from services.common.timeutil import local_date
from services.gateway.context import GatewayContext
from services.reports.labels import CHILD_LEVELS, COMPLAINT_CHANNELS, FINDING_TYPES
from services.reports.model import (
    Breakdown,
    BreakdownRow,
    ChildRow,
    Kind,
    Measure,
    MonthlyReport,
    RegionInfo,
    Section,
    Trend,
    Value,
)
from services.reports.model import (
    Figure as HeadlineFigure,
)

TREND_MONTHS = 12
MONTH = re.compile(r"^(\d{4})-(\d{2})$")

_MONTH_FIELDS = """
  month
  institutionsRegistered institutionsClosed
  inspections personnelDispatched institutionsInspected findings
  findingsByType { type count }
  rectificationsOpened rectificationsClosed
  complaints complaintsByChannel { channel count }
  lawTalks jointActions penalties
  orders orderAmount released refunded
  atMonthEnd {
    institutionsActive subject subjectBaseline subjectCompressionRate
    rectificationsOpened rectificationsClosed rectificationRate rectificationsOverdue
    escrowBalance riskGreen riskYellow riskRed
  }
"""

QUERY = f"""
query MonthlyReport($code: String!, $from: Date!, $to: Date!, $previous: Date!) {{
  viewer {{ subject }}
  region(code: $code) {{
    code name fullName level
    history(from: $from, to: $to) {{ ...Month }}
    children {{ code name history(from: $previous, to: $to) {{ ...Month }} }}
  }}
}}
fragment Month on MonthlyStats {{ {_MONTH_FIELDS} }}
"""
"""The one query a report is made of (the tests send it over HTTP and compare)."""

Month = Mapping[str, Any]  # one MonthlyStats of the answer


def _at(*path: str) -> Callable[[Month], Any]:
    def read(month: Month) -> Any:
        value: Any = month
        for name in path:
            value = value[name]
        return value

    return read


@dataclass(frozen=True)
class Metric:
    measure: Measure
    read: Callable[[Month], Any]

    def value(self, month: Month) -> Value:
        raw = self.read(month)
        if raw is None:
            return None
        if self.measure.kind == "money":
            return Decimal(raw)
        if self.measure.kind == "rate":
            return float(raw)
        return int(raw)


def _metric(key: str, label: str, kind: Kind, path: str, stock: bool = False) -> Metric:
    return Metric(Measure(key, label, kind, stock), _at(*path.split(".")))


METRICS: dict[str, Metric] = {
    m.measure.key: m
    for m in (
        _metric("institutions_active", "在册机构", "count", "atMonthEnd.institutionsActive", True),
        _metric("subject", "学科类机构", "count", "atMonthEnd.subject", True),
        _metric(
            "subject_compression_rate",
            "学科类机构压减率",
            "rate",
            "atMonthEnd.subjectCompressionRate",
            True,
        ),
        _metric("institutions_registered", "新登记机构", "count", "institutionsRegistered"),
        _metric("institutions_closed", "取缔或注销机构", "count", "institutionsClosed"),
        _metric("inspections", "检查批次", "count", "inspections"),
        _metric("personnel_dispatched", "出动人次", "count", "personnelDispatched"),
        _metric("institutions_inspected", "排查机构", "count", "institutionsInspected"),
        _metric("findings", "发现问题", "count", "findings"),
        _metric("rectifications_opened", "下发整改", "count", "rectificationsOpened"),
        _metric("rectifications_closed", "完成整改", "count", "rectificationsClosed"),
        _metric("rectification_rate", "整改率", "rate", "atMonthEnd.rectificationRate", True),
        _metric(
            "rectifications_overdue",
            "逾期未整改",
            "count",
            "atMonthEnd.rectificationsOverdue",
            True,
        ),
        _metric("complaints", "投诉举报", "count", "complaints"),
        _metric("law_talks", "法治谈话人数", "count", "lawTalks"),
        _metric("joint_actions", "联合执法行动", "count", "jointActions"),
        _metric("penalties", "行政处罚", "count", "penalties"),
        _metric("orders", "预收费订单", "count", "orders"),
        _metric("order_amount", "预收费金额", "money", "orderAmount"),
        _metric("released", "课消释放资金", "money", "released"),
        _metric("refunded", "退费金额", "money", "refunded"),
        _metric("escrow_balance", "监管账户余额", "money", "atMonthEnd.escrowBalance", True),
        _metric("risk_red", "红色风险机构", "count", "atMonthEnd.riskRed", True),
        _metric("risk_yellow", "黄色风险机构", "count", "atMonthEnd.riskYellow", True),
        _metric("risk_green", "绿色（正常）机构", "count", "atMonthEnd.riskGreen", True),
    )
}

SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "机构管理",
        (
            "institutions_active",
            "subject",
            "subject_compression_rate",
            "institutions_registered",
            "institutions_closed",
        ),
    ),
    (
        "检查执法",
        (
            "inspections",
            "personnel_dispatched",
            "institutions_inspected",
            "findings",
            "rectifications_opened",
            "rectifications_closed",
            "rectification_rate",
            "rectifications_overdue",
            "complaints",
            "law_talks",
            "joint_actions",
            "penalties",
        ),
    ),
    (
        "资金监管",
        (
            "orders",
            "order_amount",
            "released",
            "refunded",
            "escrow_balance",
            "risk_red",
            "risk_yellow",
            "risk_green",
        ),
    ),
)

CHILD_COLUMNS = (
    "inspections",
    "personnel_dispatched",
    "institutions_inspected",
    "findings",
    "rectification_rate",
    "rectifications_overdue",
    "complaints",
    "institutions_active",
    "subject_compression_rate",
    "order_amount",
    "escrow_balance",
    "risk_red",
)
RANKED_BY = "inspections"

TRENDS: tuple[tuple[str, tuple[str, ...], Literal["bar", "line"]], ...] = (
    ("检查执法", ("inspections", "institutions_inspected", "findings"), "bar"),
    ("整改情况", ("rectifications_opened", "rectifications_closed"), "bar"),
    ("整改率（月末）", ("rectification_rate",), "line"),
    ("投诉举报", ("complaints",), "bar"),
    ("预收费资金", ("order_amount", "released", "refunded"), "bar"),
    ("在册机构（月末）", ("institutions_active", "subject"), "line"),
    ("风险机构（月末）", ("risk_red", "risk_yellow"), "line"),
)

NOTES = (
    "“本月”指标统计当月（按业务发生时间）的工作量；标注“月末”的指标为月末存量，"
    "当月尚未结束时为截至生成时的数据。",
    "整改率 = 截至月末累计完成整改数 ÷ 累计下发整改数；"
    "学科类机构压减率 = （基线日在营学科类机构数 − 月末学科类机构数）÷ 基线日在营学科类机构数。",
    "排查机构为当月检查到的不同机构和场所数，同一机构当月多次检查计一次。",
    "逾期未整改为整改期限在月末之前、月末仍未完成整改的整改通知数。",
    "环比变化 = 本月 − 上月。下级地区按本月检查批次由多到少排名，并列者名次相同。",
    "本通报的每个数字与平台 GraphQL 接口（region.history）对同一地区、同一月份的答复一致。",
)


def parse_month(text: str, today: date) -> date:
    """``YYYY-MM`` → its first day; a month after the current one is refused."""
    match = MONTH.match(text.strip())
    if not match or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1900:
        raise BadInput(f"month must be YYYY-MM, e.g. 2025-03, not {text[:20]!r}", field="month")
    month = date(int(match[1]), int(match[2]), 1)
    if month > today.replace(day=1):
        raise BadInput(f"{text} has not begun yet", field="month")
    return month


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


async def build(
    schema: strawberry.Schema, context: GatewayContext, region: str, month: str
) -> MonthlyReport:
    """The report of ``region`` for ``month`` (``YYYY-MM``) as the context's caller sees it.

    Raises what GraphQL would answer: ``BadInput`` for the arguments, ``Forbidden`` for a
    region outside the caller's scope.
    """
    now = context.backend.clock()
    first = parse_month(month, local_date(now))
    previous = add_months(first, -1)
    variables = {
        "code": region,
        "from": add_months(first, 1 - TREND_MONTHS).isoformat(),
        "to": first.isoformat(),
        "previous": previous.isoformat(),
    }
    result = await schema.execute(QUERY, variable_values=variables, context_value=context)
    if result.errors:  # answered as GraphQL would, the argument named as the report's
        error = result.errors[0]
        extensions = error.extensions or {}
        named = str(extensions.get("field") or "")
        field = {"code": "region", "from": "month", "to": "month"}.get(named, named or None)
        raise from_code(extensions.get("code"), error.message, field)
    assert result.data is not None
    return assemble(result.data, first, now)


def assemble(data: Mapping[str, Any], month: date, now: datetime) -> MonthlyReport:
    """Lay out a GraphQL answer to ``QUERY`` (pure: the tests feed it answers)."""
    region = data["region"]
    history = {row["month"]: row for row in region["history"]}
    this, before = history[month.isoformat()], history[add_months(month, -1).isoformat()]
    sections = [
        Section(
            title,
            [
                HeadlineFigure(
                    METRICS[key].measure, METRICS[key].value(this), METRICS[key].value(before)
                )
                for key in keys
            ],
        )
        for title, keys in SECTIONS
    ]
    breakdowns = [
        _breakdown("问题类型", "findingsByType", "type", FINDING_TYPES, this, before),
        _breakdown("投诉渠道", "complaintsByChannel", "channel", COMPLAINT_CHANNELS, this, before),
    ]
    months = sorted(history)
    trends = [
        Trend(
            title,
            [METRICS[key].measure for key in keys],
            [date.fromisoformat(m) for m in months],
            {key: [METRICS[key].value(history[m]) for m in months] for key in keys},
            chart,
        )
        for title, keys, chart in TRENDS
    ]
    return MonthlyReport(
        region=RegionInfo(region["code"], region["name"], region["fullName"], region["level"]),
        month=month,
        previous_month=add_months(month, -1),
        generated_at=now,
        generated_by=data["viewer"]["subject"],
        sections=sections,
        breakdowns=breakdowns,
        child_level=CHILD_LEVELS[region["level"]],
        child_measures=[METRICS[key].measure for key in CHILD_COLUMNS],
        ranked_by=METRICS[RANKED_BY].measure,
        children=_ranked(region["children"], month),
        trends=trends,
        notes=NOTES,
    )


def _breakdown(
    title: str,
    field: str,
    name: str,
    labels: Mapping[str, str],
    this: Month,
    before: Month,
) -> Breakdown:
    now = {row[name]: row["count"] for row in this[field]}
    then = {row[name]: row["count"] for row in before[field]}
    return Breakdown(
        title,
        [
            BreakdownRow(label, now.get(code, 0), then.get(code, 0))
            for code, label in labels.items()
            if now.get(code) or then.get(code)
        ],
    )


def _ranked(children: Sequence[Mapping[str, Any]], month: date) -> list[ChildRow]:
    rows = []
    for child in children:
        this = next(m for m in child["history"] if m["month"] == month.isoformat())
        values = {key: METRICS[key].value(this) for key in CHILD_COLUMNS}
        rows.append((child["code"], child["name"], values))

    def order(row: tuple[str, str, dict[str, Value]]) -> tuple[bool, Any, str]:
        value = row[2][RANKED_BY]
        return (value is None, -(value or 0), row[0])

    rows.sort(key=order)
    ranked: list[ChildRow] = []
    for position, (code, name, values) in enumerate(rows, start=1):
        tied = ranked and ranked[-1].values[RANKED_BY] == values[RANKED_BY]
        rank = ranked[-1].rank if tied else position
        ranked.append(ChildRow(rank, code, name, values))
    return ranked
