"""Projection and command throughput of the registry over SQLite.

1. Command path: K registrations (and approvals of every second one) through
   ``Registry`` (load, decide, append; ``handle``, or ``register``/``approve`` in
   versions before it) into a ``SQLiteEventStore``; peer: the very same
   events appended straight into a fresh store (no load, no decide).
2. Rebuild: ``ProjectionRunner.rebuild(InstitutionsProjection)`` into a
   ``SQLiteReadStore``; peer: a naive loop that reads every event with raw ``sqlite3`` and
   counts only the ``region_stats`` counters in a dict, with no documents, no redelivery
   guard and no positions. The two results are compared counter by counter.
3. Breakdown: a second rebuild through thin timing subclasses of the two SQLite adapters
   shows where the rebuild's wall time goes (read-store point reads, batch commits,
   event reads; the remainder is the projection's Python work). It is a separate run so
   the headline number carries no instrumentation.
4. Rebuild at volume (``--rebuild-only`` runs just this): the seeded history of
   ``shuangjian bench-load`` (``services/loadgen.py``) over 120 districts, about 180,000
   events over three event stores, shaped as the command handlers write it (registry:
   credit-code reservations, registrations, approvals, cards, list marks, suspensions,
   closures; inspections: batches of visits with findings and orders, submissions and
   verifications, complaints, law talks, penalties; finance: accounts, orders with
   deliveries and confirmations, refunds, risk levels). Each projection is rebuilt alone
   in a runner over its sources (finance reads all three); the floor is raw ``sqlite3``
   paging through the same events tables with ``json.loads`` of each body.
   Rounds take turns and every rebuild's documents must equal the first round's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.table import Table

from bench._common import (
    Stopwatch,
    Throughput,
    console,
    print_machine,
    quiet_logs,
    throughput_table,
    verdict,
)
from services.common.application import CommandContext
from services.common.envelope import Envelope
from services.common.ports import Batch
from services.common.projection import Projection, ProjectionRunner
from services.common.regions import RegionLevel, RegionTree
from services.common.sqlite import SQLiteEventStore, SQLiteReadStore
from services.common.timeutil import SHANGHAI
from services.demo import KINDS, credit_code
from services.finance.projections import FinanceProjection
from services.inspections.projections import InspectionsProjection
from services.loadgen import Commit, Plan, write
from services.registry.domain.commands import ApproveInstitution, RegisterInstitution
from services.registry.domain.rules import (
    RegistryPolicy,
)
from services.registry.handlers import Registry
from services.registry.module import no_rectifications
from services.registry.projections import REGION_STATS, InstitutionsProjection

SEED = 20261123
K = 3000
DISTRICTS = 60
ACTOR = "bench"
REBUILD_ROUNDS = 2
REBUILD_TARGET = 20_000  # events/s (issue 17)

# The region_stats counters the naive loop computes (registrations and approvals only).
NAIVE_FIELDS = (
    "institutions_active",
    "institutions_subject",
    "institutions_non_subject",
    "institutions_online",
    "institutions_offline",
    "institutions_pending",
    "institutions_approved",
)


# --- workload ----------------------------------------------------------------------------


def make_commands(
    regions: RegionTree,
) -> tuple[list[RegisterInstitution], list[ApproveInstitution]]:
    """K registrations over a seeded sample of districts; every second one is approved."""
    rng = random.Random(SEED)
    districts = rng.sample(regions.by_level(RegionLevel.DISTRICT), DISTRICTS)
    registers: list[RegisterInstitution] = []
    approves: list[ApproveInstitution] = []
    for n in range(K):
        district = rng.choice(districts)
        subject = rng.random() < 0.45
        # Back-dated before the policy start, so SUBJECT approvals are still allowed.
        day = date(2016, 1, 1) + timedelta(days=rng.randrange(1900))
        registered = datetime(day.year, day.month, day.day, 9, tzinfo=SHANGHAI)
        institution_id = f"bench-{n:05d}"
        registers.append(
            RegisterInstitution(
                id=institution_id,
                name=f"{district.name}启明{'学科培训学校' if subject else '艺术中心'}{n:05d}",
                credit_code=credit_code(rng, district.code),
                region=district.code,
                address=f"{district.full_name}{rng.randrange(1, 300)}号",
                category="SUBJECT" if subject else "NON_SUBJECT",
                non_subject_kind=None if subject else rng.choice(KINDS),
                mode="ONLINE" if rng.random() < 0.1 else "OFFLINE",
                occurred_at=registered,
            )
        )
        if n % 2 == 0:
            approves.append(
                ApproveInstitution(
                    id=institution_id,
                    license_no=f"教民{district.code}{day.year}{n:05d}号",
                    occurred_at=registered + timedelta(days=30),
                )
            )
    return registers, approves


async def issue(
    registry: Registry, cmd: RegisterInstitution | ApproveInstitution, ctx: CommandContext
) -> None:
    """Send one command down the registry's real command path.

    ``Registry.handle(cmd, ctx)`` is the single entry point the registry is moving to;
    earlier versions have ``register`` and ``approve``. Both are load-decide-append.
    """
    handle = getattr(registry, "handle", None)
    if handle is None:
        name = "register" if isinstance(cmd, RegisterInstitution) else "approve"
        handle = getattr(registry, name)
    await handle(cmd, ctx)


# --- instrumentation (breakdown run only) ------------------------------------------------


class Tally:
    """Calls and wall seconds per adapter method."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, name: str, start: float) -> None:
        self.calls[name] += 1
        self.seconds[name] += time.perf_counter() - start


