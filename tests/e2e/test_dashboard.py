"""The leaders' dashboard (``/dashboard``) in a real browser, offline, against ``shuangjian up``.

One ``shuangjian up --no-demo`` for the module, with a year of recent work in 固原 put in
through GraphQL (``tests/e2e/screenshots.py``'s ``seed_recent_year``: a few seconds, where
the demo takes twenty), and one headless Chromium (Debian's, as in ``test_browser.py``).
Every request that leaves the loopback is aborted as if the network were down, and
recorded. Each test checks what a user would see: the cards say what GraphQL says, a
row leads one level down and Back leads up, a registration shows up without a reload, a
scoped token reaches nothing outside its scope, axe finds nothing serious, and nothing
tries the internet or writes an error to the console.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from services.common.auth import Role, issue_token, load_or_create_secret
from tests.e2e.conftest import Suite
from tests.e2e.screenshots import (
    GUYUAN,
    SHANGHAI,
    Offline,
    Seeder,
    month_start,
    offline_context,
    seed_recent_year,
    token_of,
    wait_for_dashboard,
)
from tests.factories import valid_credit_code

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    pytest.skip(
        "no Chromium on this machine (`apt-get install chromium`; .ci/run installs it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
axe_playwright = pytest.importorskip(
    "axe_playwright_python.sync_playwright",
    reason="axe-playwright-python is not installed (pip install -e '.[dev]')",
)
expect = sync_api.expect

FIGURES = """query($code: String!, $from: Date!, $to: Date!) { region(code: $code) {
  fullName
  children { code name }
  stats {
    institutions { active subject subjectBaseline subjectCompressionRate }
    inspections { inspections personnelDispatched institutionsInspected findings
      rectificationsOpened rectificationsClosed rectificationRate rectificationsOverdue
      complaints lawTalks jointActions }
    finance { orders orderAmount escrowBalance released refunded riskGreen riskYellow riskRed }
  }
  history(from: $from, to: $to) { month institutionsRegistered institutionsClosed }
} }"""
WATCHLISTS = """query($code: String!) {
  institutions(filter: {region: $code, riskLevel: RED}, first: 20) {
    totalCount edges { node { name } } }
  rectifications(filter: {region: $code, overdue: true}, first: 20) {
    totalCount edges { node { institution { name } findings { type } } } }
}"""
REGISTER = """mutation($input: RegisterInstitutionInput!) {
  registerInstitution(input: $input) { id } }"""

# Each card of the page (its data-kpi) and where GraphQL has its figure.
COUNT_CARDS = {
    "active": ("institutions", "active"),
    "subject": ("institutions", "subject"),
    "riskRed": ("finance", "riskRed"),
    "inspections": ("inspections", "inspections"),
    "personnel": ("inspections", "personnelDispatched"),
    "inspected": ("inspections", "institutionsInspected"),
    "findings": ("inspections", "findings"),
    "overdue": ("inspections", "rectificationsOverdue"),
    "complaints": ("inspections", "complaints"),
    "lawTalks": ("inspections", "lawTalks"),
    "orders": ("finance", "orders"),
}
RATE_CARDS = {
    "compression": ("institutions", "subjectCompressionRate"),
    "rectification": ("inspections", "rectificationRate"),
}
MONEY_CARDS = {
    "orderAmount": ("finance", "orderAmount"),
    "escrow": ("finance", "escrowBalance"),
    "released": ("finance", "released"),
    "refunded": ("finance", "refunded"),
}
FINDING_NAMES = {"FEES": "收费问题", "FIRE_SAFETY": "消防安全", "TRAINING_MATERIAL": "培训材料"}


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    root = tmp_path_factory.mktemp("dashboard")
    suite = Suite(root, root / "data", "--no-demo")
    suite.start()
    try:
        seed_recent_year(suite)
        yield suite
    finally:
        suite.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def offline() -> Offline:
    return Offline()


@pytest.fixture
def page(browser: Browser, offline: Offline, tmp_path: Any) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage) at 1280×900; requests off the loopback fail."""
    context = offline_context(browser, offline, width=1280, height=900)
    opened = offline.watch(context.new_page())
    try:
        yield opened
        opened.screenshot(path=str(tmp_path / "last.png"), full_page=True)  # after a failure
    finally:
        context.close()


