"""``python -m bench`` (``make bench``): every benchmark in turn, machine line first."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from bench import (
    command_path,
    contention,
    event_store,
    finance,
    gateway,
    inspections,
    kafka,
    memory,
    projection,
    query_cost,
    query_scale,
    visibility,
)
from bench._common import VERDICTS, Stopwatch, console, print_machine, verdict_table

BENCHMARKS: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
    ("command path", command_path.main),
    ("event store", event_store.main),
    ("projection", projection.main),
    ("gateway", gateway.main),
    ("inspections", inspections.main),
    ("finance", finance.main),
    ("query cost", query_cost.main),
    ("query scale", query_scale.main),
    ("write to visible", visibility.main),
    ("contention", contention.main),
    ("kafka", kafka.main),
    ("memory", memory.bench),
]


def main() -> None:
    print_machine()
    with Stopwatch() as everything:
        for name, bench in BENCHMARKS:
            console.rule(name)
            with Stopwatch() as one:
                asyncio.run(bench())
            console.print(f"{name}: {one.seconds:.1f} s wall", style="dim", highlight=False)
    console.rule()
    console.print(verdict_table(VERDICTS))
    console.print(f"all benchmarks: {everything.seconds:.1f} s wall", highlight=False)


if __name__ == "__main__":
    main()
