"""The leaders' dashboard at ``/dashboard`` and the report fonts at ``/fonts``.

The page is a client of the public GraphQL API like any other: it holds no data, so it is
served without a token, like GraphiQL; every query it sends carries the token the user
signs in with. Government networks are often offline and projectors show whatever the
browser has, so everything the page uses is a file of the platform: its own script and
stylesheet (``dashboard/``), ECharts (``static/dashboard``, vendored by
``scripts/refresh_web_assets.py``) and the Noto Sans SC fonts the PDF reports embed
(``services/reports/fonts``). The Content-Security-Policy says so to the browser: scripts,
styles, fonts and connections (the subscription's WebSocket included) to this origin only.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

DASHBOARD = Path(__file__).parent / "dashboard"
# The reports' fonts, shared rather than copied: the page's Chinese looks like the PDFs'.
FONTS = Path(__file__).parent.parent / "reports" / "fonts"
PAGE_PATH = "/dashboard"
ASSETS_PATH = "/dashboard/assets"
FONTS_PATH = "/fonts"

# A Host header that is a host name or address with an optional port, nothing else: it
# is written into the policy, so a crafted one must not add directives.
_HOST = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


def content_security_policy(host: str | None) -> str:
    """This origin only. ``'self'`` covers ws:/wss: to the same host in CSP Level 3; the
    explicit sources are for browsers that predate it."""
    sockets = f" ws://{host} wss://{host}" if host and _HOST.fullmatch(host) else ""
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "font-src 'self'",
            "img-src 'self' data:",
            f"connect-src 'self'{sockets}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(host: str | None) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(host),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        # The token may sit in the address bar's fragment for a moment; never pass the URL on.
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


@functools.cache
def _page_template() -> str:
    return (DASHBOARD / "index.html").read_text(encoding="utf-8")


def dashboard_page(root_path: str = "") -> str:
    """The page, with its URLs under ``root_path`` (behind a proxy that adds a prefix)."""
    return _page_template().replace("__ROOT__", root_path.rstrip("/"))


def add_pages(app: FastAPI) -> None:
    """``GET /dashboard`` (its files under ``/dashboard/assets``) and ``/fonts``."""

    @app.get(PAGE_PATH, include_in_schema=False)
    async def dashboard(request: Request) -> HTMLResponse:
        return HTMLResponse(
            dashboard_page(request.scope.get("root_path", "")),
            headers=security_headers(request.headers.get("host")),
        )

    app.mount(ASSETS_PATH, StaticFiles(directory=DASHBOARD), name="dashboard")
    # check_dir=False: the fonts may be built after the app is (scripts/build_fonts.py).
    app.mount(FONTS_PATH, StaticFiles(directory=FONTS, check_dir=False), name="fonts")
