"""A province-size data set, fast and reproducible: ``shuangjian bench-load``.

Everything goes through the services' own command handlers into the event stores, so the
data is ordinary events, decided by the domain rules; only HTTP and the live projections
are left out while it loads. Commands are sent ``CONCURRENCY`` at a time, so the SQLite
stores commit them in groups (one transaction and one fsync per group). The projections
catch up after each phase: the finance service checks institutions against its view of
the register before it takes an account or an order.

Phases, all drawn from one seeded random generator:

1. ``institutions`` registrations over every district of ``province``, back-dated over
   2016-2025 (a third SUBJECT, registered before the policy), four in five approved a
   month after registering.
2. A supervised account (BANK_CUSTODY) at one approved NON_SUBJECT institution in ten.
3. ``orders`` prepaid orders at those institutions, 20 lessons each, paid over the last
   year, with half of their lessons released (一课一销) in two confirmations.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from services.common.application import CommandContext
from services.common.commands import Command
from services.common.errors import BadInput
from services.common.regions import RegionLevel, RegionTree
from services.common.timeutil import SHANGHAI
from services.finance.domain.commands import (
    ConfirmLessons,
    OpenSupervisionAccount,
    RecordPrepaidOrder,
)
from services.registry.domain.commands import ApproveInstitution, RegisterInstitution
from services.registry.domain.rules import credit_code_check_char

CONCURRENCY = 256
ACTOR = "bench-load"
WORDS = ["启明", "博学", "育才", "思源", "明德", "致远", "优学", "新航道", "星火", "青苗"]
TAILS = {
    "SUBJECT": ["学科培训学校", "文化课辅导中心", "教育培训学校"],
    "SPORTS": ["篮球俱乐部", "跆拳道馆", "游泳培训中心"],
    "ARTS": ["美术工作室", "钢琴艺术学校", "舞蹈培训中心"],
    "SCIENCE_TECH": ["编程创客中心", "机器人学校"],
}
KINDS = ["SPORTS", "ARTS", "SCIENCE_TECH"]


@dataclass
class Loaded:
    institutions: int = 0
    accounts: int = 0
    orders: int = 0


Progress = Callable[[str, int, int], None]
"""(phase, done, expected)."""


def credit_code(region: str, n: int) -> str:
    """A code that passes GB 32100, unique per ``n`` (52 = 民办非企业单位)."""
    first17 = f"52{region}MA{n:07d}"
    return first17 + credit_code_check_char(first17)


def districts_of(regions: RegionTree, province: str) -> list[str]:
    code = regions.canonical(province, "province")
    if regions.require(code).level is not RegionLevel.PROVINCE:
        raise BadInput(f"{province} is not a province", field="province")
    prefix = regions.subtree_prefix(code)
    return [r.code for r in regions.by_level(RegionLevel.DISTRICT) if r.code.startswith(prefix)]


async def run_all(
    send: Callable[[Command], Awaitable[object]],
    commands: Iterable[Command],
    phase: str,
    expected: int,
    progress: Progress | None,
) -> int:
    """Send ``commands``, ``CONCURRENCY`` at a time; every one must be accepted."""
    done = 0
    batch: list[Command] = []

    async def flush() -> None:
        nonlocal done
        await asyncio.gather(*(send(cmd) for cmd in batch))
        done += len(batch)
        batch.clear()
        if progress is not None:
            progress(phase, done, expected)

    for cmd in commands:
        batch.append(cmd)
        if len(batch) >= CONCURRENCY:
            await flush()
    if batch:
        await flush()
    return done


async def load(
    send: Callable[[Command], Awaitable[object]],
    settle: Callable[[], Awaitable[None]],
    regions: RegionTree,
    *,
    institutions: int,
    orders: int = 0,
    province: str = "370000",
    seed: int = 2021,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> Loaded:
    """Load the data set through ``send`` (a command router), settling between phases."""
    rng = random.Random(seed)
    today = (now or datetime.now(SHANGHAI)).astimezone(SHANGHAI)
    districts = districts_of(regions, province)
    names = {d: regions.require(d).name for d in districts}
    loaded = Loaded()
    approved: list[int] = []
    supervised: list[str] = []
    plan: list[tuple[int, str, str]] = []  # (n, district, kind)
    for n in range(institutions):
        kind = "SUBJECT" if rng.random() < 1 / 3 else rng.choice(KINDS)
        plan.append((n, rng.choice(districts), kind))

    registered: dict[int, datetime] = {}

    def registrations() -> Iterable[Command]:
        for n, district, kind in plan:
            # No SUBJECT institution is approved after the policy (2021-07-24): those
            # that exist were registered and licensed before it.
            last = date(2021, 6, 1) if kind == "SUBJECT" else date(2025, 6, 30)
            registered[n] = _moment(rng, date(2016, 1, 1), last)
            yield RegisterInstitution(
                id=f"load-{n:07d}",
                name=f"{names[district]}{rng.choice(WORDS)}{rng.choice(TAILS[kind])}{n}",
                credit_code=credit_code(district, n),
                region=district,
                category="SUBJECT" if kind == "SUBJECT" else "NON_SUBJECT",
                non_subject_kind=None if kind == "SUBJECT" else kind,
                mode="OFFLINE" if rng.random() < 0.9 else "ONLINE",
                occurred_at=registered[n],
            )
            if rng.random() < 0.8:
                approved.append(n)

    loaded.institutions = await run_all(
        send, registrations(), "institutions", institutions, progress
    )

    def approvals() -> Iterable[Command]:
        for n in approved:
            yield ApproveInstitution(
                id=f"load-{n:07d}",
                license_no=f"教民{n:07d}号",
                occurred_at=registered[n] + timedelta(days=30),
            )

    await run_all(send, approvals(), "approvals", len(approved), progress)
    await settle()

    for n in approved:
        if plan[n][2] != "SUBJECT" and rng.random() < 0.1:
            supervised.append(f"load-{n:07d}")
    opened = today - timedelta(days=400)

    def accounts() -> Iterable[Command]:
        for k, institution in enumerate(supervised):
            yield OpenSupervisionAccount(
                id=institution,
                mode="BANK_CUSTODY",
                bank="中国工商银行",
                account_no=f"6222{k:011d}",
                occurred_at=opened,
            )

    loaded.accounts = await run_all(send, accounts(), "accounts", len(supervised), progress)
    await settle()
    if orders and not supervised:
        raise BadInput("no institution took an account: load more institutions", field="orders")

    paid_at = [
        today - timedelta(days=rng.randrange(20, 365), hours=rng.randrange(0, 10))
        for _ in range(orders)
    ]

    def prepaid() -> Iterable[Command]:
        for k, paid in enumerate(paid_at):
            yield RecordPrepaidOrder(
                id=f"load-order-{k:08d}",
                institution_id=supervised[k % len(supervised)],
                payer_ref=f"load-payer-{rng.randrange(10**9)}",
                lessons=20,
                price_per_lesson=Decimal(rng.randrange(60, 200)),
                course_start=paid.date(),
                course_end=paid.date() + timedelta(days=80),
                paid_at=paid,
            )

    loaded.orders = await run_all(send, prepaid(), "orders", orders, progress)
    await settle()

    def lessons() -> Iterable[Command]:
        for week in (1, 2):
            for k, paid in enumerate(paid_at):
                given = paid + timedelta(days=7 * week)
                if given < today:
                    yield ConfirmLessons(id=f"load-order-{k:08d}", lessons=5, occurred_at=given)

    await run_all(send, lessons(), "lessons", 2 * orders, progress)
    await settle()
    return loaded


def _moment(rng: random.Random, start: date, end: date) -> datetime:
    day = start + timedelta(days=rng.randrange((end - start).days))
    return datetime(day.year, day.month, day.day, rng.randrange(8, 18), tzinfo=SHANGHAI)


def context() -> CommandContext:
    """The loader acts as the platform itself (it may back-date)."""
    return CommandContext(actor=ACTOR)