class TimedReadStore(SQLiteReadStore):
    def __init__(self, path: Path, tally: Tally) -> None:
        super().__init__(path)
        self.tally = tally

    async def get(self, collection: str, key: str) -> dict[str, Any] | None:
        start = time.perf_counter()
        try:
            return await super().get(collection, key)
        finally:
            self.tally.add("SQLiteReadStore.get", start)

    async def commit(self, batch: Batch) -> None:
        start = time.perf_counter()
        try:
            await super().commit(batch)
        finally:
            self.tally.add("SQLiteReadStore.commit", start)

    async def reset(self, projection: str, collections: Sequence[str]) -> None:
        start = time.perf_counter()
        try:
            await super().reset(projection, collections)
        finally:
            self.tally.add("SQLiteReadStore.reset", start)


class TimedEventStore(SQLiteEventStore):
    def __init__(self, path: Path, tally: Tally) -> None:
        super().__init__(path)
        self.tally = tally

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Envelope]:
        start = time.perf_counter()
        try:
            return await super().read_all(after_position, limit)
        finally:
            self.tally.add("SQLiteEventStore.read_all", start)


async def rebuild_breakdown(
    events_path: Path, read_path: Path, regions: RegionTree, policy: RegistryPolicy
) -> tuple[float, Tally]:
    tally = Tally()
    store = TimedEventStore(events_path, tally)
    read_store = TimedReadStore(read_path, tally)
    try:
        projection = InstitutionsProjection(regions, policy)
        runner = ProjectionRunner([projection], read_store, {"registry": store})
        await runner.prepare()
        with Stopwatch() as sw:
            await runner.rebuild(projection)
    finally:
        await read_store.close()
        await store.close()
    return sw.seconds, tally


