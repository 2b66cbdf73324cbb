"""One import: read a sheet as it streams, send each unit's commands, report every row.

``import_file`` is the whole of it, free of HTTP and of the terminal: the CLI and the HTTP
job both call it with a ``send`` (the embedded ``Platform.execute``, or a client of the
services' APIs: anything of that shape), a principal (the importer), and a progress
callback. Rows are applied in order; a refused row is written to the error file and the
next one goes on. Counts are per data row: ``applied`` (something was recorded),
``unchanged`` (the platform already had it: an idempotent repeat), ``failed``.

The error file (``<name>.errors.csv`` beside the input unless told otherwise) is written
as errors happen, so memory stays bounded however many rows fail: UTF-8 with a BOM so that
Excel opens it as such, columns 行号, 列, 错误, code, every cell passed through
``escape_for_spreadsheet``. A run without errors removes an error file a previous run
left. Only the first ``keep_errors`` errors are also kept in memory, for a job's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import structlog

from services.common.application import CommandContext, Outcome
from services.common.auth import Principal
from services.common.commands import Command
from services.common.errors import ShuangjianError
from services.importing.columns import Cells, by_key, resolve_header
from services.importing.kinds import KINDS, Kind, Unit, idempotency_key
from services.importing.reading import Row, open_sheet
from services.importing.safety import Refused, escape_for_spreadsheet

log = structlog.get_logger(__name__)

Send = Callable[[Command, CommandContext], Awaitable[Outcome[Any]]]
"""How a command reaches the platform (``Platform.execute`` has this shape)."""

Progress = Callable[[int, int | None], None]
"""``(rows done, rows expected or None)``; the expectation is an estimate until the end."""

ERROR_HEADER = ("行号", "列", "错误", "code")
PROGRESS_EVERY = 0.2
"""Seconds between progress reports (and the first row and the last always report)."""
YIELD_EVERY = 200
"""Rows after which the event loop gets a turn even when ``send`` never waits."""


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    """The column's header as the file wrote it ("" when the error is the row's)."""
    message: str
    code: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message, "code": self.code}


@dataclass
class Counts:
    applied: int = 0
    unchanged: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.applied + self.unchanged + self.failed

    def as_dict(self) -> dict[str, int]:
        return {
            "applied": self.applied,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "total": self.total,
        }


@dataclass
class ImportResult:
    kind: str
    counts: Counts
    error_file: Path | None
    errors: list[RowError] = field(default_factory=list)
    """The first ``keep_errors`` error rows (the file has them all)."""
    ignored_columns: list[str] = field(default_factory=list)
    source: str = ""
    """``xlsx`` or the CSV's encoding."""


def default_error_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.errors.csv")


