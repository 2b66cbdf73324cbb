"""Racing writers on one institution: what the command path's retry policy lets through.

``CLIENTS`` concurrent clients each send ``CARDS`` YELLOW warning cards, one after the
other, to one institution of the embedded platform (SQLite event store, relay and
projections running, ``platform.execute``). A YELLOW card is always legal, so every
refusal is a lost optimistic-concurrency race that reached the caller. The same workload
runs three times in one process, each on a fresh data dir:

* before (baseline): the policy before issue 10 (``IMMEDIATE_RETRIES``), three attempts
  back to back;
* backoff only: the default's jittered exponential backoff within its deadline, without
  the per-stream queue, which is how writers in different processes (service
  replicas) meet;
* after: the command path's default (``DEFAULT_RETRY``), commands on one stream taking
  turns in the process, backoff for races with other processes.

Latency is per command as its client sees it, queueing, retries and waits included.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from bench._common import console, percentile, print_machine, quiet_logs
from services.bootstrap import MODULES, build_platform
from services.common.application import (
    DEFAULT_RETRY,
    IMMEDIATE_RETRIES,
    CommandContext,
    RetryPolicy,
)
from services.common.config import Settings
from services.common.errors import ConcurrencyConflict, ShuangjianError
from services.common.module import CommandService, ServiceModule, Wiring
from services.registry.domain.commands import IssueWarningCard, RegisterInstitution
from services.registry.domain.events import SERVICE
from services.registry.domain.rules import credit_code_check_char
from services.registry.module import MODULE as REGISTRY
from services.registry.module import RegistrySettings
from services.registry.module import application as registry_application

CLIENTS = 20
CARDS = 20  # per client, sent one after the other
INSTITUTION = "hot-1"
REGION = "640402"


@dataclass(frozen=True)
class Run:
    """One policy's results."""

    case: str
    policy: RetryPolicy
    outcomes: Counter[str]
    latencies: tuple[float, ...]
    seconds: float
    cards_stored: int

    @property
    def attempted(self) -> int:
        return sum(self.outcomes.values())


def with_retry(policy: RetryPolicy) -> list[ServiceModule[RegistrySettings]]:
    """The platform's modules, the registry's command side built with ``policy``."""

    def application(wiring: Wiring[RegistrySettings]) -> CommandService:
        return registry_application(dataclasses.replace(wiring, retry=policy))

    return [
        dataclasses.replace(m, application=application) if m is REGISTRY else m for m in MODULES
    ]


def credit_code(region: str, org: str) -> str:
    body = f"52{region}{org}"
    return body + credit_code_check_char(body)


async def run(case: str, policy: RetryPolicy) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-contention-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", _env_file=None)  # type: ignore[call-arg]
        platform = build_platform(settings, with_retry(policy))
        await platform.start()
        try:
            await platform.execute(
                RegisterInstitution(
                    id=INSTITUTION,
                    name="原州区启明美术工作室",
                    credit_code=credit_code(REGION, "MA0000001"),
                    region=REGION,
                    category="NON_SUBJECT",
                    non_subject_kind="ARTS",
                    mode="OFFLINE",
                ),
                CommandContext(actor="bench"),
            )
            outcomes: Counter[str] = Counter()
            latencies: list[float] = []

            async def client(n: int) -> None:
                ctx = CommandContext(actor=f"inspector-{n}")
                for k in range(CARDS):
                    card = IssueWarningCard(
                        id=INSTITUTION, color="YELLOW", reason=f"检查 {n}-{k}: 消防通道堵塞"
                    )
                    start = time.perf_counter()
                    try:
                        await platform.execute(card, ctx)
                    except ConcurrencyConflict:
                        outcomes["conflict"] += 1
                    except ShuangjianError as exc:
                        outcomes[exc.code] += 1
                    else:
                        outcomes["ok"] += 1
                    latencies.append(time.perf_counter() - start)

            started = time.perf_counter()
            await asyncio.gather(*(client(n) for n in range(CLIENTS)))
            seconds = time.perf_counter() - started
            stream = await platform.event_stores[SERVICE].read_stream(INSTITUTION)
        finally:
            await platform.stop()
    cards = sum(1 for e in stream if e.type == "registry.WarningCardIssued")
    # Every success stored exactly one card, every refusal none.
    assert cards == outcomes["ok"], (cards, outcomes)
    assert [e.version for e in stream] == list(range(1, len(stream) + 1))
    return Run(case, policy, outcomes, tuple(latencies), seconds, cards)


def describe(policy: RetryPolicy) -> str:
    queue = "one stream's commands take turns in the process; " if policy.queue else ""
    if policy.max_backoff == 0:
        return f"{queue}{policy.attempts} attempts, no wait"
    return (
        f"{queue}≤{policy.attempts} attempts within {policy.deadline:g} s, full-jitter "
        f"backoff capped from {policy.backoff * 1e3:g} ms doubling to "
        f"{policy.max_backoff * 1e3:g} ms"
    )


def results_table(runs: list[Run]) -> Table:
    table = Table(
        title=f"{CLIENTS} clients × {CARDS} YELLOW cards on one institution "
        "(embedded platform, SQLite event store, synchronous=FULL)",
        title_justify="left",
    )
    table.add_column("retry policy")
    for name in ("attempted", "succeeded", "surfaced conflicts", "other errors"):
        table.add_column(name, justify="right")
    for name in ("cards stored", "p50 ms", "p95 ms", "p99 ms", "max ms", "cmds/s"):
        table.add_column(name, justify="right")
    for r in runs:
        other = r.attempted - r.outcomes["ok"] - r.outcomes["conflict"]
        table.add_row(
            r.case,
            f"{r.attempted:,}",
            f"{r.outcomes['ok']:,}",
            f"{r.outcomes['conflict']:,}",
            f"{other:,}",
            f"{r.cards_stored:,}",
            f"{percentile(r.latencies, 50) * 1e3:.1f}",
            f"{percentile(r.latencies, 95) * 1e3:.1f}",
            f"{percentile(r.latencies, 99) * 1e3:.1f}",
            f"{max(r.latencies) * 1e3:.1f}",
            f"{r.outcomes['ok'] / r.seconds:,.0f}",
        )
    return table


async def main() -> None:
    quiet_logs()
    runs = [
        await run("before (baseline)", IMMEDIATE_RETRIES),
        await run("backoff only", dataclasses.replace(DEFAULT_RETRY, queue=False)),
        await run("after (default)", DEFAULT_RETRY),
    ]
    console.print(results_table(runs))
    for r in runs:
        console.print(f"{r.case}: {describe(r.policy)}", highlight=False)
    console.print(
        "surfaced conflicts = CONFLICT with reason CONCURRENT_UPDATE reaching the client; "
        "latency per command as its client sees it, retries and waits included; "
        "cmds/s = succeeded / wall seconds",
        highlight=False,
    )


if __name__ == "__main__":
    print_machine()
    asyncio.run(main())
