"""The bodies of ``shuangjian import …``: an import in this process, and a template.

``run_import`` builds the embedded platform from the settings (the data dir's event
stores), starts it, brings the read models up to date with what is stored (an inspection
or an order names institutions the registry's read model must know), imports as the
``importer`` role (national, or scoped to ``region``: rows outside it are ``FORBIDDEN``),
waits until everything imported is projected, and stops. It shows a progress bar (rows,
rows/s, time left) on a terminal, prints the counts and the error file's path, and
answers the exit code: 0 when no row failed, 1 when some did, 2 when the file (or an
option) was refused and nothing was imported.

``services/cli.py`` wires these to typer and holds the data dir (exclusively, as
``rebuild`` does: the SQLite stores have one writer process).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from services.bootstrap import Platform, build_platform
from services.common.auth import Principal, Role
from services.common.config import Settings
from services.common.errors import ShuangjianError
from services.importing.kinds import KINDS
from services.importing.runner import ImportResult, import_file
from services.importing.safety import Refused
from services.importing.template import write_template

OK = 0
ROWS_FAILED = 1
REFUSED = 2

IMPORTER_SUBJECT = "importer@cli"
"""The actor the events of a command-line import record (and the idempotency keys' owner)."""


class RowRate(ProgressColumn):
    """Rows per second, as rich measures the task's speed."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "– rows/s", style="progress.data.speed")


def run_import(
    kind: str,
    path: Path,
    settings: Settings,
    *,
    region: str | None = None,
    subject: str = IMPORTER_SUBJECT,
    errors_path: Path | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> int:
    """Import ``path`` as ``kind`` into the data dir of ``settings``; the exit code."""
    out = console or Console()
    if kind not in KINDS:
        return _refused(out, f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    try:
        result = asyncio.run(
            _import(kind, path, settings, region, subject, errors_path, out, progress)
        )
    except Refused as refused:
        return _refused(out, refused.message)
    except ShuangjianError as error:  # an option the platform refuses (--region)
        return _refused(out, f"{error.field or 'option'}: {error.message}")
    report(result, out)
    return ROWS_FAILED if result.counts.failed else OK


async def _import(
    kind: str,
    path: Path,
    settings: Settings,
    region: str | None,
    subject: str,
    errors_path: Path | None,
    out: Console,
    progress: bool,
) -> ImportResult:
    platform = build_platform(settings)
    principal = Principal.of(subject, Role.IMPORTER, region, platform.regions)
    await platform.start()
    try:
        await platform.settle()
        return await import_with_progress(
            platform, kind, path, principal, errors_path, out, progress
        )
    finally:
        await platform.settle()
        await platform.stop()


async def import_with_progress(
    platform: Platform,
    kind: str,
    path: Path,
    principal: Principal,
    errors_path: Path | None,
    out: Console,
    progress: bool = True,
) -> ImportResult:
    """One import into a running platform, with a rich progress bar on ``out``."""
    if not progress:
        return await import_file(kind, path, platform.execute, principal, errors_path=errors_path)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RowRate(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=out, transient=False) as bar:
        task = bar.add_task(f"{kind} ← {path.name}", total=None)

        def advance(done: int, expected: int | None) -> None:
            bar.update(task, completed=done, total=expected)

        return await import_file(
            kind, path, platform.execute, principal, on_progress=advance, errors_path=errors_path
        )


def report(result: ImportResult, out: Console) -> None:
    counts = result.counts
    out.print(
        f"{result.kind}: {counts.total:,} row(s): {counts.applied:,} applied, "
        f"{counts.unchanged:,} unchanged, {counts.failed:,} failed"
    )
    if result.ignored_columns:
        out.print(f"Columns not imported: {', '.join(result.ignored_columns)}", markup=False)
    if result.error_file is not None:
        out.print(f"Errors: {result.error_file}", markup=False, soft_wrap=True)


def write_template_command(kind: str, out_path: Path, console: Console | None = None) -> int:
    """``shuangjian import template KIND --out FILE.xlsx``: the exit code."""
    out = console or Console()
    try:
        written = write_template(kind, out_path)
    except Refused as refused:
        return _refused(out, refused.message)
    except OSError as exc:
        return _refused(out, f"cannot write {out_path}: {exc.strerror or exc}")
    out.print(f"Wrote the {kind} template to {written}", markup=False, soft_wrap=True)
    return OK


def _refused(out: Console, message: str) -> int:
    out.print(Text.assemble(("Error: ", "bold red"), message), soft_wrap=True)
    return REFUSED
