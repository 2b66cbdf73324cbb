"""The GraphiQL and API pages load every asset from the platform itself, never the internet.

The browser test (``tests/e2e/test_browser.py``) shows the pages work offline; these check,
without a browser, that no page names an outside URL, that every asset a page names is
served, and that the vendored files are exactly the pinned npm files with their licences.
"""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

import services.common.http as command_http
import services.gateway.app as gateway_app

BUNDLES = [
    gateway_app.STATIC / "graphiql",
    gateway_app.STATIC / "dashboard",
    command_http.STATIC / "swagger-ui",
]
PAGES = ["/graphql", "/api/registry/docs", "/dashboard"]
# MIT, Apache 2.0, BSD (zrender and d3 inside ECharts' single-file build).
LICENCE_MARKS = (
    "Permission is hereby granted",
    "Apache License",
    "Redistribution and use in source and binary forms",
)


class References(HTMLParser):
    """Every URL a page loads: src and href attributes, and url(...) in inline styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.urls += re.findall(r"url\(\s*['\"]?([^'\")]+)", data)
            self.urls += re.findall(r"@import\s+['\"]([^'\"]+)", data)


async def page(app: Any, path: str) -> str:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        response = await client.get(path, headers={"Accept": "text/html"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


@pytest.mark.parametrize("path", PAGES)
async def test_pages_load_only_assets_the_platform_serves(app: Any, path: str) -> None:
    html = await page(app, path)
    assert not re.findall(r"https?://", html), "the page names an outside URL"
    parser = References()
    parser.feed(html)
    # data: URLs and in-page links (a skip link's "#main") load nothing.
    assets = [url for url in parser.urls if not url.startswith(("data:", "#"))]
    assert len(assets) >= 3, assets  # a script, a stylesheet and more
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        for url in assets:
            assert url.startswith("/") and not url.startswith("//"), url
            served = await client.get(url)
            assert served.status_code == 200, url
            assert len(served.content) > 0, url


async def test_the_graphiql_page_keeps_its_welcome(app: Any) -> None:
    html = await page(app, "/graphql")
    assert "/static/graphiql/graphiql.min.js" in html
    match = re.search(r"const EXAMPLE_QUERY = (\".*?\");\n", html)
    assert match is not None
    welcome = json.loads(match.group(1))
    assert welcome == gateway_app.WELCOME
    assert '{"Authorization": "Bearer <token>"}' in welcome


@pytest.mark.parametrize("folder", BUNDLES, ids=lambda folder: folder.name)
def test_vendored_assets_are_the_pinned_files_with_their_licences(folder: Path) -> None:
    manifest: dict[str, dict[str, dict[str, str]]] = json.loads(
        (folder / "ASSETS.json").read_text(encoding="utf-8")
    )
    listed = {name for files in manifest.values() for name in files}
    assert listed == {p.name for p in folder.iterdir()} - {"ASSETS.json"}
    for package, files in manifest.items():
        name, _, version = package.rpartition("@")
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), package  # pinned, not a range
        licences = [f for f in files if f.endswith(".LICENSE.txt")]
        assert licences, f"{package} has no licence text"
        for licence in licences:
            text = (folder / licence).read_text()
            assert any(mark in text for mark in LICENCE_MARKS), licence
        for file, entry in files.items():
            digest = hashlib.sha256((folder / file).read_bytes()).hexdigest()
            assert digest == entry["sha256"], f"{file} is not the file of {name}@{version}"
