"""The report's file formats: what each is called, its media type, and its renderer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from services.common.errors import BadInput
from services.reports.model import MonthlyReport
from services.reports.pdf import render_pdf
from services.reports.xlsx import render_xlsx


@dataclass(frozen=True)
class Format:
    name: str
    media_type: str
    render: Callable[[MonthlyReport], bytes]

    def filename(self, report: MonthlyReport) -> str:
        """e.g. ``640400-2025-03-每月通报.pdf``."""
        return f"{report.region.code}-{report.month.isoformat()[:7]}-每月通报.{self.name}"

    def content_disposition(self, report: MonthlyReport) -> str:
        """An attachment with the Chinese name (RFC 6266), and an ASCII one for old agents."""
        fallback = f"{report.region.code}-{report.month.isoformat()[:7]}-monthly.{self.name}"
        return (
            f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(self.filename(report))}"
        )


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            render_xlsx,
        ),
        Format("pdf", "application/pdf", render_pdf),
    )
}


def format_named(name: str) -> Format:
    try:
        return FORMATS[name.lower()]
    except KeyError:
        raise BadInput(
            f"format is one of {', '.join(FORMATS)}, not {name[:20]!r}", field="format"
        ) from None
