"""A projection never changes a document it read in place.

``ProjectionUnit.get`` hands out the document it holds, not a copy (copying every
document on every read was the largest cost of a rebuild), so the same object is also
the unit's cached state and, often, a put already staged for the commit. A projection
that wrote into it would change what earlier events committed, and a parked event's
change would survive it. This replays a seeded history (the rebuild benchmark's, made
small) through each projection with every document it reads checked after each event.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from bench import projection as history
from services.common import projection as projection_module
from services.common.envelope import Envelope
from services.common.projection import Projection, ProjectionUnit, collections_of, project
from services.common.regions import RegionTree
from services.common.sqlite import SQLiteReadStore
from services.finance.projections import FinanceProjection
from services.inspections.projections import InspectionsProjection
from services.registry.domain.rules import RegistryPolicy
from services.registry.projections import InstitutionsProjection

REGIONS = RegionTree.load()


class GuardedUnit(ProjectionUnit):
    """Remembers a deep copy of every document it hands out and checks, when the event is
    done (applied or parked), that none of them changed."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.handed: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.checked = 0

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        doc = await super().get(collection, key)
        if doc is not None:
            self.handed.append((doc, copy.deepcopy(doc)))
        return doc

    def begin(self, position: int) -> None:
        for doc, before in getattr(self, "handed", []):
            assert doc == before, f"a projection changed a document it read: {doc.get('id')}"
            self.checked += 1
        self.handed = []
        super().begin(position)


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Envelope]]:
    monkeypatch.setattr(history, "HISTORY_INSTITUTIONS", 600)
    monkeypatch.setattr(history, "HISTORY_ORDERS", 300)
    made = history.history(REGIONS)
    events: dict[str, list[Envelope]] = {}
    for name, commits in made.items():
        flat = [e for commit in commits for e in commit]
        events[name] = [e.with_position(n) for n, e in enumerate(flat, start=1)]
    return events


CASES: list[tuple[Callable[[], Projection], Sequence[str]]] = [
    (lambda: InstitutionsProjection(REGIONS, RegistryPolicy()), ("registry",)),
    (lambda: InspectionsProjection(REGIONS), ("inspections",)),
    (lambda: FinanceProjection(REGIONS), ("registry", "inspections", "finance")),
]


@pytest.mark.parametrize("case", range(len(CASES)))
async def test_no_projection_writes_into_a_document_it_read(
    case: int,
    small: dict[str, list[Envelope]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make, sources = CASES[case]
    units: list[GuardedUnit] = []

    def guarded(*args: Any) -> GuardedUnit:
        unit = GuardedUnit(*args)
        units.append(unit)
        return unit

    monkeypatch.setattr(projection_module, "ProjectionUnit", guarded)
    projection = make()
    store = SQLiteReadStore(tmp_path / "reads.db")
    try:
        await store.ensure(collections_of([projection]))
        for source in sources:
            events = small[source]
            for start in range(0, len(events), 250):  # runs that read across commits
                await project(projection, store, source, events[start : start + 250], start)
    finally:
        await store.close()
    assert sum(unit.checked for unit in units) > 100
