"""Risk watch: an institution's risk level is judged again whenever something it rests
on happens (DESIGN.md: an overdue FEES rectification raises a finance risk level).

``RiskWatch`` follows the registry's lifecycle events, the inspections service's
complaints and FEES rectification orders, and finance's own money events, and sends
finance an ``AssessRisk`` for the institution each one is about. The finance command
reads its signals from the read models (the projections ran first) and records a
``RiskLevelChanged`` only when the level changes. What moves with the calendar alone
(30-day windows, deadlines) the finance clock judges once a day.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.common.config import ServiceSettings
from services.common.envelope import Envelope
from services.common.process import ProcessManager, Reaction
from services.finance.module import MODULE as FINANCE
from services.finance.module import AssessRisk, RiskLevelChanged
from services.inspections.module import MODULE as INSPECTIONS
from services.registry.module import MODULE as REGISTRY

REGISTRY_LIFECYCLE = frozenset(
    {
        "registry.InstitutionRegistered",
        "registry.InstitutionApproved",
        "registry.InstitutionSuspended",
        "registry.InstitutionResumed",
        "registry.InstitutionRevoked",
        "registry.InstitutionExited",
    }
)
INSPECTION_SIGNALS = frozenset(
    {
        "inspections.ComplaintFiled",
        "inspections.InspectionRecorded",
        "inspections.RectificationVerified",
    }
)


class RiskWatch(ProcessManager):
    name = "process.risk_watch"

    def __init__(self) -> None:
        super().__init__()
        self.sources = (REGISTRY.name, INSPECTIONS.name, FINANCE.name)

    def handles(self, event: Envelope) -> bool:
        if event.service == REGISTRY.name:
            return event.type in REGISTRY_LIFECYCLE
        if event.service == INSPECTIONS.name:
            return event.type in INSPECTION_SIGNALS
        return event.service == FINANCE.name and event.type != RiskLevelChanged.TYPE

    def react(self, event: Envelope) -> Sequence[Reaction]:
        return [
            Reaction(AssessRisk(id=institution), key=f"risk:{institution}")
            for institution in sorted(self._about(event))
        ]

    def _about(self, event: Envelope) -> set[str]:
        if event.service == REGISTRY.name:
            return {event.stream}
        data = event.data
        if event.type == "inspections.InspectionRecorded":
            return {
                visit["institution_id"]
                for visit in data.get("visits", [])
                if visit.get("institution_id")
                and any(f.get("type") == "FEES" for f in visit.get("findings", []))
            }
        named = data.get("institution_id")
        return {named} if isinstance(named, str) else set()


def risk_watch(settings: Mapping[str, ServiceSettings]) -> RiskWatch:
    return RiskWatch()
