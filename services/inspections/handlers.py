"""The inspections service's command side: one handler per command, each a
load-decide-append on its aggregate.

``Inspections`` holds one ``Application`` per aggregate type (batches with their
rectification orders, complaints, law talks, penalties) over the service's one event
store, and sends each command to the one whose table lists it. Ids are unique within
the service: a complaint cannot take an inspection's id.

Institutions are the registry's: a command that names some looks them up through the
registry's published lookup (``registry.institution_regions``, over its read model), and
the aggregate decides on what was found, so the decision stays pure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from services.common.aggregate import Aggregate
from services.common.application import (
    Application,
    Applications,
)
from services.common.commands import (
    Call,
    CommandTable,
    Decision,
    Route,
    business_time,
    entity_id,
)
from services.common.errors import BadInput
from services.common.ports import EventStore
from services.common.regions import RegionTree
from services.inspections.api import (
    ComplaintState,
    InspectionState,
    LawTalkState,
    PenaltyState,
)
from services.inspections.domain.commands import (
    FileComplaint,
    RecordInspection,
    RecordLawTalk,
    RecordPenalty,
    ResolveComplaint,
    SubmitRectification,
    VerifyRectification,
)
from services.inspections.domain.events import (
    INSPECTION_EVENTS,
    RECTIFICATION_SEPARATOR,
    SERVICE,
)
from services.inspections.domain.model import (
    Complaint,
    Inspection,
    Institutions,
    KnownInstitution,
    LawTalk,
    Penalty,
)
from services.inspections.domain.rules import InspectionPolicy
from services.inspections.projections import COMPLAINTS, INSPECTIONS, LAW_TALKS, PENALTIES

InstitutionRegions = Callable[[Sequence[str]], Awaitable[Mapping[str, str]]]
"""The registry's lookup: the district of each registered institution among the ids."""


class Service(Application[Any]):
    """One aggregate type's command side, with what its handlers need to decide."""

    def __init__(
        self,
        store: EventStore,
        factory: Callable[[str], Aggregate],
        commands: CommandTable | Sequence[CommandTable],
        regions: RegionTree,
        policy: InspectionPolicy,
        institution_regions: InstitutionRegions,
        **options: Any,
    ) -> None:
        super().__init__(store, INSPECTION_EVENTS, factory, commands, **options)
        self.regions = regions
        self.policy = policy
        self.institution_regions = institution_regions

    async def institutions(self, ids: Iterable[str | None]) -> Institutions:
        wanted = sorted({id for id in ids if id is not None})
        if len(wanted) > 2_000:
            raise BadInput("a command names at most 2,000 institutions")
        found = await self.institution_regions(wanted) if wanted else {}
        return {id: KnownInstitution(id, found[id]) if id in found else None for id in wanted}


Act = Call[Service]


async def record_inspection(cmd: RecordInspection, o: Act) -> Decision[Inspection]:
    # A batch's business time is when it went out.
    at = business_time(cmd.started_at, o.service.clock(), "started_at")
    known = await o.service.institutions(v.institution_id for v in cmd.visits)
    return lambda i: i.record(cmd, at, o.service.regions, known, o.service.policy)


async def submit_rectification(cmd: SubmitRectification, o: Act) -> Decision[Inspection]:
    return lambda i: i.submit(cmd.id or "", cmd.note, o.at)


async def verify_rectification(cmd: VerifyRectification, o: Act) -> Decision[Inspection]:
    return lambda i: i.verify(cmd.id or "", cmd.passed, cmd.note, o.at)


async def file_complaint(cmd: FileComplaint, o: Act) -> Decision[Complaint]:
    known = await o.service.institutions([cmd.institution_id])
    return lambda c: c.file(cmd, o.at, o.service.regions, known)


async def resolve_complaint(cmd: ResolveComplaint, o: Act) -> Decision[Complaint]:
    return lambda c: c.resolve(cmd.substantiated, cmd.note, o.at)


async def record_law_talk(cmd: RecordLawTalk, o: Act) -> Decision[LawTalk]:
    known = await o.service.institutions([cmd.institution_id])
    return lambda t: t.record(cmd, o.at, o.service.regions, known)


async def record_penalty(cmd: RecordPenalty, o: Act) -> Decision[Penalty]:
    known = await o.service.institutions([cmd.institution_id])
    return lambda p: p.impose(cmd, o.at, o.service.regions, known, o.service.policy)


def inspection_of(rectification: str) -> str:
    """The batch a rectification order (``<inspection>~<n>``) belongs to."""
    inspection, separator, number = rectification.rpartition(RECTIFICATION_SEPARATOR)
    if not separator or not number.isascii() or not number.isdigit() or len(number) > 5:
        raise BadInput(
            f"{rectification[:80]!r} is not a rectification id (<inspection id>~<n>)", field="id"
        )
    return entity_id(inspection)  # an inspection id, checked like any other


INSPECTIONS_TABLE = CommandTable(
    resource="inspections",
    read_model=INSPECTIONS.name,
    state=InspectionState,
    routes=(Route(RecordInspection, record_inspection, summary="检查批次", creates=True),),
)
RECTIFICATIONS_TABLE = CommandTable(
    # A rectification order is part of its batch: its commands answer with the batch.
    resource="rectifications",
    read_model=INSPECTIONS.name,
    state=InspectionState,
    stream_of=inspection_of,
    routes=(
        Route(SubmitRectification, submit_rectification, "submit", "The institution reports"),
        Route(VerifyRectification, verify_rectification, "verify", "The inspector verifies"),
    ),
)
COMPLAINTS_TABLE = CommandTable(
    resource="complaints",
    read_model=COMPLAINTS.name,
    state=ComplaintState,
    routes=(
        Route(FileComplaint, file_complaint, summary="举报", creates=True),
        Route(ResolveComplaint, resolve_complaint, "resolve"),
    ),
)
LAW_TALKS_TABLE = CommandTable(
    resource="law-talks",
    read_model=LAW_TALKS.name,
    state=LawTalkState,
    routes=(Route(RecordLawTalk, record_law_talk, summary="法治谈话", creates=True),),
)
PENALTIES_TABLE = CommandTable(
    resource="penalties",
    read_model=PENALTIES.name,
    state=PenaltyState,
    routes=(
        Route(RecordPenalty, record_penalty, summary="行政处罚 (教育部令第53号)", creates=True),
    ),
)
COMMANDS = (
    INSPECTIONS_TABLE,
    RECTIFICATIONS_TABLE,
    COMPLAINTS_TABLE,
    LAW_TALKS_TABLE,
    PENALTIES_TABLE,
)


class Inspections(Applications):
    """The service: batches (with their orders), complaints, law talks, penalties."""

    def __init__(
        self,
        store: EventStore,
        regions: RegionTree,
        policy: InspectionPolicy,
        institution_regions: InstitutionRegions,
        **options: Any,
    ) -> None:
        """``options``: what every ``Application`` takes (``Wiring.options``)."""
        shared = (regions, policy, institution_regions)
        self.batches = Service(
            store, Inspection, (INSPECTIONS_TABLE, RECTIFICATIONS_TABLE), *shared, **options
        )
        self.complaints = Service(store, Complaint, COMPLAINTS_TABLE, *shared, **options)
        self.law_talks = Service(store, LawTalk, LAW_TALKS_TABLE, *shared, **options)
        self.penalties = Service(store, Penalty, PENALTIES_TABLE, *shared, **options)
        super().__init__(SERVICE, self.batches, self.complaints, self.law_talks, self.penalties)
