"""`python -m bench` (`make bench`): every benchmark in turn, each in a process of its own."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench._common import (
    VERDICTS_FILE,
    Stopwatch,
    console,
    print_machine,
    read_verdicts,
    verdict_table,
)

BENCHMARKS: list[tuple[str, str]] = [
    # (name, what runs it: ``module:coroutine function``), imported only by the process
    # that runs it, so that no process measures the imports of the others.
    ("command path", "bench.command_path:main"),
    ("event store", "bench.event_store:main"),
    ("projection", "bench.projection:main"),
    ("gateway", "bench.gateway:main"),
    ("inspections", "bench.inspections:main"),
    ("finance", "bench.finance:main"),
    ("query cost", "bench.query_cost:main"),
    ("query scale", "bench.query_scale:main"),
    ("write to visible", "bench.visibility:main"),
    ("contention", "bench.contention:main"),
    ("kafka", "bench.kafka:main"),
    ("memory", "bench.memory:bench"),
]


def main() -> None:
    """Every benchmark in a process of its own, then the targets judged on this run.

    One process each: a benchmark must not pay for the heap and threads the ones before it
    left (the write → visible tail doubled after the others in one process), and a child's
    peak RSS on Linux counts its parent's at the fork (the memory table showed the whole
    run's 1.2 GB for every process it started)."""
    print_machine()
    with tempfile.TemporaryDirectory(prefix="bench-verdicts-") as tmp:
        verdicts = Path(tmp) / "verdicts.jsonl"
        env = {**os.environ, VERDICTS_FILE: str(verdicts)}
        failed: list[str] = []
        with Stopwatch() as everything:
            for name, _ in BENCHMARKS:
                console.rule(name)
                with Stopwatch() as one:
                    ran = subprocess.run([sys.executable, "-m", "bench", "--one", name], env=env)
                if ran.returncode != 0:
                    failed.append(name)
                console.print(f"{name}: {one.seconds:.1f} s wall", style="dim", highlight=False)
        console.rule()
        console.print(verdict_table(read_verdicts(verdicts)))
    console.print(f"all benchmarks: {everything.seconds:.1f} s wall", highlight=False)
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}[/red]")
        raise SystemExit(1)


def one(name: str) -> None:
    """``python -m bench --one NAME``: that benchmark alone, in this process."""
    module, function = dict(BENCHMARKS)[name].split(":")
    run: Callable[[], Coroutine[Any, Any, None]] = getattr(
        importlib.import_module(module), function
    )
    asyncio.run(run())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--one",
        metavar="NAME",
        choices=[name for name, _ in BENCHMARKS],
        help=f"run only this benchmark, in this process: {', '.join(n for n, _ in BENCHMARKS)}",
    )
    args = parser.parse_args()
    if args.one is not None:
        one(args.one)
    else:
        main()
