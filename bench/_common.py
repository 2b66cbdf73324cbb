"""Helpers shared by the benchmarks: machine line, timing, percentiles, result tables."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console
from rich.table import Table

# A pipe or file gets 120 columns (rich would fall back to 80 and wrap every row).
console = Console() if Console().is_terminal else Console(width=120)


def quiet_logs() -> None:
    """Keep the platform's info lines (platform.started, ...) out of the tables."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def machine_line() -> str:
    return (
        f"machine: {os.cpu_count()} cpu(s), {platform.machine()} {platform.system()} "
        f"{platform.release()} | Python {sys.version.split()[0]} "
        f"({platform.python_implementation()}) | SQLite {sqlite3.sqlite_version}"
    )


def print_machine() -> None:
    console.print(machine_line(), style="bold", highlight=False, soft_wrap=True)


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self._start


@dataclass(frozen=True)
class Throughput:
    """One row of a throughput table: ``ops`` operations in ``seconds``."""

    case: str
    ops: int
    seconds: float
    baseline: str | None = None
    """Case name this row is compared with; ``None`` marks a baseline row itself."""

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else math.inf


def throughput_table(title: str, rows: Sequence[Throughput], unit: str = "ops") -> Table:
    """Columns: case, ops, seconds, ops/s, vs baseline (this rate / the baseline's rate)."""
    by_case = {row.case: row for row in rows}
    table = Table(title=title, title_justify="left")
    table.add_column("case")
    table.add_column(unit, justify="right")
    table.add_column("seconds", justify="right")
    table.add_column(f"{unit}/s", justify="right")
    table.add_column("vs baseline", justify="right")
    for row in rows:
        if row.baseline is None:
            ratio = "baseline"
        else:
            ratio = f"{row.rate / by_case[row.baseline].rate:.2f}×"
        table.add_row(row.case, f"{row.ops:,}", f"{row.seconds:.3f}", f"{row.rate:,.0f}", ratio)
    return table


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``samples`` (``pct`` in 0..100)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Latency:
    """One row of a latency table: per-request seconds of sequential requests."""

    case: str
    samples: tuple[float, ...]
    total_seconds: float
    """Time the requests of this row took together (the sum of ``samples`` when rows are
    interleaved)."""
    baseline: str | None = None

    @property
    def p50_ms(self) -> float:
        return percentile(self.samples, 50) * 1e3

    def ms(self, pct: float) -> float:
        return percentile(self.samples, pct) * 1e3

    @property
    def rate(self) -> float:
        return len(self.samples) / self.total_seconds


def latency_table(title: str, rows: Sequence[Latency]) -> Table:
    """Columns: case, n, p50/p95/p99 ms, req/s, p50 / baseline (this p50 / the baseline's)."""
    by_case = {row.case: row for row in rows}
    table = Table(title=title, title_justify="left")
    table.add_column("case")
    table.add_column("n", justify="right")
    for name in ("p50 ms", "p95 ms", "p99 ms", "req/s"):
        table.add_column(name, justify="right")
    table.add_column("p50 / baseline p50", justify="right")
    for row in rows:
        if row.baseline is None:
            ratio = "baseline"
        else:
            ratio = f"{row.p50_ms / by_case[row.baseline].p50_ms:.1f}×"
        table.add_row(
            row.case,
            str(len(row.samples)),
            f"{row.ms(50):.3f}",
            f"{row.ms(95):.3f}",
            f"{row.ms(99):.3f}",
            f"{row.rate:,.0f}",
            ratio,
        )
    return table


@dataclass(frozen=True)
class Verdict:
    """One of issue 17's targets, judged on a figure this run measured.

    ``met`` is ``None`` when the run did not measure at the target's scale (the default
    sizes stop at 100,000 institutions; a million takes hours): the row then shows the
    figure at the largest size it did run."""

    target: str
    measured: str
    met: bool | None
    why: str = ""
    """For a miss or an unjudged row: why, and where ``bench/README.md`` explains it."""


VERDICTS: list[Verdict] = []
"""Every ``verdict`` of this process, in order: ``python -m bench`` prints them last."""

WHERE_EXPLAINED = "bench/README.md, 'Issue 17: where each target stands'"


VERDICTS_FILE = "SHUANGJIAN_BENCH_VERDICTS"
"""Environment variable: a file each verdict is also appended to, as a JSON line (how
``python -m bench`` hears them from the benchmark processes it starts)."""


def verdict(target: str, measured: str, met: bool | None, why: str = "") -> None:
    """Record (and print at once) how this run's figure stands against a target. ``why``
    is kept for a miss or an unjudged row only, followed by ``WHERE_EXPLAINED``."""
    reasons = [why, WHERE_EXPLAINED] if why else [WHERE_EXPLAINED]
    why = "" if met else "; ".join(reasons)
    found = Verdict(target, measured, met, why)
    VERDICTS.append(found)
    console.print(f"target: {target}: {measured} → {_judged(found)}", highlight=False)
    if path := os.environ.get(VERDICTS_FILE):
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(dataclasses.asdict(found), ensure_ascii=False) + "\n")


def read_verdicts(path: Path) -> list[Verdict]:
    """The verdicts ``verdict`` appended to ``path`` (none if it is not there)."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Verdict(**json.loads(line)) for line in lines if line]


def _judged(found: Verdict) -> str:
    return {True: "met", False: "not met", None: "not judged"}[found.met]


def verdict_table(verdicts: Sequence[Verdict]) -> Table:
    table = Table(title="Issue 17's targets, as this run measured them", title_justify="left")
    for name in ("target", "measured", "met", "why / where"):
        table.add_column(name)
    for found in verdicts:
        style = {True: "green", False: "red", None: "yellow"}[found.met]
        table.add_row(found.target, found.measured, f"[{style}]{_judged(found)}[/]", found.why)
    return table


@dataclass
class Demo:
    """An embedded platform holding the demo data, for the benchmarks that query it."""

    platform: Any
    settings: Any
    institutions: int
    load_seconds: float


@contextlib.asynccontextmanager
async def demo_platform(prefix: str) -> AsyncIterator[Demo]:
    """A started platform in a temporary data dir with the demo loaded and projected."""
    from services.bootstrap import build_platform
    from services.common.config import Settings
    from services.demo import load_demo

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", _env_file=None)  # type: ignore[call-arg]
        platform = build_platform(settings)
        await platform.start()
        try:
            with Stopwatch() as loading:
                loaded = await load_demo(
                    platform.commands, platform.regions, settle=platform.settle
                )
                await platform.settle()
            yield Demo(platform, settings, loaded, loading.seconds)
        finally:
            await platform.stop()


def executor(platform: Any) -> Callable[[str], Awaitable[dict[str, Any]]]:
    """Run a GraphQL document in process (``schema.execute``, no HTTP) as the platform
    itself; errors raise."""
    from services.common.auth import SYSTEM
    from services.gateway.context import GatewayContext
    from services.gateway.schema import build_schema

    schema = build_schema()

    async def execute(query: str) -> dict[str, Any]:
        result = await schema.execute(query, context_value=GatewayContext(platform, SYSTEM))
        if result.errors:
            raise RuntimeError(f"GraphQL errors: {result.errors}")
        assert result.data is not None
        return result.data

    return execute