def breakdown_table(total: float, tally: Tally, events: int) -> Table:
    table = Table(
        title=f"Where a rebuild's time goes (separate instrumented rebuild, {total:.3f} s)",
        title_justify="left",
    )
    table.add_column("part")
    table.add_column("calls", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    table.add_column("ms/call", justify="right")
    accounted = 0.0
    for name in sorted(tally.seconds, key=tally.seconds.__getitem__, reverse=True):
        seconds, calls = tally.seconds[name], tally.calls[name]
        accounted += seconds
        table.add_row(
            name,
            f"{calls:,}",
            f"{seconds:.3f}",
            f"{seconds / total:.0%}",
            f"{seconds / calls * 1e3:.3f}",
        )
    rest = total - accounted
    table.add_row(
        "rest: projection code (payload decode, evolve, counters, deepcopy)",
        f"{events:,} events",
        f"{rest:.3f}",
        f"{rest / total:.0%}",
        f"{rest / events * 1e3:.3f}/event",
    )
    return table


# --- naive peer ----------------------------------------------------------------------------


def naive_region_stats(path: Path, regions: RegionTree) -> tuple[int, dict[str, dict[str, int]]]:
    """Every event via raw sqlite3, counters in a dict; no documents, guards or positions."""
    lineage: dict[str, list[str]] = {}
    stats: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    conn = sqlite3.connect(path)
    events = 0
    try:
        for (body,) in conn.execute("SELECT body FROM events ORDER BY position"):
            event = json.loads(body)
            events += 1
            region = event["region"]
            chain = lineage.get(region)
            if chain is None:
                chain = lineage[region] = [r.code for r in regions.lineage(region)]
            if event["type"] == "registry.InstitutionRegistered":
                data = event["data"]
                bucket = (
                    "institutions_subject"
                    if data["category"] == "SUBJECT"
                    else "institutions_non_subject"
                )
                mode = f"institutions_{data['mode'].lower()}"
                for code in chain:
                    counters = stats[code]
                    counters["institutions_active"] += 1
                    counters["institutions_pending"] += 1
                    counters[bucket] += 1
                    counters[mode] += 1
            elif event["type"] == "registry.InstitutionApproved":
                for code in chain:
                    counters = stats[code]
                    counters["institutions_pending"] -= 1
                    counters["institutions_approved"] += 1
    finally:
        conn.close()
    return events, stats


def differences(naive: dict[str, dict[str, int]], stored: list[dict[str, Any]]) -> list[str]:
    """Where the projection's region_stats and the naive counts disagree."""
    found: list[str] = []
    by_key = {doc["id"]: doc for doc in stored}
    for code in sorted(naive.keys() | by_key.keys()):
        for name in NAIVE_FIELDS:
            want = naive.get(code, {}).get(name, 0)
            got = by_key.get(code, {}).get(name, 0)
            if want != got:
                found.append(f"{code}.{name}: projection {got}, naive {want}")
    return found


# --- benchmark ---------------------------------------------------------------------------


async def command_path_and_rebuild() -> None:
    quiet_logs()
    regions = RegionTree.load()
    policy = RegistryPolicy()
    registers, approves = make_commands(regions)
    ctx = CommandContext(actor=ACTOR)

    with tempfile.TemporaryDirectory(prefix="bench-proj-") as tmp:
        root = Path(tmp)
        events_path = root / "registry.events.db"
        store = SQLiteEventStore(events_path)
        await store.start()
        peer = SQLiteEventStore(root / "peer.events.db")
        await peer.start()
        read_path = root / "read-models.db"
        read_store = SQLiteReadStore(read_path)
        try:
            registry = Registry(store, regions, policy, rectification_overdue=no_rectifications)
            with Stopwatch() as reg_time:
                for register in registers:
                    await registry.handle(register, ctx)
            with Stopwatch() as app_time:
                for approve in approves:
                    await registry.handle(approve, ctx)

            # Peer: the same events, appended straight into a fresh store.
            stored: list[Envelope] = []
            after = 0
            while batch := await store.read_all(after_position=after, limit=1000):
                stored += batch
                after = batch[-1].position or 0
            plain = [e.model_copy(update={"position": None}) for e in stored]
            reg_events = [e for e in plain if e.version == 1]
            app_events = [e for e in plain if e.version == 2]
            with Stopwatch() as reg_peer:
                for event in reg_events:
                    await peer.append([event], 0)
            with Stopwatch() as app_peer:
                for event in app_events:
                    await peer.append([event], 1)

            projection = InstitutionsProjection(regions, policy)
            runner = ProjectionRunner([projection], read_store, {"registry": store})
            await runner.prepare()
            with Stopwatch() as rebuild:
                await runner.rebuild(projection)
            total = len(stored)
            assert runner.position(projection.name, "registry") == stored[-1].position
            region_docs = await read_store.dump(REGION_STATS.name)

            with Stopwatch() as naive_time:
                naive_events, naive = naive_region_stats(events_path, regions)
            assert naive_events == total, (naive_events, total)
        finally:
            await read_store.close()
            await peer.close()
            await store.close()
        breakdown_seconds, tally = await rebuild_breakdown(events_path, read_path, regions, policy)

    reg_base = "register: SQLiteEventStore.append of the same events"
    app_base = "approve: SQLiteEventStore.append of the same events"
    command_rows = [
        Throughput(reg_base, len(reg_events), reg_peer.seconds),
        Throughput(
            f"register: Registry command path (actor {ACTOR!r})",
            len(registers),
            reg_time.seconds,
            reg_base,
        ),
        Throughput(app_base, len(app_events), app_peer.seconds),
        Throughput("approve: Registry command path", len(approves), app_time.seconds, app_base),
    ]
    console.print(
        throughput_table(
            "Command path (ops = commands, one commit each; SQLite event store, synchronous=FULL)",
            command_rows,
            unit="commands",
        )
    )

    naive_name = "naive raw sqlite3 loop, region_stats counters only"
    rebuild_rows = [
        Throughput(naive_name, total, naive_time.seconds),
        Throughput(
            "ProjectionRunner.rebuild(InstitutionsProjection)", total, rebuild.seconds, naive_name
        ),
    ]
    console.print(
        throughput_table(
            f"Projection rebuild ({K:,} registrations + {len(approves):,} approvals "
            f"= {total:,} events)",
            rebuild_rows,
            unit="events",
        )
    )
    console.print(breakdown_table(breakdown_seconds, tally, total))
    mismatches = differences(naive, region_docs)
    if mismatches:
        console.print(f"[red]region_stats disagree in {len(mismatches)} counter(s):[/red]")
        for line in mismatches[:10]:
            console.print(f"  {line}", highlight=False)
    else:
        console.print(
            f"region_stats check: projection and naive loop agree on {len(naive)} regions × "
            f"{len(NAIVE_FIELDS)} counters.",
            highlight=False,
        )


# --- rebuild at volume: the three projections over a seeded history ----------------------

HISTORY_SEED = 20260422
HISTORY_INSTITUTIONS = 18_000
HISTORY_ORDERS = 12_000
HISTORY_DISTRICTS = 120


def history(regions: RegionTree) -> dict[str, list[Commit]]:
    """The seeded history of ``shuangjian bench-load`` (``services/loadgen.py``) over 120
    districts of the whole country, each service's commits in a list."""
    districts = random.Random(HISTORY_SEED).sample(
        regions.by_level(RegionLevel.DISTRICT), HISTORY_DISTRICTS
    )
    plan = Plan(HISTORY_INSTITUTIONS, HISTORY_ORDERS, districts, seed=HISTORY_SEED)
    return {
        "registry": list(plan.registry()),
        "inspections": list(plan.inspections()),
        "finance": list(plan.finance()),
    }


async def fill(path: Path, commits: Sequence[Commit]) -> None:
    """Store the commits as the loader does (``SQLiteEventStore.append_batch``, thousands
    per transaction): the command path is measured above, and appending the history one
    commit at a time would take most of this benchmark."""
    store = SQLiteEventStore(path)
    await store.start()
    try:
        await write(store, iter(commits))
    finally:
        await store.close()


def raw_floor(paths: Sequence[Path]) -> int:
    """The floor: raw ``sqlite3`` paging through the same events tables and ``json.loads``
    of every body, nothing else."""
    count = 0
    for path in paths:
        conn = sqlite3.connect(path)
        try:
            after = 0
            while rows := conn.execute(
                "SELECT position, body FROM events WHERE position > ? ORDER BY position LIMIT 5000",
                (after,),
            ).fetchall():
                for _, body in rows:
                    json.loads(body)
                count += len(rows)
                after = rows[-1][0]
        finally:
            conn.close()
    return count


@dataclass
class RebuildCase:
    label: str
    make: Callable[[], Projection]
    sources: tuple[str, ...]
    events: int = 0
    handled: int = 0
    seconds: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)


