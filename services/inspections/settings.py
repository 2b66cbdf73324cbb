"""The inspections service's own settings: its policy numbers (national defaults), the
training-calendar configuration, what the process manager does, and where it listens."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field, model_validator

from services.common.config import CalendarSettings, ServiceSettings
from services.inspections.domain.rules import FindingType, InspectionPolicy
from services.inspections.domain.schedule import SchedulePolicy, SchoolBreak


class BreakSetting(BaseModel):
    name: str
    start: date
    end: date


class InspectionsSettings(ServiceSettings, CalendarSettings):
    inspections_url: str = Field(
        "http://127.0.0.1:8002",
        description="Where the distributed gateway sends inspections commands.",
    )
    inspections_rectify_within_days: int = Field(
        30, ge=1, le=365, description="Rectification deadline when a batch does not give one."
    )
    inspections_yellow_card_findings: list[FindingType] = Field(
        default_factory=lambda: [FindingType.UNLICENSED_OPERATION, FindingType.HIDDEN_TRAINING],
        description="Finding types at a registered institution that get it a YELLOW card "
        '(JSON list, e.g. ["UNLICENSED_OPERATION"]; [] turns the rule off).',
    )
    inspections_red_card_after_failed_verifications: int = Field(
        2,
        ge=0,
        le=100,
        description="Failed verifications of one rectification order that get its institution "
        "a RED card; 0 turns the rule off.",
    )
    inspections_school_breaks: dict[str, list[BreakSetting]] = Field(
        default_factory=dict,
        description="Per province (2-digit prefix), its winter and summer breaks, replacing "
        'the national defaults: {"34": [{"name": "summer", "start": "2025-07-05", '
        '"end": "2025-08-31"}]}.',
    )

    @model_validator(mode="after")
    def _schedule_is_usable(self) -> InspectionsSettings:
        """A day listed as both holiday and workday, or a province key that is not two
        digits, is refused when the settings load, not at the first schedule check."""
        self.schedule()
        return self

    @property
    def url(self) -> str:
        return self.inspections_url

    def policy(self) -> InspectionPolicy:
        return InspectionPolicy(
            rectify_within_days=self.inspections_rectify_within_days,
            yellow_card_findings=frozenset(self.inspections_yellow_card_findings),
            red_card_after_failed_verifications=self.inspections_red_card_after_failed_verifications,
        )

    def schedule(self) -> SchedulePolicy:
        return SchedulePolicy(
            extra_holidays=frozenset(self.extra_holidays),
            extra_workdays=frozenset(self.extra_workdays),
            province_breaks={
                province: tuple(SchoolBreak(b.name, b.start, b.end) for b in breaks)
                for province, breaks in self.inspections_school_breaks.items()
            },
        )
