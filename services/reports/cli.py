"""The body of ``shuangjian report monthly``: a report from the data dir, or from a server.

Without ``--url`` it builds the embedded platform from the data dir (held exclusively by
``services/cli.py``, as an import is: stop ``make run`` first), brings the read models up
to date with what is stored, and builds the report as a national viewer. With ``--url`` it
asks a running gateway (``GET /api/reports/monthly``) with a token, so the figures are what
that deployment's GraphQL answers, scoped by the token. Either way the exit code is 0 when
the file was written and 2 when the request was refused (the message says which option).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from rich.console import Console
from rich.text import Text

from services.bootstrap import build_platform, limited_schema
from services.common.auth import Principal, Role
from services.common.config import Settings
from services.common.errors import ShuangjianError
from services.gateway.context import GatewayContext
from services.reports.formats import Format, format_named
from services.reports.http import MONTHLY_PATH
from services.reports.monthly import build

OK = 0
REFUSED = 2
SUBJECT = "report@cli"


def choose_format(name: str | None, out: Path) -> Format:
    """``--format``, or what ``--out`` ends with."""
    return format_named(name or out.suffix.lstrip(".") or "xlsx")


def report_from_data_dir(
    settings: Settings, region: str, month: str, fmt: Format, out: Path, console: Console
) -> int:
    async def make() -> bytes:
        platform = build_platform(settings)
        await platform.start()
        try:
            await platform.settle()
            principal = Principal.of(SUBJECT, Role.VIEWER, None, platform.regions)
            context = GatewayContext(platform, principal)
            report = await build(limited_schema(settings), context, region, month)
            return fmt.render(report)
        finally:
            await platform.stop()

    try:
        body = asyncio.run(make())
    except ShuangjianError as error:
        return _refused(console, f"--{error.field or 'option'}: {error.message}")
    return _write(body, region, month, fmt, out, console)


def report_from_server(
    url: str, token: str | None, region: str, month: str, fmt: Format, out: Path, console: Console
) -> int:
    if not token:
        return _refused(console, "--url needs a token: --token or SHUANGJIAN_TOKEN")
    params = {"region": region, "month": month, "format": fmt.name}
    try:
        response = httpx.get(
            url.rstrip("/") + MONTHLY_PATH,
            params=params,
            headers={"Authorization": f"Bearer {token.removeprefix('Bearer ').strip()}"},
            timeout=120,
        )
    except httpx.HTTPError as exc:
        return _refused(console, f"cannot reach {url}: {exc}")
    if response.status_code != 200:
        try:
            error = response.json()["error"]
            message = f"--{error.get('field') or 'option'}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = f"{url} answered {response.status_code}"
        return _refused(console, message)
    return _write(response.content, region, month, fmt, out, console)


def _write(body: bytes, region: str, month: str, fmt: Format, out: Path, console: Console) -> int:
    try:
        out.write_bytes(body)
    except OSError as exc:
        return _refused(console, f"cannot write {out}: {exc.strerror or exc}")
    size = f"{len(body) / 1024:,.0f} KB"
    console.print(
        f"Wrote the {month} report of {region} ({fmt.name.upper()}, {size}) to {out}",
        markup=False,
        soft_wrap=True,
    )
    return OK


def _refused(console: Console, message: str) -> int:
    console.print(Text.assemble(("Error: ", "bold red"), message), soft_wrap=True)
    return REFUSED