# --- helpers ---------------------------------------------------------------------------------


def months() -> dict[str, str]:
    """The span the page's trends cover: the last twelve months, by Beijing time."""
    today = datetime.now(SHANGHAI).date()
    return {"from": month_start(today, 11).isoformat(), "to": month_start(today, 0).isoformat()}


def figures(suite: Suite, code: str) -> dict[str, Any]:
    region: dict[str, Any] = suite.data(FIGURES, {"code": code, **months()})["region"]
    return region


def open_dashboard(page: Page, suite: Suite, fragment: str, token: str | None = None) -> None:
    page.goto(f"{suite.base_url}/dashboard#token={token or token_of(suite)}&{fragment}")


def wait_for_region(page: Page, full_name: str) -> None:
    expect(page.locator("#region-title")).to_contain_text(full_name)
    page.wait_for_function("() => !document.querySelector('main[aria-busy]')")
    page.locator("[data-kpi=active] .num").wait_for()


def card(page: Page, key: str) -> str:
    return page.locator(f"[data-kpi={key}] .num").inner_text()


def count(text: str) -> int:
    return int(text.replace(",", ""))


def assert_cards_match(page: Page, region: dict[str, Any]) -> None:
    stats = region["stats"]
    for key, (group, name) in COUNT_CARDS.items():
        assert count(card(page, key)) == stats[group][name], key
    for key, (group, name) in RATE_CARDS.items():
        rate = stats[group][name]
        shown = card(page, key)
        if rate is None:
            assert shown == "—", key
        else:
            assert shown.endswith("%"), (key, shown)
            assert abs(float(shown.rstrip("%")) - rate * 100) <= 0.05, (key, shown, rate)
    for key, (group, name) in MONEY_CARDS.items():
        # Exact yuan: the card is the Money string with thousands separators.
        assert Decimal(card(page, key).replace(",", "")) == Decimal(stats[group][name]), key
        assert card(page, key).replace(",", "") == stats[group][name], key


def child_rows(page: Page) -> list[str]:
    return page.locator("#children tbody tr th a").all_inner_texts()


def assert_offline_and_quiet(offline: Offline, *expected_errors: str) -> None:
    assert offline.outside == [], "the page tried the internet"
    unexpected = [
        error
        for error in offline.console_errors
        if not any(allowed in error for allowed in expected_errors)
    ]
    assert unexpected == [], unexpected


def scoped_token(suite: Suite, subject: str, region: str) -> str:
    return issue_token(
        load_or_create_secret(suite.data_dir), subject, role=Role.VIEWER, region=region
    )


# --- the tests -------------------------------------------------------------------------------


def test_the_cards_and_lists_say_what_graphql_says(
    running: Suite, page: Page, offline: Offline
) -> None:
    open_dashboard(page, running, f"region={GUYUAN}")
    region = figures(running, GUYUAN)
    wait_for_region(page, region["fullName"])
    assert "token=" not in page.url  # the token left the address bar at once
    assert_cards_match(page, region)

    # "本月" from the history: the last month's registrations.
    this_month = region["history"][-1]
    expect(page.locator("[data-kpi=active] .kpi-note")).to_contain_text(
        f"本月新登记 {this_month['institutionsRegistered']}"
    )
    # The trend's data table lists the twelve months GraphQL answers.
    wait_for_dashboard(page)
    table = page.locator("#chart-institutions table tbody tr")
    expect(table).to_have_count(12)
    registered = [count(t) for t in table.locator("td:nth-child(2)").all_text_contents()]
    assert registered == [m["institutionsRegistered"] for m in region["history"]]

    lists = running.data(WATCHLISTS, {"code": GUYUAN})
    red = [e["node"]["name"] for e in lists["institutions"]["edges"]]
    assert red, "the seed has a RED-risk institution"
    assert page.locator("#red tbody th").all_inner_texts() == red
    expect(page.locator("#red")).to_contain_text("红色风险")
    overdue = lists["rectifications"]["edges"]
    assert page.locator("#overdue tbody tr").count() == len(overdue) > 0
    # Finding types in Chinese, never the enum.
    types = page.locator("#overdue tbody td:nth-child(3)").all_inner_texts()
    wanted = {FINDING_NAMES.get(f["type"]) for e in overdue for f in e["node"]["findings"]}
    assert wanted - {None} <= {name for cell in types for name in cell.split("、")}
    assert "FEES" not in page.locator("#overdue").inner_text()
    assert_offline_and_quiet(offline)


