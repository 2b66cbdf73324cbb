"""The inspections service's command API over HTTP, for district systems and the
distributed gateway.

The routes, request bodies and error answers come from the command tables
(``handlers.COMMANDS``) through the kernel (``services.common.http``); what is the
service's own here is its description and its answers: each aggregate as the command
left it. A rectification order's commands answer with its batch.
"""

from __future__ import annotations

from typing import Any

from services.common.commands import AggregateState

DESCRIPTION = (
    "Commands of inspection work: batches with their visits and findings, rectification "
    "orders, complaints, law talks and penalties."
)


class InspectionState(AggregateState):
    """The batch, and the status of every rectification order it opened."""

    rectifications: dict[str, str]

    @classmethod
    def fields(cls, aggregate: Any) -> dict[str, Any]:
        return {"rectifications": {id: o.status.value for id, o in aggregate.orders.items()}}


class ComplaintState(AggregateState):
    status: str

    @classmethod
    def fields(cls, aggregate: Any) -> dict[str, Any]:
        return {"status": "RESOLVED" if aggregate.resolution is not None else "RECEIVED"}


class LawTalkState(AggregateState):
    """A law talk, as recorded."""


class PenaltyState(AggregateState):
    """A penalty, as recorded."""