async def rebuild_once(
    case: RebuildCase, root: Path, n: int, batch_size: int | None
) -> tuple[float, dict[str, list[dict[str, Any]]]]:
    """A fresh read store, the case's projection alone in a runner over its sources'
    event stores, one timed ``rebuild``."""
    stores = {s: SQLiteEventStore(root / f"{s}.events.db") for s in case.sources}
    read_store = SQLiteReadStore(root / f"read-{case.label}-{n}.db")
    projection = case.make()
    runner = (
        ProjectionRunner([projection], read_store, stores)
        if batch_size is None
        else ProjectionRunner([projection], read_store, stores, batch_size=batch_size)
    )
    try:
        await runner.prepare()
        with Stopwatch() as sw:
            await runner.rebuild(projection)
        ends = {s: await store.max_position() for s, store in stores.items()}
        assert all(runner.position(projection.name, s) == ends[s] for s in case.sources)
        dumps = {c.name: await read_store.dump(c.name) for c in projection.collections}
    finally:
        await read_store.close()
        for store in stores.values():
            await store.close()
    return sw.seconds, dumps


async def rebuild_at_volume(rounds: int, batch_size: int | None = None) -> None:
    quiet_logs()
    regions = RegionTree.load()
    policy = RegistryPolicy()
    with Stopwatch() as generating:
        commits = history(regions)
    cases = [
        RebuildCase("registry", lambda: InstitutionsProjection(regions, policy), ("registry",)),
        RebuildCase("inspections", lambda: InspectionsProjection(regions), ("inspections",)),
        RebuildCase(
            "finance", lambda: FinanceProjection(regions), ("finance", "registry", "inspections")
        ),
    ]
    counts = {name: sum(len(c) for c in service) for name, service in commits.items()}
    for case in cases:
        probe = case.make()
        case.events = sum(counts[s] for s in case.sources)
        case.handled = sum(
            1 for s in case.sources for commit in commits[s] for e in commit if probe.handles(e)
        )
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as tmp:
        root = Path(tmp)
        with Stopwatch() as filling:
            for name, service in commits.items():
                await fill(root / f"{name}.events.db", service)
        console.print(
            f"history: {', '.join(f'{n} {c:,}' for n, c in counts.items())} events "
            f"(generated in {generating.seconds:.1f} s, appended in {filling.seconds:.1f} s)",
            highlight=False,
        )
        first: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for n in range(rounds):  # the cases take turns, round by round
            for case in cases:
                paths = [root / f"{s}.events.db" for s in case.sources]
                with Stopwatch() as raw:
                    assert raw_floor(paths) == case.events
                case.floor.append(raw.seconds)
                seconds, dumps = await rebuild_once(case, root, n, batch_size)
                case.seconds.append(seconds)
                if case.label in first:  # a replay gives identical documents
                    assert dumps == first[case.label], f"{case.label}: rebuilds differ"
                else:
                    first[case.label] = dumps
    console.print(rebuild_table(cases, rounds))
    for case in cases:
        rate = case.events / min(case.seconds)
        verdict(
            f"rebuild ≥ {REBUILD_TARGET:,} events/s, {case.label}",
            f"{rate:,.0f} events/s (best of {rounds})",
            rate >= REBUILD_TARGET,
            "the projection's own cost",
        )


