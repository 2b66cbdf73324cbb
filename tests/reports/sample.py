"""A monthly report as ``monthly.build`` would fill it: 固原市, June 2025, five districts.

Every kind of measure is there (counts, money, rates), a rate with nothing to divide by
(``None``), figures that fell since last month, a district without findings, and three
twelve-month trends (one with a gap). The districts add up to the city's figures.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal

from services.common.timeutil import SHANGHAI
from services.reports.model import (
    Breakdown,
    BreakdownRow,
    ChildRow,
    Figure,
    Measure,
    MonthlyReport,
    RegionInfo,
    Section,
    Trend,
    Value,
)

ACTIVE = Measure("institutions_active", "在册机构", "count", stock=True)
REGISTERED = Measure("institutions_registered", "新登记机构", "count")
DEREGISTERED = Measure("institutions_deregistered", "注销机构", "count")
COVERAGE = Measure("escrow_coverage", "资金监管覆盖率", "rate", stock=True)
INSPECTIONS = Measure("inspections", "检查批次", "count")
FINDINGS = Measure("findings", "发现问题", "count")
RECTIFIED = Measure("rectification_rate", "整改完成率", "rate")
COMPLAINTS = Measure("complaints", "投诉举报", "count")
BALANCE = Measure("escrow_balance", "监管账户余额", "money", stock=True)
DEPOSITED = Measure("escrow_deposited", "本月入账", "money")
RELEASED = Measure("escrow_released", "本月释放", "money")
REFUNDED = Measure("refunds", "退费金额", "money")

# May had no rectification due: nothing to divide by.
RECTIFIED_BY_MONTH: list[Value] = [
    *(0.7917, 0.8077, 0.8333, 0.8525, 0.7931, 0.875),
    *(0.9048, 0.8649, 0.8909, 0.8841, None, 0.8596),
]
MONTHS = [date(2024, 7 + i, 1) if i < 6 else date(2025, i - 5, 1) for i in range(12)]


def amounts(text: str) -> list[Value]:
    """Yuan amounts written one after another: ``"1.00 2.50"``."""
    return [Decimal(v) for v in text.split()]


def sample_report() -> MonthlyReport:
    """The same report every time (no clock, no randomness)."""
    return MonthlyReport(
        region=RegionInfo("640400", "固原市", "宁夏回族自治区固原市", "CITY"),
        month=date(2025, 6, 1),
        previous_month=date(2025, 5, 1),
        generated_at=datetime(2025, 7, 1, 8, 30, tzinfo=SHANGHAI),
        generated_by="jiaoyuju-640400",
        sections=(
            Section(
                "机构管理",
                (
                    Figure(ACTIVE, 1286, 1301),
                    Figure(REGISTERED, 12, 9),
                    Figure(DEREGISTERED, 27, 31),
                    Figure(COVERAGE, 0.9627, 0.9511),
                ),
            ),
            Section(
                "检查执法",
                (
                    Figure(INSPECTIONS, 342, 298),
                    Figure(FINDINGS, 57, 73),
                    Figure(RECTIFIED, 0.8596, None),
                    Figure(COMPLAINTS, 41, 38),
                ),
            ),
            Section(
                "资金监管",
                (
                    Figure(BALANCE, Decimal("48215306.42"), Decimal("49020118.05")),
                    Figure(DEPOSITED, Decimal("6832450.00"), Decimal("7105900.50")),
                    Figure(RELEASED, Decimal("7637261.63"), Decimal("6981002.17")),
                    Figure(REFUNDED, Decimal("215340.80"), Decimal("198760.00")),
                ),
            ),
        ),
        breakdowns=(
            Breakdown(
                "问题类型",
                (
                    BreakdownRow("消防安全", 18, 25),
                    BreakdownRow("资质证照", 11, 14),
                    BreakdownRow("收费管理", 9, 12),
                    BreakdownRow("教学内容", 7, 6),
                    BreakdownRow("从业人员", 8, 10),
                    BreakdownRow("其他", 4, 6),
                ),
            ),
            Breakdown(
                "投诉举报渠道",
                (
                    BreakdownRow("12345热线", 19, 15),
                    BreakdownRow("网络平台", 13, 12),
                    BreakdownRow("来信来访", 5, 7),
                    BreakdownRow("电话举报", 4, 4),
                ),
            ),
        ),
        child_level="区县",
        child_measures=(ACTIVE, INSPECTIONS, FINDINGS, RECTIFIED, BALANCE),
        ranked_by=INSPECTIONS,
        children=(
            child(1, "640402", "原州区", 512, 128, 21, 0.9048, "19802114.60"),
            child(2, "640422", "西吉县", 265, 76, 14, 0.8571, "9215400.00"),
            child(3, "640425", "彭阳县", 201, 61, 9, 1.0, "7300551.22"),
            child(4, "640423", "隆德县", 178, 45, 13, 0.6923, "6890040.18"),
            child(5, "640424", "泾源县", 130, 32, 0, None, "5007200.42"),
        ),
        trends=(
            Trend(
                "检查批次与发现问题",
                (INSPECTIONS, FINDINGS),
                MONTHS,
                {
                    INSPECTIONS.key: [215, 236, 301, 288, 276, 190, 122, 208, 265, 310, 298, 342],
                    FINDINGS.key: [48, 52, 66, 61, 58, 40, 21, 37, 55, 69, 73, 57],
                },
                chart="bar",
            ),
            Trend(
                "监管资金入账与释放",
                (DEPOSITED, RELEASED),
                MONTHS,
                {
                    DEPOSITED.key: amounts(
                        "5120300.00 9804512.30 4415000.00 3987650.75 3560210.40 2990880.00 "
                        "8120455.90 2450110.00 6540300.25 7302118.60 7105900.50 6832450.00"
                    ),
                    RELEASED.key: amounts(
                        "4980112.40 6203455.00 5612300.80 5120040.00 4871230.55 4330987.10 "
                        "3520120.00 3101450.65 5230980.00 6780312.45 6981002.17 7637261.63"
                    ),
                },
                chart="line",
            ),
            Trend(
                "整改完成率",
                (RECTIFIED,),
                MONTHS,
                {
                    RECTIFIED.key: RECTIFIED_BY_MONTH,
                },
                chart="line",
            ),
        ),
        notes=(
            "检查批次：本月完成的现场检查次数，联合检查计一次。",
            "整改完成率：本月到期的整改事项中按期完成的比例；当月无到期事项时不计算，记为“—”。",
            "监管账户余额为月末各机构预收费监管账户余额之和；本月入账、本月释放、退费金额为当月发生额。",
            "本通报数据取自双减监管平台，与平台查询接口同一口径。",
        ),
    )


def child(
    rank: int,
    code: str,
    name: str,
    active: int,
    inspections: int,
    findings: int,
    rectified: float | None,
    balance: str,
) -> ChildRow:
    return ChildRow(
        rank,
        code,
        name,
        {
            ACTIVE.key: active,
            INSPECTIONS.key: inspections,
            FINDINGS.key: findings,
            RECTIFIED.key: rectified,
            BALANCE.key: Decimal(balance),
        },
    )


def district_report() -> MonthlyReport:
    """The same month for 原州区, which has no child regions."""
    report = sample_report()
    return replace(
        report,
        region=RegionInfo("640402", "原州区", "宁夏回族自治区固原市原州区", "DISTRICT"),
        child_level="",
        children=(),
    )
