"""The inspections service as a module of the platform, and the names other layers may
use of it.

``MODULE`` is what ``services/bootstrap.py`` lists. The gateway and the process managers
reach the service only through this file and ``views.py``: the commands they send and
the vocabulary (enums) they show are re-exported here.

It publishes one lookup for other services' command sides,
``inspections.rectification_overdue`` (has an institution a rectification order past
its deadline, as of the caller's clock?), and uses the registry's
``registry.institution_regions`` to check the institutions a command names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from services.common.envelope import Envelope
from services.common.module import (
    CommandService,
    Lookup,
    ServiceModule,
    Wiring,
    institution_named_in,
)
from services.common.ports import ReadStore
from services.common.projection import Projection
from services.common.regions import RegionTree
from services.common.timeutil import local_date
from services.inspections import views
from services.inspections.api import DESCRIPTION
from services.inspections.domain.commands import (
    FileComplaint,
    FindingInput,
    RecordInspection,
    RecordLawTalk,
    RecordPenalty,
    ResolveComplaint,
    SubmitRectification,
    VerifyRectification,
    VisitInput,
)
from services.inspections.domain.events import (
    INSPECTION_EVENTS,
    SERVICE,
    InspectionRecorded,
    RectificationVerified,
)
from services.inspections.domain.rules import (
    Circumstance,
    ComplaintChannel,
    ComplaintStatus,
    FindingType,
    InspectionKind,
    InspectionPolicy,
    PenaltyArticle,
    PenaltyKind,
    RectificationStatus,
)
from services.inspections.domain.schedule import RULES as SCHEDULE_RULES
from services.inspections.domain.schedule import Lesson, ScheduleCheck, check_schedule
from services.inspections.handlers import COMMANDS, Inspections
from services.inspections.projections import InspectionsProjection
from services.inspections.settings import InspectionsSettings

__all__ = [
    "INSPECTION_EVENTS",
    "MODULE",
    "SCHEDULE_RULES",
    "Circumstance",
    "ComplaintChannel",
    "ComplaintStatus",
    "FileComplaint",
    "FindingInput",
    "FindingType",
    "InspectionKind",
    "InspectionPolicy",
    "InspectionRecorded",
    "InspectionsSettings",
    "Lesson",
    "PenaltyArticle",
    "PenaltyKind",
    "RecordInspection",
    "RecordLawTalk",
    "RecordPenalty",
    "RectificationStatus",
    "RectificationVerified",
    "ResolveComplaint",
    "ScheduleCheck",
    "SubmitRectification",
    "VerifyRectification",
    "VisitInput",
    "check_schedule",
]

INSTITUTION_REGIONS = "registry.institution_regions"
RECTIFICATION_OVERDUE = "inspections.rectification_overdue"


def application(wiring: Wiring[InspectionsSettings]) -> CommandService:
    return Inspections(
        wiring.store,
        wiring.regions,
        wiring.settings.policy(),
        wiring.lookup(INSTITUTION_REGIONS),
        **wiring.options,
    )


def projections(regions: RegionTree, settings: InspectionsSettings) -> Sequence[Projection]:
    return [InspectionsProjection(regions)]


def overdue_lookup(store: ReadStore, clock: Callable[[], datetime]) -> Lookup:
    async def overdue(institution_id: str) -> bool:
        return await views.rectification_overdue(store, institution_id, local_date(clock()))

    return overdue


def institutions_of(event: Envelope) -> Sequence[str]:
    """A batch is about every registered institution it visited; the other events about
    the one their data names."""
    if event.type == InspectionRecorded.TYPE:
        visits = event.data.get("visits") or []
        return [v["institution_id"] for v in visits if isinstance(v.get("institution_id"), str)]
    return institution_named_in(event)


MODULE = ServiceModule(
    name=SERVICE,
    description=DESCRIPTION,
    events=INSPECTION_EVENTS,
    settings=InspectionsSettings,
    commands=COMMANDS,
    application=application,
    projections=projections,
    port=8002,
    audit_subject=institutions_of,
    provides={RECTIFICATION_OVERDUE: overdue_lookup},
)