async def main() -> None:
    """Everything, as ``python -m bench`` runs it."""
    await command_path_and_rebuild()
    await rebuild_at_volume(REBUILD_ROUNDS)


def rebuild_table(cases: Sequence[RebuildCase], rounds: int) -> Table:
    table = Table(
        title=(
            f"Rebuild at volume: ProjectionRunner.rebuild(projection), one projection per "
            f"runner, fresh read store; best of {rounds} round(s), cases taking turns"
        ),
        title_justify="left",
    )
    for name in (
        "projection",
        "events read",
        "handled",
        "seconds",
        "events/s",
        "handled/s",
        "floor events/s",
        "vs floor",
    ):
        table.add_column(name, justify="left" if name == "projection" else "right")
    for case in cases:
        best, floor = min(case.seconds), min(case.floor)
        table.add_row(
            f"{case.make().name} ({'+'.join(case.sources)})",
            f"{case.events:,}",
            f"{case.handled:,}",
            f"{best:.2f}",
            f"{case.events / best:,.0f}",
            f"{case.handled / best:,.0f}",
            f"{case.events / floor:,.0f}",
            f"{floor / best:.2f}×",
        )
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.projection")
    parser.add_argument("--rebuild-only", action="store_true", help="only the rebuild at volume")
    parser.add_argument("--rounds", type=int, default=REBUILD_ROUNDS)
    parser.add_argument("--batch-size", type=int, default=None, help="the runner's batch_size")
    args = parser.parse_args()
    print_machine()
    if not args.rebuild_only:
        asyncio.run(command_path_and_rebuild())
    asyncio.run(rebuild_at_volume(args.rounds, args.batch_size))
