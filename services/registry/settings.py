"""The registry's own settings: its policy numbers (national defaults) and where it listens."""

from __future__ import annotations

from datetime import date

from pydantic import Field

from services.common.config import ServiceSettings
from services.registry.domain.rules import RegistryPolicy


class RegistrySettings(ServiceSettings):
    registry_url: str = Field(
        "http://127.0.0.1:8001",
        description="Where the distributed gateway sends registry commands.",
    )

    # Policy dates (national defaults; a jurisdiction may override).
    policy_start: date = date(2021, 7, 24)
    non_profit_deadline: date = date(2021, 12, 31)
    baseline_date: date = date(2021, 7, 24)
    authority_overrides: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description='Per region prefix, e.g. {"43": {"ARTS": "EDUCATION"}} (JSON in the env var).',
    )
    baseline_overrides: dict[str, date] = Field(
        default_factory=dict,
        description='Per region prefix, another baseline day, e.g. {"12": "2021-09-01"}.',
    )
    red_cards_for_suspension: int = Field(
        2, ge=0, description="RED cards that recommend suspension; 0 turns the rule off."
    )
    red_while_overdue_recommends_suspension: bool = True

    @property
    def url(self) -> str:
        return self.registry_url

    def policy(self) -> RegistryPolicy:
        return RegistryPolicy(
            policy_start=self.policy_start,
            non_profit_deadline=self.non_profit_deadline,
            baseline_date=self.baseline_date,
            authority_overrides=self.authority_overrides,
            baseline_overrides=self.baseline_overrides,
            red_cards_for_suspension=self.red_cards_for_suspension,
            red_while_overdue_recommends_suspension=self.red_while_overdue_recommends_suspension,
        )
