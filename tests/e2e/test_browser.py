"""GraphiQL and the API page in a real browser with the internet unreachable.

Headless Chromium (Debian's ``chromium``, driven by Playwright; Playwright's own browser
downloads are never used) opens a running ``shuangjian up``. Every request that leaves the
loopback is aborted as if the network were down, and recorded: the pages must render,
GraphiQL must run a query, and nothing may even try to reach the internet.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import Suite

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip(
        "no Chromium on this machine (`apt-get install chromium`; .ci/run installs it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    root = tmp_path_factory.mktemp("browser")
    suite = Suite(root, root / "data", "--no-demo")
    suite.start()
    try:
        yield suite
    finally:
        suite.kill()


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[tuple[Page, list[str]]]:
    """A page whose requests off the loopback fail as when offline; it lists them."""
    outside: list[str] = []

    def offline(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOOPBACK:
            route.continue_()
        else:
            outside.append(url)
            route.abort("internetdisconnected")

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.route("**/*", offline)
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            yield page, outside
            page.screenshot(path=str(tmp_path / "last.png"))  # for a look after a failure
        finally:
            browser.close()


def test_graphiql_renders_and_runs_a_query_offline(
    running: Suite, browser_page: tuple[Page, list[str]]
) -> None:
    page, outside = browser_page
    page.goto(f"{running.base_url}/graphql")
    # The editor replaced "Loading...", with the welcome query in it.
    editor = page.locator(".graphiql-query-editor .CodeMirror")
    editor.wait_for()
    assert "Every query needs a token" in editor.inner_text()

    # What the welcome says: paste the header into the Headers tab, then run.
    page.get_by_text("Headers", exact=True).click()
    page.locator(".graphiql-editor-tool .CodeMirror").last.click()
    authorization = running.client.headers["Authorization"]
    page.keyboard.insert_text(f'{{"Authorization": "{authorization}"}}')
    page.locator(".graphiql-execute-button").click()

    result = page.locator(".result-window")
    sync_api.expect(result).to_contain_text('"640402"')
    text = result.inner_text()
    assert '"name": "固原市"' in text and "errors" not in text
    assert outside == []


def test_the_api_page_renders_offline(running: Suite, browser_page: tuple[Page, list[str]]) -> None:
    page, outside = browser_page
    page.goto(f"{running.base_url}/api/registry/docs")
    operations = page.locator(".opblock")
    sync_api.expect(operations).to_have_count(10)
    sync_api.expect(operations.first).to_contain_text("/v1/institutions")
    assert outside == []
