"""The registry's command API over HTTP, for district systems and the distributed gateway.

The routes, request bodies and error answers come from the command table
(``handlers.COMMANDS``) through the kernel (``services.common.http``); what is the
registry's own here is its description and its answer: the institution as the command
left it.
"""

from __future__ import annotations

from typing import Any

from services.common.commands import AggregateState

DESCRIPTION = "Commands to the register of off-campus training institutions."


class InstitutionState(AggregateState):
    """The institution as the command left it, and the events it recorded."""

    status: str | None
    category: str | None
    non_subject_kind: str | None
    non_profit: bool
    list_mark: str
    license_no: str | None

    @classmethod
    def fields(cls, aggregate: Any) -> dict[str, Any]:
        return {
            "status": aggregate.status,
            "category": aggregate.category,
            "non_subject_kind": aggregate.kind,
            "non_profit": aggregate.non_profit,
            "list_mark": aggregate.list_mark,
            "license_no": aggregate.license_no,
        }
