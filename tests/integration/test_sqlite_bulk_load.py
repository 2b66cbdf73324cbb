"""A rebuild into SQLite sets the collections' indexes and triggers aside and puts them
back: the same schema, the same documents, and what the triggers keep rebuilt."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from services.common.application import CommandContext
from services.common.ports import Batch, Prefix, Put, Query, Search
from services.common.projection import ProjectionRunner
from services.common.regions import RegionTree
from services.common.sqlite import SQLiteEventStore, SQLiteReadStore
from services.registry.domain.commands import ApproveInstitution
from services.registry.domain.rules import RegistryPolicy
from services.registry.handlers import Registry
from services.registry.module import no_rectifications
from services.registry.projections import INSTITUTIONS, InstitutionsProjection
from tests.factories import numbered_registration

REGIONS = RegionTree.load()


def schema(path: Path) -> list[tuple[str, str, str]]:
    """Every index and trigger of the read store, with its SQL."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master "
            "WHERE type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY name"
        ).fetchall()
    finally:
        conn.close()
    return rows


def derived_rows(path: Path) -> list[tuple[object, ...]]:
    """Every row of the tables the triggers write (``sx_``/``cx_`` of institutions)."""
    conn = sqlite3.connect(path)
    try:
        names = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND (name = 'cx_institutions' OR name = 'sx_institutions_docsize')"
            )
        ]
        return sorted(row for name in names for row in conn.execute(f"SELECT * FROM {name}"))
    finally:
        conn.close()


async def test_rebuild_puts_indexes_and_triggers_back(tmp_path: Path) -> None:
    events = SQLiteEventStore(tmp_path / "registry.events.db")
    await events.start()
    registry = Registry(events, REGIONS, RegistryPolicy(), rectification_overdue=no_rectifications)
    ctx = CommandContext(actor="test")
    for n in range(12):
        await registry.handle(numbered_registration(n), ctx)
        if n % 3 == 0:
            await registry.handle(ApproveInstitution(id=f"i{n:03d}", license_no=f"L{n}"), ctx)
    path = tmp_path / "read.db"
    store = SQLiteReadStore(path)
    projection = InstitutionsProjection(REGIONS, RegistryPolicy())
    runner = ProjectionRunner([projection], store, {"registry": events})
    try:
        await runner.prepare()
        await runner.catch_up()  # live: every write through the triggers
        live_docs = await store.dump(INSTITUTIONS.name)
        live_schema, live_derived = schema(path), derived_rows(path)
        assert any(kind == "index" for kind, _, _ in live_schema)
        assert live_derived or not any(kind == "trigger" for kind, _, _ in live_schema)

        await runner.rebuild(projection)

        assert await store.dump(INSTITUTIONS.name) == live_docs
        assert schema(path) == live_schema
        assert derived_rows(path) == live_derived
    finally:
        await store.close()
        await events.close()


async def test_a_data_dir_whose_triggers_kept_the_counts_counts_once(tmp_path: Path) -> None:
    """Before, triggers kept the counters as well; now each commit moves them. A data
    dir from before must lose those triggers when it starts, or it would count twice."""
    path = tmp_path / "read.db"
    store = SQLiteReadStore(path)
    await store.ensure([INSTITUTIONS])

    def old_triggers(conn: sqlite3.Connection) -> None:
        conn.execute("DROP TRIGGER dx_institutions_insert")
        conn.execute(
            "CREATE TRIGGER dx_institutions_insert AFTER INSERT ON rm_institutions BEGIN "
            "UPDATE cx_institutions SET n = n + 1; END"
        )

    await store.db.write(old_triggers)
    await store.close()

    store = SQLiteReadStore(path)
    try:
        await store.ensure([INSTITUTIONS])
        doc = {"region": "640402", "status": "PENDING", "name": "启明培训"}
        await store.commit(Batch("p", "registry", 1, puts=[Put(INSTITUTIONS.name, "i1", doc, 1)]))
        await store.commit(Batch("p", "registry", 2, puts=[Put(INSTITUTIONS.name, "i2", doc, 1)]))
        page = await store.find(Query(INSTITUTIONS.name, (Prefix("region", "6404"),)))
        assert page.total == 2
        found = await store.find(Query(INSTITUTIONS.name, (Search("name", "培训"),)))
        assert found.total == 2
    finally:
        await store.close()
