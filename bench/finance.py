"""Prepaid money at volume: orders and 一课一销 confirmations through the embedded
platform, against registrations through the same path, in the same run.

Every finance command also wakes the risk watch (``services/processes/risk.py``), which
sends an ``AssessRisk`` for the institution; the table shows the command rate with that
work included, as a user sees it. Then the rebuild rate of the projections that share
the region roll-ups, and the province's ``FinanceStats`` against the registry's roll-up.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import date, datetime, timedelta
from decimal import Decimal
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
from services.finance.module import ConfirmLessons, OpenSupervisionAccount, RecordPrepaidOrder
from services.registry.module import ApproveInstitution, RegisterInstitution
from tests.factories import valid_credit_code

DISTRICT = "120101"
INSTITUTIONS = 200
ORDERS = 2_000
CONFIRMATIONS = 5  # per order

INSTITUTION_STATS = '{ region(code:"120000"){ stats{ institutions{ active approved } } } }'
FINANCE_STATS = (
    '{ region(code:"120000"){ stats{ finance{ orders orderAmount escrowBalance released '
    "riskGreen riskRed } } } }"
)


async def main() -> None:
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="bench-fin-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", _env_file=None)  # type: ignore[call-arg]
        platform = build_platform(settings)
        await platform.start()
        try:
            writes, rebuild, reads = await run(platform)
        finally:
            await platform.stop()
    console.print(
        f"finance: {INSTITUTIONS} institutions with accounts, {ORDERS:,} orders, "
        f"{CONFIRMATIONS} confirmations each",
        highlight=False,
    )
    console.print(throughput_table("Commands through the embedded platform", writes, "cmds"))
    console.print(rebuild, highlight=False)
    console.print(latency_table("Province roll-up, schema.execute (no HTTP)", reads))


async def run(platform: Any) -> tuple[list[Throughput], str, Any]:
    ctx = CommandContext(actor="bench")
    at = datetime(2024, 1, 2, 9, tzinfo=SHANGHAI)
    peer = "registerInstitution + approveInstitution (peer)"
    with Stopwatch() as registering:
        for n in range(INSTITUTIONS):
            await platform.execute(
                RegisterInstitution(
                    id=f"i{n:04d}",
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
            await platform.execute(
                ApproveInstitution(id=f"i{n:04d}", license_no="L", occurred_at=at), ctx
            )
    await platform.settle()
    for n in range(INSTITUTIONS):
        await platform.execute(
            OpenSupervisionAccount(
                id=f"i{n:04d}", mode="BANK_CUSTODY", bank="天津银行", account_no="62220212345678"
            ),
            ctx,
        )
    await platform.settle()
    paid = datetime(2024, 3, 1, 10, tzinfo=SHANGHAI)
    with Stopwatch() as ordering:
        for n in range(ORDERS):
            await platform.execute(
                RecordPrepaidOrder(
                    id=f"o{n:05d}",
                    institution_id=f"i{n % INSTITUTIONS:04d}",
                    payer_ref=f"p{n}",
                    lessons=20,
                    price_per_lesson=Decimal("123.45"),
                    course_start=date(2024, 3, 1),
                    course_end=date(2024, 5, 31),
                    paid_at=paid,
                ),
                ctx,
            )
        await platform.settle()
    with Stopwatch() as confirming:
        for week in range(CONFIRMATIONS):
            for n in range(ORDERS):
                await platform.execute(
                    ConfirmLessons(
                        id=f"o{n:05d}", lessons=2, occurred_at=paid + timedelta(days=7 * week)
                    ),
                    ctx,
                )
        await platform.settle()
    writes = [
        Throughput(peer, 2 * INSTITUTIONS, registering.seconds),
        Throughput("recordPrepaidOrder (+ risk watch, settled)", ORDERS, ordering.seconds, peer),
        Throughput(
            "confirmLessons (+ risk watch, settled)",
            ORDERS * CONFIRMATIONS,
            confirming.seconds,
            peer,
        ),
    ]
    events = sum([await store.max_position() for store in platform.event_stores.values()])
    finance = next(p for p in platform.runner.projections if p.name == "finance.money")
    with Stopwatch() as rebuilding:
        group = await platform.runner.rebuild(finance)
    rebuild = (
        f"rebuild of {', '.join(p.name for p in group)} (they share region_stats): "
        f"{events:,} events in {rebuilding.seconds:.2f} s = "
        f"{events / rebuilding.seconds:,.0f} events/s"
    )

    execute = executor(platform)

    figures = (await execute(FINANCE_STATS))["region"]["stats"]["finance"]
    assert figures["orders"] == ORDERS, figures
    expected = Decimal("123.45") * 20 * ORDERS
    assert Decimal(figures["orderAmount"]) == expected, figures
    base = "RegionStats.institutions (key lookup)"
    reads = await measure(
        [
            Case(base, lambda: execute(INSTITUTION_STATS)),
            Case("RegionStats.finance (same document)", lambda: execute(FINANCE_STATS), base),
        ]
    )
    return writes, rebuild, reads


if __name__ == "__main__":
    print_machine()
    asyncio.run(main())
