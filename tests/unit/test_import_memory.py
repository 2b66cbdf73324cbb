"""A big sheet is streamed: peak memory does not grow with the number of rows.

Measured with ``tracemalloc`` (what Python allocates), not with timings. Reading a
200,000-row CSV (25 MB; its rows as Python objects would be ~150 MB) and a 25,000-row
workbook stays under the bound; so does the whole import (reading, parsing, commands,
idempotency keys, error file) of a 20,000-row CSV with a ``send`` that keeps nothing,
which would grow by ~20 MB if it held on to its rows. (``tracemalloc`` makes openpyxl's
parser about five times slower, hence the workbook's size.)
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from openpyxl import Workbook

from services.common.application import CommandContext, Outcome
from services.common.auth import SYSTEM
from services.common.commands import Command
from services.importing import import_file
from services.importing.reading import open_sheet
from services.registry.domain.rules import credit_code_check_char

HEADER = [
    "机构名称",
    "统一社会信用代码",
    "区县代码",
    "类别",
    "非学科类别",
    "办学形式",
    "地址",
    "登记日期",
]
BOUND = 2 * 1024 * 1024
T = TypeVar("T")


def row(n: int) -> list[str]:
    first17 = f"52640402MA{n:07d}"
    bad = n % 1000 == 999  # some rows fail: the error file is written as it goes
    return [
        f"原州区第{n}培训中心",
        first17 + credit_code_check_char(first17),
        "640402",
        "外星类" if bad else "非学科类",
        "艺术",
        "线下",
        f"固原市原州区文化街{n}号",
        "2021-03-01",
    ]


def write_csv(path: Path, rows: int) -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        out.write(",".join(HEADER) + "\r\n")
        for n in range(rows):
            out.write(",".join(row(n)) + "\r\n")
    return path


class Counting:
    """A ``send`` that answers each command as applied and keeps nothing."""

    def __init__(self) -> None:
        self.sent = 0

    async def __call__(self, command: Command, ctx: CommandContext) -> Outcome[Any]:
        self.sent += 1
        return Outcome(aggregate=None, events=[ctx])  # type: ignore[list-item]


def peak_growth(work: Callable[[], T]) -> tuple[int, T]:
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base, result


def count_rows(path: Path) -> int:
    with open_sheet(path) as sheet:
        return sum(1 for _ in sheet.rows)


def report(what: str, path: Path, growth: int) -> None:
    size = path.stat().st_size / 2**20
    print(f"\n{what} ({size:.1f} MB on disk): peak growth {growth / 2**20:.2f} MB")


def test_reading_a_200000_row_csv_streams(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "big.csv", 200_000)
    growth, rows = peak_growth(lambda: count_rows(path))
    assert rows == 200_000
    report("200,000-row CSV", path, growth)
    assert growth < BOUND


def test_reading_a_25000_row_workbook_streams(tmp_path: Path) -> None:
    path = tmp_path / "big.xlsx"
    book = Workbook(write_only=True)  # no <dimension>: nothing may size it by reading it all
    sheet = book.create_sheet()
    sheet.append(HEADER)
    for n in range(25_000):
        sheet.append(row(n))
    book.save(path)
    small = tmp_path / "small.xlsx"
    book = Workbook(write_only=True)
    book.create_sheet().append(HEADER)
    book.save(small)
    count_rows(small)  # openpyxl's modules imported before measuring
    growth, rows = peak_growth(lambda: count_rows(path))
    assert rows == 25_000
    report("25,000-row xlsx", path, growth)
    assert growth < BOUND


async def test_the_whole_import_keeps_nothing_per_row(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "big.csv", 20_000)
    send = Counting()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = await import_file("institutions", path, send, SYSTEM)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.counts.as_dict() == {
        "applied": 19_980,
        "unchanged": 0,
        "failed": 20,
        "total": 20_000,
    }
    assert send.sent == 19_980
    assert len(result.errors) == 20
    report("20,000-row CSV, whole import", path, peak - base)
    assert peak - base < BOUND
