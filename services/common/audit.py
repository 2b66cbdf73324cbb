"""The audit trail: every event about an institution, from every service, with its actor.

It follows every module's events. Each module says which institution an event of its
is about (``ServiceModule.audit_subject``): for the registry the stream itself, for the
others the ``institution_id`` their data names.

The trail is read in ``order``: when the event was recorded, then, for events recorded
at the same instant, its service and stream and its version in that stream. The events
of one commit share their recording time, so they are listed as the stream holds them
(a warning card before the suspension recommendation it caused); streams tie-break by
name, the same way wherever the trail is built. Neither the event id (random) nor the
position (per event store, and a Kafka offset for the projector) can order them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC

from services.common.envelope import Envelope
from services.common.ports import CollectionSpec, Eq, Page, Query, ReadStore
from services.common.projection import Projection, ProjectionUnit

INSTITUTION_EVENTS = CollectionSpec("institution_events", indexes=("institution", "order"))

SubjectOf = Callable[[Envelope], Sequence[str]]
"""The institutions an event is about (none, one, or several: a batch visiting many)."""

LAYOUT = 2
"""Version of the trail documents: 2 since ``order`` follows the stream's version. A
document is only replaced by one of a higher version, so replaying events over documents
of an older layout rewrites them instead of skipping them as redeliveries. (The
projection keeps its name and position: trails written before need ``shuangjian
rebuild`` once, which drops and replays them.)"""


def trail_order(event: Envelope) -> str:
    """The sort key of ``event`` in a trail: recorded, then service, stream and version."""
    recorded = event.recorded_at.astimezone(UTC).isoformat(timespec="microseconds")
    return f"{recorded}|{event.service}|{event.stream}|{event.version:010d}"


class AuditTrailProjection(Projection):
    """Keyed by event id (``<event id>|<institution>`` for an event's second and later
    institutions), so a redelivered event rewrites the same documents."""

    name = "audit.institution_events"
    collections = (INSTITUTION_EVENTS,)

    def __init__(
        self,
        subjects: Mapping[str, SubjectOf],
        redactions: Mapping[str, Callable[[Envelope], Envelope]] | None = None,
    ) -> None:
        self.subjects = dict(subjects)  # service -> the institution its event is about
        self.sources = tuple(subjects)
        # service -> what readers may see of its event (finance masks account numbers)
        self.redactions = dict(redactions or {})

    async def apply(self, event: Envelope, unit: ProjectionUnit) -> None:
        subject_of = self.subjects.get(event.service)
        institutions = sorted(set(subject_of(event))) if subject_of is not None else []
        order = trail_order(event)
        redact = self.redactions.get(event.service)
        shown = (redact(event) if redact is not None else event).to_dict()
        for index, institution in enumerate(institutions):
            key = str(event.id) if index == 0 else f"{event.id}|{institution}"
            unit.put(
                INSTITUTION_EVENTS.name,
                key,
                {"institution": institution, "order": order, "event": shown},
                LAYOUT,
            )


async def institution_events(
    store: ReadStore, institution: str, first: int, after: str | None
) -> Page:
    """One institution's trail, oldest first; documents hold the envelope under ``event``."""
    return await store.find(
        Query(
            INSTITUTION_EVENTS.name,
            (Eq("institution", institution),),
            order_by="order",
            first=first,
            after=after,
        )
    )
