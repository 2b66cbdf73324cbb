"""The finance service's own settings: the prepaid-money limits and the risk thresholds
(national defaults), the payer-hash key, its clock, and where it listens."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import Field, SecretStr

from services.common.config import CalendarSettings, ServiceSettings
from services.finance.domain.rules import FinancePolicy, RiskLevel, RiskPolicy, to_fen


class FinanceSettings(ServiceSettings, CalendarSettings):
    finance_url: str = Field(
        "http://127.0.0.1:8003", description="Where the distributed gateway sends finance commands."
    )
    finance_max_lessons: int = Field(60, ge=1, le=1000, description="Lessons one charge covers.")
    finance_max_course_months: int = Field(3, ge=1, le=24, description="Months one charge covers.")
    finance_max_amount: Decimal = Field(
        Decimal(5000), gt=0, description="Yuan one charge may be at most."
    )
    finance_non_profit_deadline: date = Field(
        date(2021, 12, 31),
        description="营转非: for-profit SUBJECT institutions collect no fees after.",
    )
    finance_confirm_within_working_days: int = Field(15, ge=1, le=100)
    finance_answer_refund_within_working_days: int = Field(5, ge=1, le=100)
    finance_payer_secret: SecretStr | None = Field(
        None,
        description="Key of the payer-reference hash (HMAC-SHA256); unset: derived from the "
        "installation's secret (SHUANGJIAN_JWT_SECRET or the data dir's).",
    )
    finance_clock_interval: float = Field(
        60.0, gt=0, le=86_400, description="Seconds between runs of the working-day clock."
    )
    finance_risk_deposit_cover_yellow: Decimal = Field(Decimal("0.5"), ge=0, le=10)
    finance_risk_deposit_cover_red: Decimal = Field(Decimal("0.2"), ge=0, le=10)
    finance_risk_refund_requests_yellow: int = Field(5, ge=0)
    finance_risk_refund_requests_red: int = Field(15, ge=0)
    finance_risk_complaints_yellow: int = Field(3, ge=0)
    finance_risk_complaints_red: int = Field(10, ge=0)
    finance_risk_window_days: int = Field(30, ge=1, le=365)
    finance_risk_overdue_fees_level: RiskLevel = RiskLevel.RED
    finance_risk_min_balance: dict[str, Decimal] = Field(
        default_factory=dict,
        description='Per region prefix, the lowest account balance in yuan: {"3301": "100000"}.',
    )

    @property
    def url(self) -> str:
        return self.finance_url

    def policy(self) -> FinancePolicy:
        return FinancePolicy(
            max_lessons=self.finance_max_lessons,
            max_course_months=self.finance_max_course_months,
            max_amount_fen=to_fen(self.finance_max_amount, "finance_max_amount"),
            non_profit_deadline=self.finance_non_profit_deadline,
            confirm_within_working_days=self.finance_confirm_within_working_days,
            answer_refund_within_working_days=self.finance_answer_refund_within_working_days,
        )

    def risk(self) -> RiskPolicy:
        return RiskPolicy(
            deposit_cover_yellow=self.finance_risk_deposit_cover_yellow,
            deposit_cover_red=self.finance_risk_deposit_cover_red,
            refund_requests_yellow=self.finance_risk_refund_requests_yellow,
            refund_requests_red=self.finance_risk_refund_requests_red,
            complaints_yellow=self.finance_risk_complaints_yellow,
            complaints_red=self.finance_risk_complaints_red,
            window_days=self.finance_risk_window_days,
            overdue_fees_level=self.finance_risk_overdue_fees_level,
            min_balance_fen={
                prefix: to_fen(amount, "finance_risk_min_balance")
                for prefix, amount in self.finance_risk_min_balance.items()
            },
        )
