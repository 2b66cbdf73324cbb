"""Screenshots for the README: ``python -m tests.e2e.screenshots OUTDIR``.

Starts ``shuangjian up`` with the demo data, as ``make run`` does (its last twelve months
are 固原's work). Then headless Chromium (Debian's, as in ``test_browser.py``), with every
request off the loopback aborted as if offline, opens ``/dashboard`` at 1600×1000 and
writes ``dashboard.png`` (the whole country, where a national admin lands) and
``dashboard-city.png`` (drilled down through 宁夏's table to 固原市); and the first two
pages of 固原's monthly report for last month, as ``/api/reports/monthly`` serves the PDF,
rendered by pdfium (``report-page1.png``, ``report-page2.png``). ``seed_recent_year``
gives the dashboard's browser test a year of work without the demo.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from tests.e2e.conftest import Suite, wait_until
from tests.factories import valid_credit_code

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Route

SHANGHAI = ZoneInfo("Asia/Shanghai")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
WAIT_MS = 20_000

# 固原's districts: 原州区, 西吉县, 隆德县, 泾源县, 彭阳县.
GUYUAN = "640400"
DISTRICTS = ["640402", "640422", "640423", "640424", "640425"]
DISTRICT_NAMES = {
    "640402": "原州区",
    "640422": "西吉县",
    "640423": "隆德县",
    "640424": "泾源县",
    "640425": "彭阳县",
}
BRANDS = ["启航", "明德", "博雅", "星辰", "育才", "新苗", "乐学", "智航", "翰墨", "童心", "知行"]
KINDS = [
    ("ARTS", "美术培训中心"),
    ("SPORTS", "体育俱乐部"),
    ("SCIENCE_TECH", "编程科技中心"),
    ("COMPREHENSIVE_PRACTICE", "研学实践基地"),
    ("ARTS", "音乐艺术学校"),
]
FINDINGS = [
    ("FIRE_SAFETY", "灭火器过期，疏散通道堆放杂物"),
    ("STAFF_QUALIFICATION", "两名教师无相应资格证书"),
    ("FEES", "一次性收取超过三个月的费用"),
    ("FALSE_ADVERTISING", "宣传单使用“提分保过”字样"),
    ("TRAINING_MATERIAL", "培训材料未经备案"),
    ("HIDDEN_TRAINING", "以托管名义开展学科类培训"),
]

REGISTER = """mutation($input: RegisterInstitutionInput!) {
  registerInstitution(input: $input) { id } }"""
APPROVE = """mutation($id: ID!, $license: String!, $at: DateTime) {
  approveInstitution(id: $id, licenseNo: $license, occurredAt: $at) { status } }"""
EXIT = """mutation($id: ID!, $at: DateTime) {
  exitInstitution(id: $id, reason: "有序退出", occurredAt: $at) { status } }"""
REVOKE = """mutation($id: ID!, $at: DateTime) {
  revokeInstitution(id: $id, reason: "无证办学，依法取缔", occurredAt: $at) { status } }"""
INSPECT = """mutation($input: RecordInspectionInput!) {
  recordInspection(input: $input) { id visits { rectification { id } } } }"""
INSPECTION = """query($id: ID!) { inspection(id: $id) { visits { rectification { id } } } }"""
SUBMIT = """mutation($id: ID!, $at: DateTime) {
  submitRectification(id: $id, note: "已按要求整改", occurredAt: $at) { status } }"""
VERIFY = """mutation($id: ID!, $at: DateTime) {
  verifyRectification(id: $id, passed: true, occurredAt: $at) { status } }"""
COMPLAIN = """mutation($input: FileComplaintInput!) { fileComplaint(input: $input) { id } }"""
LAW_TALK = """mutation($input: RecordLawTalkInput!) { recordLawTalk(input: $input) }"""
OPEN_ACCOUNT = """mutation($id: ID!, $at: DateTime) {
  openSupervisionAccount(input: {institutionId: $id, mode: BANK_CUSTODY, bank: "宁夏银行",
    accountNo: "6228480012345678", occurredAt: $at}) { balance } }"""
ORDER = (
    """mutation($input: RecordPrepaidOrderInput!) { recordPrepaidOrder(input: $input) { id } }"""
)
CONFIRM = """mutation($id: ID!, $lessons: Int!, $at: DateTime) {
  confirmLessons(orderId: $id, lessons: $lessons, occurredAt: $at) { id } }"""
REFUND = """mutation($id: ID!, $at: DateTime) {
  refundOrder(orderId: $id, reason: "家长申请退费", occurredAt: $at) { id } }"""


def month_start(today: date, back: int) -> date:
    """The first day of the month ``back`` months before ``today``'s."""
    index = today.year * 12 + today.month - 1 - back
    return date(index // 12, index % 12 + 1, 1)


@dataclass
class Seeder:
    """Recent facts through GraphQL; every time is in the past, most of them back-dated."""

    suite: Suite
    now: datetime = field(default_factory=lambda: datetime.now(SHANGHAI))
    serial: int = 0
    institutions: dict[str, list[str]] = field(default_factory=dict)

    def send(self, mutation: str, variables: dict[str, Any]) -> dict[str, Any] | None:
        """Run a mutation; None when the gateway accepted it but gave up waiting for the read
        models (a busy machine): the facts are recorded and the read models catch up."""
        body = self.suite.post(mutation, variables)
        errors = body.get("errors") or []
        if errors and all(
            (e.get("extensions") or {}).get("code") == "UNAVAILABLE" and "accepted" in e["message"]
            for e in errors
        ):
            return None
        assert not errors, errors
        data: dict[str, Any] = body["data"]
        return data

    def inspect(self, batch: dict[str, Any]) -> list[str]:
        """Record an inspection batch; the ids of the rectifications it opened."""
        answer = self.send(INSPECT, {"input": batch})
        if answer is None:
            answer = wait_until(
                lambda: self.suite.data(INSPECTION, {"id": batch["id"]}).get("inspection"),
                30.0,
                f"inspection {batch['id']} in the read model",
                interval=0.2,
            )
        else:
            answer = answer["recordInspection"]
        return [v["rectification"]["id"] for v in answer["visits"] if v["rectification"]]

    def at(self, back: int, day: int, hour: int = 10) -> str:
        """``day`` days into the month ``back`` months ago, never later than a minute ago."""
        start = month_start(self.now.date(), back)
        moment = datetime(start.year, start.month, start.day, hour, tzinfo=SHANGHAI)
        moment += timedelta(days=day)
        latest = self.now - timedelta(minutes=1)
        if moment > latest:
            moment = max(latest, datetime(start.year, start.month, start.day, tzinfo=SHANGHAI))
        return moment.replace(microsecond=0).isoformat()

    def register(self, district: str, when: str, *, subject: bool = False) -> str:
        self.serial += 1
        n = self.serial
        brand = BRANDS[n % len(BRANDS)]
        kind, noun = KINDS[n % len(KINDS)]
        noun = "学科培训学校" if subject else noun
        institution_id = f"recent-{district}-{n:03d}"
        self.send(
            REGISTER,
            {
                "input": {
                    "id": institution_id,
                    "name": f"{DISTRICT_NAMES[district]}{brand}{noun}",
                    "creditCode": valid_credit_code(district, f"MD{n:07d}"),
                    "region": district,
                    "category": "SUBJECT" if subject else "NON_SUBJECT",
                    "nonSubjectKind": None if subject else kind,
                    "mode": "OFFLINE",
                    "occurredAt": when,
                }
            },
        )
        self.institutions.setdefault(district, []).append(institution_id)
        return institution_id

    def approve(self, institution_id: str, when: str) -> None:
        self.send(
            APPROVE, {"id": institution_id, "license": f"教民{institution_id[-6:]}号", "at": when}
        )


def seed_recent_year(suite: Suite) -> dict[str, Any]:
    """A year of work in 固原: registrations and closures, inspections with findings and
    rectifications (two overdue, one of them about fees: a RED-risk institution),
    complaints, law talks, prepaid orders with lessons released and a refund.

    Returns what was made, for tests: institution ids by district and the red one.
    """
    seed = Seeder(suite)
    # Subject institutions on the register before the policy (the 压减率's baseline).
    subject: list[str] = []
    for n, district in enumerate(DISTRICTS[:3] * 2):
        institution_id = seed.register(
            district, f"2021-03-{n + 1:02d}T09:00:00+08:00", subject=True
        )
        seed.approve(institution_id, f"2021-04-{n + 1:02d}T09:00:00+08:00")
        subject.append(institution_id)

    # Established non-subject institutions that take prepaid fees (one a district).
    payers: list[str] = []
    for n, district in enumerate(DISTRICTS[:3]):
        institution_id = seed.register(district, f"2024-0{n + 3}-05T09:00:00+08:00")
        seed.approve(institution_id, f"2024-0{n + 3}-20T09:00:00+08:00")
        payers.append(institution_id)

    # New non-subject institutions month by month.
    for back in range(11, -1, -1):
        for k in range(1 + (11 - back) % 3):
            district = DISTRICTS[(back + k) % len(DISTRICTS)]
            institution_id = seed.register(district, seed.at(back, 2 + 5 * k))
            if back > 0:
                seed.approve(institution_id, seed.at(back, 12 + 5 * k))

    # Closures: two subject institutions leave, one is shut down.
    seed.send(EXIT, {"id": subject[0], "at": seed.at(7, 10)})
    seed.send(EXIT, {"id": subject[1], "at": seed.at(4, 10)})
    seed.send(REVOKE, {"id": subject[2], "at": seed.at(2, 10)})

    # Inspections: one batch a month; the older rectifications are closed.
    rectifications: list[tuple[int, str]] = []
    for back in range(10, -1, -1):
        district = DISTRICTS[back % len(DISTRICTS)]
        targets = seed.institutions[district][-3:]
        visits = []
        for k, institution_id in enumerate(targets):
            problems = [FINDINGS[(back + k) % len(FINDINGS)]] if (back + k) % 2 == 0 else []
            visits.append(
                {
                    "institutionId": institution_id,
                    "findings": [{"type": t, "description": d} for t, d in problems],
                }
            )
        opened = seed.inspect(
            {
                "id": f"recent-batch-{back:02d}",
                "region": district,
                "kind": "JOINT" if back % 4 == 0 else "DAILY",
                "startedAt": seed.at(back, 6, 9),
                "personnel": 4 + back % 5,
                "departments": ["教育局", "市场监管局"] if back % 4 == 0 else ["教育局"],
                "visits": visits,
                "rectifyWithinDays": 20,
            }
        )
        rectifications += [(back, rectification_id) for rectification_id in opened]
    for back, rectification_id in rectifications:
        if back >= 4:
            seed.send(SUBMIT, {"id": rectification_id, "at": seed.at(back - 1, 1)})
            seed.send(VERIFY, {"id": rectification_id, "at": seed.at(back - 1, 3)})

    # A fees problem found two months ago and never put right: overdue, RED risk.
    red = seed.institutions["640402"][-1]
    seed.inspect(
        {
            "id": "recent-batch-fees",
            "region": "640402",
            "kind": "SPECIAL",
            "startedAt": seed.at(2, 3, 9),
            "personnel": 6,
            "departments": ["教育局", "市场监管局"],
            "visits": [
                {
                    "institutionId": red,
                    "findings": [{"type": "FEES", "description": "超期预收培训费"}],
                }
            ],
            "rectifyWithinDays": 15,
        }
    )

    # Complaints through the channels, and law talks.
    channels = ["HOTLINE_12345", "PLATFORM", "ONLINE", "PETITION"]
    for back in range(9, -1, -2):
        district = DISTRICTS[back % len(DISTRICTS)]
        seed.send(
            COMPLAIN,
            {
                "input": {
                    "region": district,
                    "channel": channels[back % len(channels)],
                    "institutionId": seed.institutions[district][-1],
                    "text": "家长反映退费困难",
                    "occurredAt": seed.at(back, 15),
                }
            },
        )
    for back in (8, 3):
        seed.send(
            LAW_TALK,
            {"input": {"region": "640402", "persons": 5 + back, "occurredAt": seed.at(back, 20)}},
        )

    # Prepaid money: three supervised accounts, orders every month, lessons released.
    for institution_id in payers:
        seed.send(OPEN_ACCOUNT, {"id": institution_id, "at": seed.at(8, 1)})
    orders: list[tuple[int, str]] = []
    for back in range(7, -1, -1):
        for k, institution_id in enumerate(payers):
            start = month_start(seed.now.date(), back)
            order_id = f"recent-order-{back:02d}-{k}"
            seed.send(
                ORDER,
                {
                    "input": {
                        "id": order_id,
                        "institutionId": institution_id,
                        "payerRef": f"payer-{back}-{k}",
                        "lessons": 20 + 10 * k,
                        "pricePerLesson": ["120.00", "95.50", "80.00"][k],
                        "courseStart": start.isoformat(),
                        "courseEnd": (start + timedelta(days=80)).isoformat(),
                        "paidAt": seed.at(back, 0, 9),
                    }
                },
            )
            orders.append((back, order_id))
    for back, order_id in orders:
        if back >= 1:
            seed.send(CONFIRM, {"id": order_id, "lessons": 8, "at": seed.at(back - 1, 2)})
    seed.send(REFUND, {"id": orders[1][1], "at": seed.at(5, 8)})
    return {"institutions": seed.institutions, "red": red}


# --- the browser ---------------------------------------------------------------------------


@dataclass
class Offline:
    """Requests that tried to leave the host (all aborted), and the console's errors."""

    outside: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def route(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOOPBACK:
            route.continue_()
        else:
            self.outside.append(url)
            route.abort("internetdisconnected")

    def watch(self, page: Page) -> Page:
        page.on(
            "console",
            lambda message: (
                self.console_errors.append(message.text) if message.type == "error" else None
            ),
        )
        page.on("pageerror", lambda error: self.console_errors.append(f"page error: {error}"))
        page.set_default_timeout(WAIT_MS)
        return page


def offline_context(
    browser: Any, offline: Offline, width: int = 1600, height: int = 1000
) -> BrowserContext:
    context: BrowserContext = browser.new_context(
        viewport={"width": width, "height": height}, locale="zh-CN", timezone_id="Asia/Shanghai"
    )
    context.route("**/*", offline.route)
    return context


def token_of(suite: Suite) -> str:
    return suite.client.headers["Authorization"].removeprefix("Bearer ")


def wait_for_dashboard(page: Page) -> None:
    """The figures are in and every chart has drawn."""
    page.locator("[data-kpi=active] .num").wait_for()
    page.wait_for_function(
        "() => document.querySelectorAll('.chart canvas').length >= 3"
        " && document.fonts.status === 'loaded'"
        " && !document.querySelector('main[aria-busy]')"
    )


def take(suite: Suite, outdir: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    outdir.mkdir(parents=True, exist_ok=True)
    offline = Offline()
    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            context = offline_context(browser, offline)
            page = offline.watch(context.new_page())
            # A national admin lands on the whole country, then drills down to a city.
            page.goto(f"{suite.base_url}/dashboard#token={token_of(suite)}")
            wait_for_dashboard(page)
            page.screenshot(path=str(outdir / "dashboard.png"), full_page=True)
            written.append(outdir / "dashboard.png")

            page.get_by_role("link", name="宁夏回族自治区", exact=True).click()
            page.locator("#region-title").filter(has_text="宁夏回族自治区").wait_for()
            page.get_by_role("link", name="固原市", exact=True).click()
            page.locator("#region-title").filter(has_text="固原市").wait_for()
            wait_for_dashboard(page)
            page.screenshot(path=str(outdir / "dashboard-city.png"), full_page=True)
            written.append(outdir / "dashboard-city.png")
        finally:
            browser.close()
    if offline.outside or offline.console_errors:
        raise SystemExit(f"offline: {offline.outside}; console: {offline.console_errors}")
    return written


@contextmanager
def running_demo(root: Path) -> Iterator[Suite]:
    suite = Suite(root, root / "data", "--demo")
    suite.start()
    try:
        yield suite
    finally:
        suite.kill()


def main(argv: list[str], out: Callable[[str], None] = print) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m tests.e2e.screenshots OUTDIR")
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("no Chromium on this machine (apt-get install chromium)")
    with (
        tempfile.TemporaryDirectory(prefix="shuangjian-shots-") as tmp,
        running_demo(Path(tmp)) as suite,
    ):
        # What `make run` shows: the demo, whose last twelve months are 固原's work.
        for path in [*take(suite, Path(argv[0]), chromium), *report_pages(suite, Path(argv[0]))]:
            out(str(path))


def report_pages(suite: Suite, outdir: Path) -> list[Path]:
    """The first two pages of 固原's report for last month, as the endpoint serves it."""
    import pypdfium2

    today = datetime.now(SHANGHAI).date()
    month = month_start(today, 1).isoformat()[:7]
    params = {"region": "640400", "month": month, "format": "pdf"}
    response = suite.client.get("/api/reports/monthly", params=params, timeout=60)
    response.raise_for_status()
    document = pypdfium2.PdfDocument(response.content)
    written = []
    for number in (1, 2):
        path = outdir / f"report-page{number}.png"
        document[number - 1].render(scale=1.5).to_pil().save(path)
        written.append(path)
    return written


if __name__ == "__main__":
    main(sys.argv[1:])
