"""Inspection work at district scale: writing batches, and reading the figures that are
judged at read time.

Most roll-ups are one key lookup. Two inspection figures are not: ``institutionsInspected``
counts the distinct places under a region's code prefix in the key index of
``inspected_places``, and ``rectificationsOverdue`` sums the per-day deadline counters
before today. This measures what that costs against the registry's pure key lookup in
the same run, with a province holding ``PLACES`` distinct places and orders due on
hundreds of days.

Writes: ``recordInspection`` commands (a batch of ``VISITS`` visits, some with findings,
each opening an order) through the embedded platform, against registrations through the
same path as the peer.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench._common import (
    Stopwatch,
    Throughput,
    console,
    executor,
    latency_table,
    print_machine,
    quiet_logs,
    throughput_table,
)
from bench.gateway import Case, measure
from services.bootstrap import build_platform
from services.common.application import CommandContext
from services.common.config import Settings
from services.common.timeutil import SHANGHAI
from services.inspections.module import FindingInput, RecordInspection, VisitInput
from services.registry.module import RegisterInstitution
from tests.factories import valid_credit_code

DISTRICT = "340103"
INSTITUTIONS = 2_000
BATCHES = 400
VISITS = 25  # per batch: 10,000 visits
PLACES = INSTITUTIONS + 4_000  # institutions and distinct venues

INSTITUTION_STATS = '{ region(code:"340000"){ stats{ institutions{ active approved } } } }'
INSPECTION_STATS = (
    '{ region(code:"340000"){ stats{ inspections{ inspections institutionsInspected '
    "rectificationsOpened rectificationsOverdue rectificationRate } } } }"
)
OVERDUE = '{ rectifications(filter:{region:"34", overdue:true}, first:20){ totalCount } }'
LISTING = '{ institutions(filter:{region:"34"}, first:20){ totalCount } }'


async def main() -> None:
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="bench-insp-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", _env_file=None)  # type: ignore[call-arg]
        platform = build_platform(settings)
        await platform.start()
        try:
            writes, reads = await run(platform)
        finally:
            await platform.stop()
    console.print(
        f"inspections: {INSTITUTIONS:,} institutions, {BATCHES} batches x {VISITS} visits "
        f"over {PLACES:,} distinct places in one district",
        highlight=False,
    )
    console.print(throughput_table("Commands through the embedded platform", writes, "cmds"))
    for title, rows in reads:
        console.print(latency_table(title, rows))


async def run(platform: Any) -> tuple[list[Throughput], list[tuple[str, Any]]]:
    ctx = CommandContext(actor="bench")
    at = datetime(2024, 3, 1, 9, tzinfo=SHANGHAI)
    with Stopwatch() as registering:
        for n in range(INSTITUTIONS):
            await platform.execute(
                RegisterInstitution(
                    id=f"i{n:05d}",
                    name=f"机构{n}",
                    credit_code=valid_credit_code(DISTRICT, f"MA{n:07d}"),
                    region=DISTRICT,
                    category="NON_SUBJECT",
                    non_subject_kind="ARTS",
                    mode="OFFLINE",
                    occurred_at=at,
                ),
                ctx,
            )
    await platform.settle()
    places: list[tuple[str | None, str | None]] = [(f"i{n:05d}", None) for n in range(INSTITUTIONS)]
    places += [(None, f"某小区{n}栋") for n in range(PLACES - INSTITUTIONS)]
    with Stopwatch() as recording:
        for batch in range(BATCHES):
            visits = []
            for k in range(VISITS):
                institution, venue = places[(batch * VISITS + k) % len(places)]
                findings = [FindingInput("FIRE_SAFETY", "灭火器过期")] if k % 3 == 0 else []
                visits.append(
                    VisitInput(institution_id=institution, venue=venue, findings=findings)
                )
            await platform.execute(
                RecordInspection(
                    id=f"b{batch:04d}",
                    region=DISTRICT,
                    kind="SPECIAL",
                    started_at=at + timedelta(days=batch),
                    personnel=5,
                    visits=visits,
                    rectify_within_days=1 + batch % 60,
                ),
                ctx,
            )
    await platform.settle()
    events = sum([await store.max_position() for store in platform.event_stores.values()])
    projection = next(p for p in platform.runner.projections if p.name == "inspections.records")
    with Stopwatch() as rebuilding:
        rebuilt = await platform.runner.rebuild(projection)
    writes = [
        Throughput(
            "registerInstitution (peer: one event per command)", INSTITUTIONS, registering.seconds
        ),
        Throughput(
            f"recordInspection ({VISITS} visits, ~{VISITS // 3 + 1} orders per command)",
            BATCHES,
            recording.seconds,
            "registerInstitution (peer: one event per command)",
        ),
    ]
    console.print(
        f"rebuild of {', '.join(p.name for p in rebuilt)} (they share region_stats): "
        f"{events:,} events in {rebuilding.seconds:.2f} s = "
        f"{events / rebuilding.seconds:,.0f} events/s",
        highlight=False,
    )

    execute = executor(platform)

    figures = (await execute(INSPECTION_STATS))["region"]["stats"]["inspections"]
    assert figures["institutionsInspected"] == PLACES, figures
    assert figures["inspections"] == BATCHES, figures
    stats_base = "RegionStats.institutions (key lookup)"
    stats_rows = await measure(
        [
            Case(stats_base, lambda: execute(INSTITUTION_STATS)),
            Case(
                "RegionStats.inspections (+ distinct-place count, overdue sum)",
                lambda: execute(INSPECTION_STATS),
                stats_base,
            ),
        ]
    )
    list_base = "institutions listing with totalCount"
    list_rows = await measure(
        [
            Case(list_base, lambda: execute(LISTING)),
            Case(
                "rectifications(overdue: true) with totalCount", lambda: execute(OVERDUE), list_base
            ),
        ]
    )
    return writes, [
        ("Province roll-up, schema.execute (no HTTP)", stats_rows),
        ("Listings over the province, schema.execute (no HTTP)", list_rows),
    ]


if __name__ == "__main__":
    print_machine()
    asyncio.run(main())
