"""The finance service's command API over HTTP, for district systems and the distributed
gateway. Routes, bodies and error answers come from the command tables
(``handlers.COMMANDS``); what is finance's own is its description and its answers."""

from __future__ import annotations

from typing import Any

from services.common.commands import AggregateState
from services.finance.domain.model import masked

DESCRIPTION = (
    "Commands about prepaid money: supervised accounts, prepaid orders, lessons confirmed "
    "and released (一课一销), refunds and refund requests, risk assessment."
)


class AccountState(AggregateState):
    """The account as the command left it (its number masked)."""

    mode: str | None
    account_no: str | None

    @classmethod
    def fields(cls, aggregate: Any) -> dict[str, Any]:
        opened = aggregate.opened
        return {
            "mode": opened.mode.value if opened else None,
            "account_no": masked(opened.account_no) if opened else None,
        }


class OrderState(AggregateState):
    """The order's lessons and money as the command left them (yuan as strings)."""

    lessons_consumed: int
    lessons_refunded: int
    lessons_remaining: int

    @classmethod
    def fields(cls, aggregate: Any) -> dict[str, Any]:
        if aggregate.fact is None:
            return {"lessons_consumed": 0, "lessons_refunded": 0, "lessons_remaining": 0}
        return {
            "lessons_consumed": aggregate.consumed,
            "lessons_refunded": aggregate.refunded,
            "lessons_remaining": aggregate.remaining,
        }


class RiskState(AggregateState):
    level: str | None

    @classmethod
    def fields(cls, aggregate: Any) -> dict[str, Any]:
        return {"level": aggregate.level.value if aggregate.level else None}