async def import_file(
    kind: str,
    path: Path,
    send: Send,
    principal: Principal,
    *,
    on_progress: Progress | None = None,
    errors_path: Path | None = None,
    keep_errors: int = 100,
    counts: Counts | None = None,
) -> ImportResult:
    """Import ``path`` as ``kind``; ``Refused`` when the file as a whole cannot be.

    ``counts``, when given, is updated row by row (a job shows it while it runs).
    """
    spec = KINDS.get(kind)
    if spec is None:
        raise Refused(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    target = errors_path or default_error_path(path)
    with open_sheet(path) as sheet:
        index, written, ignored = resolve_header(sheet.header, spec.columns, spec.groups, path.name)
        run = _Run(spec, principal, send, target, written, keep_errors, on_progress)
        if counts is not None:
            run.counts = counts
        run.expected = sheet.total_estimate
        try:
            await run.apply(spec.units(_cells(sheet.rows, index, spec)))
        except Refused as refused:
            run.discard()
            raise Refused(
                f"{refused.message} (stopped after {run.counts.total:,} row(s): "
                f"{run.counts.applied:,} applied before it stay; importing the corrected "
                "file again is safe)"
                if run.counts.total
                else refused.message
            ) from None
        except BaseException:
            run.discard()
            raise
        error_file = run.finish()
    return ImportResult(kind, run.counts, error_file, run.kept, ignored, sheet.source)


def _cells(rows: Iterator[Row], index: dict[str, int], kind: Kind) -> Iterator[Cells]:
    columns = by_key(kind.columns)
    for row in rows:
        if not row.empty:
            yield Cells(row, index, columns)


class _Run:
    """The state of one import while it runs: counts, the error file, progress."""

    def __init__(
        self,
        kind: Kind,
        principal: Principal,
        send: Send,
        target: Path,
        written: dict[str, str],
        keep_errors: int,
        on_progress: Progress | None,
    ) -> None:
        self.kind = kind
        self.principal = principal
        self.send = send
        self.target = target
        self.partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        self.headers = {c.key: written.get(c.key, c.header) for c in kind.columns}
        self.keep_errors = keep_errors
        self.on_progress = on_progress
        self.counts = Counts()
        self.kept: list[RowError] = []
        self.expected: int | None = None
        self._out: IO[str] | None = None
        self._writer: Any = None
        self._reported = 0.0
        self._since_yield = 0

    async def apply(self, units: Iterator[Unit]) -> None:
        for unit in units:
            if unit.problems:
                self._fail(
                    unit, [(row, problem.field or "", problem) for row, problem in unit.problems]
                )
            else:
                await self._send(unit)
            await self._progress(len(unit.rows))

    async def _send(self, unit: Unit) -> None:
        recorded = False
        for step, command in enumerate(unit.commands):
            ctx = CommandContext(
                principal=self.principal,
                idempotency_key=idempotency_key(self.kind.name, command),
            )
            try:
                outcome = await self.send(command, ctx)
            except ShuangjianError as error:
                row, column = unit.locate(error.field, step)
                self._fail(unit, [(row or unit.rows[0], column, error)])
                return
            except Exception:
                # A bug or a store that broke: logged with its details, the row reported.
                log.exception("import.row_failed", kind=self.kind.name, row=unit.rows[0])
                internal = ShuangjianError("internal error (logged); the row was not applied")
                self._fail(unit, [(unit.rows[0], "", internal)])
                return
            recorded = recorded or bool(outcome.events)
        if recorded:
            self.counts.applied += len(unit.rows)
        else:
            self.counts.unchanged += len(unit.rows)

    def _fail(self, unit: Unit, errors: list[tuple[int, str, ShuangjianError]]) -> None:
        self.counts.failed += len(unit.rows)
        named = {row for row, _, _ in errors}
        for row, column, error in errors:
            self._error(RowError(row, self.headers.get(column, ""), error.message, error.code))
        if len(unit.rows) > 1:
            first = min(named)
            code = errors[0][2].code
            for row in unit.rows:
                if row not in named:
                    self._error(
                        RowError(
                            row,
                            "",
                            f"not recorded: the rows of a batch are one commit, and row "
                            f"{first} was refused",
                            code,
                        )
                    )

    def _error(self, error: RowError) -> None:
        if len(self.kept) < self.keep_errors:
            self.kept.append(error)
        if self._writer is None:
            self._out = self.partial.open("w", encoding="utf-8-sig", newline="")
            self._writer = csv.writer(self._out)
            self._writer.writerow(ERROR_HEADER)
        self._writer.writerow(
            [
                str(error.row),
                *(escape_for_spreadsheet(v) for v in (error.column, error.message)),
                error.code,
            ]
        )

    async def _progress(self, rows: int) -> None:
        done = self.counts.total
        self._since_yield += rows
        if self._since_yield >= YIELD_EVERY:
            self._since_yield = 0
            await asyncio.sleep(0)
        if self.on_progress is None:
            return
        now = time.monotonic()
        if done == rows or now - self._reported >= PROGRESS_EVERY:
            self._reported = now
            expected = self.expected
            self.on_progress(done, max(expected, done) if expected is not None else None)

    def finish(self) -> Path | None:
        """The error file in place (or a stale one removed); the last progress report."""
        if self.on_progress is not None:
            self.on_progress(self.counts.total, self.counts.total)
        if self._out is None:
            self.target.unlink(missing_ok=True)
            return None
        self._out.close()
        os.replace(self.partial, self.target)
        return self.target

    def discard(self) -> None:
        if self._out is not None:
            self._out.close()
        with contextlib.suppress(FileNotFoundError):
            self.partial.unlink()


def read_error_file(path: Path) -> list[list[str]]:
    """The rows of an error file, header included (tests, and an HTTP download)."""
    with path.open(encoding="utf-8-sig", newline="") as text:
        return list(csv.reader(text))


__all__ = [
    "ERROR_HEADER",
    "Counts",
    "ImportResult",
    "Progress",
    "RowError",
    "Send",
    "default_error_path",
    "import_file",
    "read_error_file",
]
