"""The audit trail lists an institution's events in the order they happened (issue 10, #5).

Events of one commit share their recording time; the trail lists them in stream order
(a warning card before the suspension recommendation it caused), not by their random
ids, on every read store and whatever order they are delivered in.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from services.common.audit import INSTITUTION_EVENTS, AuditTrailProjection, institution_events
from services.common.envelope import Envelope
from services.common.module import institution_named_in
from services.common.ports import ReadStore
from services.common.projection import project
from services.registry.module import MODULE as REGISTRY
from tests.factories import T0, envelope

SUBJECTS = {"registry": REGISTRY.audit_subject, "inspections": institution_named_in}


def event(type_: str, stream: str, version: int, id_digit: str, **fields: Any) -> Envelope:
    """An event whose id is ``id_digit`` repeated: ids sort against the stream's order."""
    return envelope(stream, version, type=type_, id=UUID(id_digit * 32), **fields)


COMMIT = T0 + timedelta(days=30)
TRAIL = [
    event("registry.InstitutionRegistered", "i1", 1, "f"),
    event("registry.InstitutionApproved", "i1", 2, "e", recorded_at=T0 + timedelta(days=1)),
    # One command, one commit: three events recorded at the same instant, ids descending.
    event("registry.WarningCardIssued", "i1", 3, "9", recorded_at=COMMIT),
    event("registry.SuspensionRecommended", "i1", 4, "5", recorded_at=COMMIT),
    event("registry.ListMarkSet", "i1", 5, "1", recorded_at=COMMIT),
    event("registry.InstitutionSuspended", "i1", 6, "0", recorded_at=COMMIT + timedelta(hours=1)),
]
# Another service's event about i1, recorded at the very same instant as the commit.
FINDING = event(
    "inspections.FindingRecorded",
    "f-7",
    1,
    "a",
    recorded_at=COMMIT,
    data={"institution_id": "i1"},
)


async def trail(store: ReadStore, first: int = 50, after: str | None = None) -> list[str]:
    page = await institution_events(store, "i1", first, after)
    return [f"{d['event']['stream']}@{d['event']['version']}" for d in page.items]


def positioned(events: list[Envelope]) -> list[Envelope]:
    return [e.with_position(n) for n, e in enumerate(events, start=1)]


async def test_events_of_one_commit_are_listed_in_stream_order(read_store: ReadStore) -> None:
    projection = AuditTrailProjection(SUBJECTS)
    await read_store.ensure(list(projection.collections))
    await project(projection, read_store, "registry", positioned(TRAIL), 0)

    assert await trail(read_store) == [f"i1@{n}" for n in range(1, 7)]
    # Paging walks the same order.
    first = await institution_events(read_store, "i1", 3, None)
    assert first.end_cursor is not None
    assert await trail(read_store, 10, first.end_cursor) == ["i1@4", "i1@5", "i1@6"]


async def test_the_order_does_not_depend_on_delivery_and_ties_break_by_stream(
    read_store: ReadStore,
) -> None:
    projection = AuditTrailProjection(SUBJECTS)
    await read_store.ensure(list(projection.collections))
    await project(projection, read_store, "registry", positioned(TRAIL[::-1]), 0)
    await project(projection, read_store, "inspections", positioned([FINDING]), 0)

    # The finding shares the commit's instant: services then streams break the tie.
    assert await trail(read_store) == ["i1@1", "i1@2", "f-7@1", "i1@3", "i1@4", "i1@5", "i1@6"]
    docs = await read_store.dump(INSTITUTION_EVENTS.name)
    assert all(d["version"] == 2 for d in docs)  # the layout that orders by version
