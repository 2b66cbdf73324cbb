"""The audit trail: every event about an institution, from every service, with its actor.

It follows every module's events. Each module says which institution an event of its
is about (``ServiceModule.audit_subject``): for the registry the stream itself, for the
others the ``institution_id`` their data names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC

from services.common.envelope import Envelope
from services.common.ports import CollectionSpec, Eq, Page, Query, ReadStore
from services.common.projection import Projection, ProjectionUnit

INSTITUTION_EVENTS = CollectionSpec("institution_events", indexes=("institution", "order"))

SubjectOf = Callable[[Envelope], str | None]


class AuditTrailProjection(Projection):
    """Keyed by event id, so a redelivered event rewrites the same document."""

    name = "audit.institution_events"
    collections = (INSTITUTION_EVENTS,)

    def __init__(self, subjects: Mapping[str, SubjectOf]) -> None:
        self.subjects = dict(subjects)  # service -> the institution its event is about
        self.sources = tuple(subjects)

    async def apply(self, event: Envelope, unit: ProjectionUnit) -> None:
        subject_of = self.subjects.get(event.service)
        institution = subject_of(event) if subject_of is not None else None
        if not institution:
            return
        key = str(event.id)
        unit.put(
            INSTITUTION_EVENTS.name,
            key,
            {
                "institution": institution,
                # Recording order within the trail; the id breaks ties between services.
                "order": f"{event.recorded_at.astimezone(UTC).isoformat()}|{key}",
                "event": event.to_dict(),
            },
            1,
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
