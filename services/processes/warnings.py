"""Warning cards from inspection work: the inspections service's facts, the registry's act.

``WarningCards`` follows the inspections events and asks the registry for 红黄牌:

* **YELLOW** — an ``InspectionRecorded`` batch found, at a *registered* institution (a
  visit naming ``institution_id``), a finding whose type is one of
  ``yellow_card_findings`` (``SHUANGJIAN_INSPECTIONS_YELLOW_CARD_FINDINGS``; by default
  ``UNLICENSED_OPERATION`` and ``HIDDEN_TRAINING``; ``[]`` turns the rule off). One card
  per institution per batch, however many such findings or visits it had (reaction key
  ``yellow:<institution>``). A venue visit (a flat, a café) names no institution to card.
* **RED** — a ``RectificationVerified`` that failed, for an order of a registered
  institution, when it is the order's ``red_card_after_failed_verifications``-th failure
  (``SHUANGJIAN_INSPECTIONS_RED_CARD_AFTER_FAILED_VERIFICATIONS``, default 2; 0 turns the
  rule off). Exactly that failure: a third failed verification does not card it again
  (reaction key ``red:<rectification id>``).

Each card is dated when its cause happened (the batch's start, the verification) and
names it in its reason. The registry applies its own rules to the card (a RED card may
recommend suspension) and may refuse it (an institution already revoked): that refusal
is recorded in ``process_refusals`` and the stream goes on.

This module reaches the services only through their ``module.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.common.config import ServiceSettings
from services.common.envelope import Envelope
from services.common.process import ProcessManager, Reaction
from services.inspections.module import (
    INSPECTION_EVENTS,
    FindingType,
    InspectionPolicy,
    InspectionRecorded,
    InspectionsSettings,
    RectificationVerified,
)
from services.inspections.module import MODULE as INSPECTIONS
from services.registry.module import IssueWarningCard, WarningColor

REASON_MAX = 500  # what the registry accepts as a card's reason


class WarningCards(ProcessManager):
    """YELLOW cards for inspection findings, RED cards for repeatedly failed rectification
    (the rules are in the module's docstring)."""

    name = "process.warning_cards"

    def __init__(self, policy: InspectionPolicy) -> None:
        super().__init__()
        self.sources = (INSPECTIONS.name,)
        self.yellow_card_findings = frozenset(policy.yellow_card_findings)
        self.red_card_after_failed_verifications = policy.red_card_after_failed_verifications

    def handles(self, event: Envelope) -> bool:
        return event.type in (InspectionRecorded.TYPE, RectificationVerified.TYPE)

    def react(self, event: Envelope) -> Sequence[Reaction]:
        fact = INSPECTION_EVENTS.decode(event)
        if isinstance(fact, InspectionRecorded):
            return self._yellow(event, fact)
        if isinstance(fact, RectificationVerified):
            return self._red(event, fact)
        return ()

    def _yellow(self, event: Envelope, fact: InspectionRecorded) -> list[Reaction]:
        found: dict[str, set[FindingType]] = {}
        for visit in fact.visits:
            if visit.institution_id is None:
                continue
            types = {f.type for f in visit.findings} & self.yellow_card_findings
            if types:
                found.setdefault(visit.institution_id, set()).update(types)
        inspection = event.stream
        return [
            Reaction(
                IssueWarningCard(
                    id=institution,
                    color=WarningColor.YELLOW.value,
                    reason=_clip(
                        f"检查批次 {inspection} 发现：{', '.join(sorted(types))}"
                        f" / inspection {inspection} found: {', '.join(sorted(types))}"
                    ),
                    occurred_at=event.occurred_at,
                ),
                key=f"yellow:{institution}",
            )
            for institution, types in found.items()
        ]

    def _red(self, event: Envelope, fact: RectificationVerified) -> list[Reaction]:
        threshold = self.red_card_after_failed_verifications
        if fact.passed or fact.institution_id is None or not threshold:
            return []
        if fact.failures != threshold:
            return []
        order = fact.rectification
        reason = (
            f"整改单 {order} 第 {fact.failures} 次复查未通过"
            f" / rectification order {order} failed verification {fact.failures} times"
        )
        card = IssueWarningCard(
            id=fact.institution_id,
            color=WarningColor.RED.value,
            reason=_clip(reason),
            occurred_at=event.occurred_at,
        )
        return [Reaction(card, key=f"red:{order}")]


def _clip(text: str) -> str:
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 1] + "…"


def warning_cards(settings: Mapping[str, ServiceSettings]) -> WarningCards:
    """The process manager with the inspections service's policy."""
    own: InspectionsSettings = INSPECTIONS.settings_in(settings.__getitem__)
    return WarningCards(own.policy())