def test_drill_down_by_mouse_and_keyboard_and_back_up(
    running: Suite, page: Page, offline: Offline
) -> None:
    open_dashboard(page, running, "region=640000")
    ningxia = figures(running, "640000")
    wait_for_region(page, "宁夏回族自治区")
    assert child_rows(page) == [c["name"] for c in ningxia["children"]]

    # A click anywhere on the row goes one level down.
    page.locator("#children tr[data-code='640400'] td").first.click()
    guyuan = figures(running, GUYUAN)
    wait_for_region(page, "宁夏回族自治区固原市")
    assert child_rows(page) == [c["name"] for c in guyuan["children"]]
    assert_cards_match(page, guyuan)
    assert "region=640400" in page.url

    # The breadcrumb goes back up; the browser's Back button returns.
    page.locator("#breadcrumb").get_by_role("link", name="宁夏回族自治区").click()
    wait_for_region(page, "宁夏回族自治区")
    expect(page.locator("#region-title")).not_to_contain_text("固原市")
    page.go_back()
    wait_for_region(page, "宁夏回族自治区固原市")

    # By keyboard: focus a row's link, Enter; then another with Space.
    page.get_by_role("link", name="原州区").focus()
    page.keyboard.press("Enter")
    wait_for_region(page, "宁夏回族自治区固原市原州区")
    assert_cards_match(page, figures(running, "640402"))
    expect(page.locator("#children")).to_contain_text("没有下级地区")
    expect(page.locator("#region-title")).to_be_focused()  # where the new view starts
    page.go_back()
    wait_for_region(page, "宁夏回族自治区固原市")
    page.get_by_role("link", name="西吉县").focus()
    page.keyboard.press("Space")
    wait_for_region(page, "宁夏回族自治区固原市西吉县")
    assert_cards_match(page, figures(running, "640422"))
    assert_offline_and_quiet(offline)


def test_a_registration_shows_up_live_without_a_reload(
    running: Suite, page: Page, offline: Offline
) -> None:
    open_dashboard(page, running, f"region={GUYUAN}")
    wait_for_region(page, "宁夏回族自治区固原市")
    expect(page.locator("#live-state")).to_have_text("实时")
    before = count(card(page, "active"))
    assert before == figures(running, GUYUAN)["stats"]["institutions"]["active"]
    page.evaluate("() => { window.sameDocument = true; }")
    stamp = page.locator("#live-time").inner_text()
    # Someone reading the table by keyboard keeps their place through the update.
    row = page.locator("#children").get_by_role("link", name="隆德县")
    row.focus()
    # The subscription is sent once the socket is acknowledged; give the gateway a moment
    # to start following the events before the one this test waits for.
    time.sleep(1.0)

    Seeder(running).send(
        REGISTER,
        {
            "input": {
                "id": "live-640423-001",
                "name": "隆德县新苗书法培训中心",
                "creditCode": valid_credit_code("640423", "MD9000001"),
                "region": "640423",
                "category": "NON_SUBJECT",
                "nonSubjectKind": "ARTS",
                "mode": "OFFLINE",
            }
        },
    )
    expect(page.locator("[data-kpi=active] .num")).to_have_text(f"{before + 1:,}", timeout=10_000)
    assert page.evaluate("() => window.sameDocument === true"), "the page was reloaded"
    lude = page.locator("#children tr[data-code='640423'] td").first
    expect(lude).to_have_text(f"{figures(running, '640423')['stats']['institutions']['active']:,}")
    expect(row).to_be_focused()
    expect(page.locator("#live-time")).not_to_have_text(stamp)
    expect(page.locator("#live-state")).to_have_text("实时")
    assert_offline_and_quiet(offline)


