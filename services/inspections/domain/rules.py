"""The inspection vocabulary and the policy numbers of inspection work (RULES.md).

Everything a jurisdiction may vary lives in ``InspectionPolicy``; the defaults are the
national values. The penalty ranges are those of 《校外培训行政处罚暂行办法》
(教育部令第53号, in force 2023-10-15).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal

from services.common.errors import BadInput


class InspectionKind(enum.StrEnum):
    DAILY = "DAILY"
    NIGHT = "NIGHT"
    JOINT = "JOINT"  # 联合执法: counted as a joint enforcement action
    RANDOM = "RANDOM"
    SPECIAL = "SPECIAL"  # 专项
    SUPERVISOR = "SUPERVISOR"  # 督学


class FindingType(enum.StrEnum):
    FIRE_SAFETY = "FIRE_SAFETY"
    STAFF_QUALIFICATION = "STAFF_QUALIFICATION"
    TRAINING_MATERIAL = "TRAINING_MATERIAL"
    FEES = "FEES"
    HOLIDAY_SUBJECT_TRAINING = "HOLIDAY_SUBJECT_TRAINING"
    HIDDEN_TRAINING = "HIDDEN_TRAINING"
    UNLICENSED_OPERATION = "UNLICENSED_OPERATION"
    FALSE_ADVERTISING = "FALSE_ADVERTISING"
    OTHER = "OTHER"


class RectificationStatus(enum.StrEnum):
    OPEN = "OPEN"
    SUBMITTED = "SUBMITTED"
    CLOSED = "CLOSED"


class ComplaintChannel(enum.StrEnum):
    PLATFORM = "PLATFORM"
    HOTLINE_12345 = "HOTLINE_12345"
    PETITION = "PETITION"  # 信访
    ONLINE = "ONLINE"
    OTHER = "OTHER"


class ComplaintStatus(enum.StrEnum):
    RECEIVED = "RECEIVED"
    RESOLVED = "RESOLVED"


class PenaltyArticle(enum.StrEnum):
    """The article of 教育部令第53号 a penalty rests on."""

    ARTICLE_17 = "ARTICLE_17"  # 未经审批开展校外培训
    ARTICLE_18 = "ARTICLE_18"  # 隐形变异: disguised subject training
    OTHER = "OTHER"


class PenaltyKind(enum.StrEnum):
    WARNING = "WARNING"  # 警告 / 通报批评
    FINE = "FINE"  # 罚款
    CONFISCATION = "CONFISCATION"  # 没收违法所得
    STOP_ENROLLING = "STOP_ENROLLING"  # 责令停止招生
    STOP_OPERATING = "STOP_OPERATING"  # 责令停止举办
    LICENCE_REVOCATION = "LICENCE_REVOCATION"  # 吊销许可证件
    TRADE_RESTRICTION = "TRADE_RESTRICTION"  # 从业限制


class Circumstance(enum.StrEnum):
    """How grave the facts are (情节), which bounds an Article 18 fine."""

    ORDINARY = "ORDINARY"
    SERIOUS = "SERIOUS"  # 情节严重
    ESPECIALLY_SERIOUS = "ESPECIALLY_SERIOUS"  # 情节特别严重


@dataclass(frozen=True)
class InspectionPolicy:
    """National defaults; a deployment overrides them per jurisdiction."""

    # Days a visit's findings may take to rectify when the batch does not say.
    rectify_within_days: int = 30
    # Bounds of what a batch may say (a typo of 3000 days is refused, not recorded).
    max_rectify_days: int = 365
    max_personnel: int = 100_000
    max_visits: int = 2_000
    max_findings_per_visit: int = 50
    max_departments: int = 50
    # Article 17: fine of 1 to 5 times the illegal gains.
    article_17_min_multiple: Decimal = Decimal(1)
    article_17_max_multiple: Decimal = Decimal(5)
    # Article 18: refund and warning; serious up to 50,000 yuan; especially serious
    # 50,000 to 100,000 yuan.
    article_18_serious_max: Decimal = Decimal(50_000)
    article_18_especially_serious_min: Decimal = Decimal(50_000)
    article_18_especially_serious_max: Decimal = Decimal(100_000)
    # Any fine at all (article OTHER included) is at most this much.
    max_fine: Decimal = Decimal(10_000_000)
    # What the process manager does with inspection facts (see services/processes).
    yellow_card_findings: frozenset[FindingType] = field(
        default_factory=lambda: frozenset(
            {FindingType.UNLICENSED_OPERATION, FindingType.HIDDEN_TRAINING}
        )
    )
    red_card_after_failed_verifications: int = 2

    def check_fine(
        self,
        article: PenaltyArticle,
        circumstance: Circumstance,
        fine: Decimal,
        illegal_gains: Decimal | None,
    ) -> None:
        """Refuse a fine outside the range its article allows, naming the article."""
        if fine <= 0:
            raise BadInput("a FINE penalty needs a positive fine amount", field="fine")
        if fine > self.max_fine:
            raise BadInput(f"a fine is at most {self.max_fine:,} yuan", field="fine")
        if article is PenaltyArticle.ARTICLE_17:
            if not illegal_gains:
                raise BadInput(
                    "Article 17 (教育部令第53号) sets the fine at 1-5 times the illegal gains: "
                    "give the illegal gains",
                    field="illegal_gains",
                )
            low = illegal_gains * self.article_17_min_multiple
            high = illegal_gains * self.article_17_max_multiple
            if not low <= fine <= high:
                raise BadInput(
                    f"Article 17 (教育部令第53号) allows a fine of {self.article_17_min_multiple}-"
                    f"{self.article_17_max_multiple} times the illegal gains of {illegal_gains:.2f}"
                    f" yuan, i.e. {low:.2f}-{high:.2f} yuan; {fine:.2f} is outside it",
                    field="fine",
                )
        elif article is PenaltyArticle.ARTICLE_18:
            if circumstance is Circumstance.ORDINARY:
                raise BadInput(
                    "Article 18 (教育部令第53号) fines only serious (up to "
                    f"{self.article_18_serious_max:,} yuan) or especially serious cases; an "
                    "ordinary case gets a refund order and a warning",
                    field="circumstance",
                )
            if circumstance is Circumstance.SERIOUS and fine > self.article_18_serious_max:
                raise BadInput(
                    f"Article 18 (教育部令第53号) allows at most {self.article_18_serious_max:,} "
                    f"yuan when serious; {fine:.2f} is more (especially serious cases: "
                    f"{self.article_18_especially_serious_min:,}-"
                    f"{self.article_18_especially_serious_max:,})",
                    field="fine",
                )
            if circumstance is Circumstance.ESPECIALLY_SERIOUS and not (
                self.article_18_especially_serious_min
                <= fine
                <= self.article_18_especially_serious_max
            ):
                raise BadInput(
                    "Article 18 (教育部令第53号) allows "
                    f"{self.article_18_especially_serious_min:,}-"
                    f"{self.article_18_especially_serious_max:,} yuan when especially serious; "
                    f"{fine:.2f} is outside it",
                    field="fine",
                )