@pytest.mark.parametrize(
    ("scope", "inside", "outside"),
    [
        ("640400", ["640400", "640402", "640422", "640423", "640424", "640425"], "640100"),
        ("640402", ["640402"], "640422"),
    ],
    ids=["city", "district"],
)
def test_a_scoped_token_reaches_nothing_outside_its_scope(
    running: Suite, page: Page, offline: Offline, scope: str, inside: list[str], outside: str
) -> None:
    token = scoped_token(running, f"e2e-viewer-{scope}", scope)
    page.goto(f"{running.base_url}/dashboard#token={token}")
    full_name = running.data("query($c: String!) { region(code: $c) { fullName } }", {"c": scope})
    wait_for_region(page, full_name["region"]["fullName"])
    offered = page.locator("#region-select option").evaluate_all("os => os.map(o => o.value)")
    assert offered == inside
    # The province above is named in the breadcrumb but is no link.
    expect(page.locator("#breadcrumb").get_by_role("link")).to_have_count(0)

    # Editing the address to a region outside the scope shows the refusal, and no figures.
    page.evaluate(f"() => {{ location.hash = 'region={outside}'; }}")
    alert = page.locator("#alert")
    expect(alert).to_contain_text("无权查看（FORBIDDEN）")
    expect(page.locator("#main")).to_be_hidden()
    expect(page.locator("[data-kpi]")).to_have_count(0)
    # Nor the region above it.
    page.evaluate("() => { location.hash = 'region=640000'; }")
    expect(page.locator("#region-title")).to_have_text("地区 640000")
    expect(alert).to_contain_text("FORBIDDEN")
    expect(page.locator("[data-kpi]")).to_have_count(0)

    # Back inside, the figures return.
    page.evaluate(f"() => {{ location.hash = 'region={inside[-1]}'; }}")
    page.locator("[data-kpi=active] .num").wait_for()
    expect(alert).to_be_hidden()
    assert_offline_and_quiet(offline)


def test_axe_finds_nothing_serious(running: Suite, page: Page, offline: Offline) -> None:
    axe = axe_playwright.Axe()
    serious: list[str] = []

    def audit(where: str) -> None:
        violations = axe.run(page).response["violations"]
        for violation in violations:
            line = f"{where}: {violation['impact']} {violation['id']}: {violation['help']}"
            if violation["impact"] in ("serious", "critical"):
                serious.append(line + f" {[n['target'] for n in violation['nodes']]}")
            else:
                print(line)

    page.goto(f"{running.base_url}/dashboard")
    expect(page.locator("#sign-in")).to_be_visible()
    audit("sign-in")

    open_dashboard(page, running, f"region={GUYUAN}")
    wait_for_region(page, "宁夏回族自治区固原市")
    page.reload()  # a fresh page, the token kept for the tab
    wait_for_region(page, "宁夏回族自治区固原市")
    # The first Tab reaches the skip link, which leads to the figures.
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()

    wait_for_dashboard(page)
    page.locator("#chart-institutions summary").click()  # an open data table, too
    audit("固原市")
    assert serious == []
    assert_offline_and_quiet(offline)


def test_offline_quiet_and_the_token_never_stays_in_the_address(
    running: Suite, page: Page, offline: Offline
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    response = page.goto(f"{running.base_url}/dashboard")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"

    # A bad token: the form again, with the reason in Chinese.
    page.get_by_label("访问令牌").fill("not-a-token")
    page.get_by_role("button", name="进入看板").click()
    expect(page.locator("#sign-in-message")).to_contain_text("令牌无效或已过期")

    # The right one, pasted as GraphiQL's header: the dashboard.
    page.get_by_label("访问令牌").fill(f'{{"Authorization": "Bearer {token_of(running)}"}}')
    page.get_by_label("访问令牌").press("Enter")
    wait_for_region(page, "全国")
    wait_for_dashboard(page)
    assert page.evaluate("() => sessionStorage.length") == 1
    # A chart's tooltip, too, keeps to the page's Content-Security-Policy.
    chart = page.locator("#chart-institutions .chart")
    chart.hover()
    expect(chart).to_contain_text("新登记：")

    # Signing out forgets the token.
    page.get_by_role("button", name="退出登录").click()
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#sign-in-message")).to_contain_text("已退出")
    assert page.evaluate("() => sessionStorage.length") == 0

    # Everything came from this host: the page's files, ECharts, the served font.
    paths = {url.split("?")[0].removeprefix(running.base_url) for url in requested}
    assert "/static/dashboard/echarts.min.js" in paths
    assert "/dashboard/assets/dashboard.js" in paths
    assert "/fonts/NotoSansSC-Regular.ttf" in paths
    # The one console error is the browser logging the refused token's 401.
    assert_offline_and_quiet(offline, "401")
