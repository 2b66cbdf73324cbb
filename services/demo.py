"""Demo data shaped by the figures of the seed articles (shared/domain/RULES.md).

Loaded through the registry's own commands, so it is ordinary events: back-dated
registrations from before the policy (districts importing history), their approvals,
and what happened after the policy came in.

* 固原 (640400): 206 institutions before the policy, 97 of them SUBJECT; afterwards 167
  active of which 6 SUBJECT (压减率 93.8%).
* 天津 (120000): 141 SUBJECT institutions, all converted to non-profit (营转非).
* 重庆江北 (500105): 63 有证有照 (approved), 20 still waiting for a licence, 4 of them
  revoked and on the public blacklist.
* 合肥庐阳 (340103): a mixed register with warning cards and one suspension.

Inspection work, through the inspections service's commands:

* 重庆江北 (500105): 43 institutions inspected, 34 of them with problems, 31 finished
  rectification (整改率 31/34); of the other three orders, one failed its verification
  and two were never finished: all three are overdue now.
* 合肥庐阳 (340103): the fire-safety campaign scaled down to a tenth (13 batches, 198
  personnel, 85 distinct places of which 15 unregistered venues), 8 joint enforcement
  rounds, law talks with 42 people, 4 institutions' prepaid-money (FEES) problems
  rectified, and two penalties under 教育部令第53号.
* Complaints in both districts through every channel, most of them resolved.
* 固原 (640400) over the last twelve months up to today, so the dashboard and the monthly
  report have a year to show: every county-level unit inspected each month (some batches
  at night, some joint), findings rectified mostly on time, a few late or still overdue,
  complaints and law talks, a warning now and then, and prepaid orders at sixteen
  supervised non-subject institutions with their lessons released week by week.

Prepaid money, through the finance service's commands, 天津 scaled down a hundredfold
(H1 2023: 66,000 orders, 142 million yuan): 120 supervised accounts in four districts,
660 orders totalling exactly 1,420,000.00 yuan paid January to June 2023, lessons
released one by one (一课一销), refunds, and a few risky institutions as of today: one
suspended with money still held, one on a thin risk deposit, one with complaints and
refund requests piling up.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from services.common.application import CommandContext
from services.common.module import CommandService
from services.common.regions import RegionTree
from services.common.timeutil import SHANGHAI, utc_now
from services.finance.domain.commands import (
    ConfirmLessons,
    OpenSupervisionAccount,
    RecordPrepaidOrder,
    RefundOrder,
    RequestRefund,
)
from services.inspections.domain.commands import (
    FileComplaint,
    FindingInput,
    RecordInspection,
    RecordLawTalk,
    RecordPenalty,
    ResolveComplaint,
    SubmitRectification,
    VerifyRectification,
    VisitInput,
)
from services.registry.domain.commands import (
    ApproveInstitution,
    ConvertToNonProfit,
    ExitInstitution,
    IssueWarningCard,
    ReclassifyInstitution,
    RegisterInstitution,
    RevokeInstitution,
    SetListMark,
    SuspendInstitution,
)
from services.registry.domain.rules import CREDIT_CODE_CHARS, credit_code_check_char

KINDS = ["SPORTS", "ARTS", "SCIENCE_TECH", "COMPREHENSIVE_PRACTICE"]
SUBJECT_WORDS = ["启明", "博学", "育才", "思源", "明德", "致远", "优学", "新航道", "状元", "学而思"]
SUBJECT_TAILS = ["学科培训学校", "文化课辅导中心", "教育培训学校", "补习学校"]
KIND_TAILS = {
    "SPORTS": ["篮球俱乐部", "跆拳道馆", "游泳培训中心", "足球训练营"],
    "ARTS": ["美术工作室", "钢琴艺术学校", "舞蹈培训中心", "书法院"],
    "SCIENCE_TECH": ["编程创客中心", "机器人学校", "科技探索营"],
    "COMPREHENSIVE_PRACTICE": ["劳动实践基地", "研学实践中心", "信息技术学校"],
}


@dataclass(frozen=True)
class DistrictPlan:
    region: str
    subject: int
    non_subject: int
    approved: int | None = None  # how many got a licence (the first ones); None = all
    online_share: float = 0.05
    # After the policy: SUBJECT institutions that closed (exit / revoke alternately) ...
    closed_subject: int = 0
    # ... that turned into non-subject ones (转型) ...
    reclassified_subject: int = 0
    # ... and whether the rest became non-profit (营转非).
    converted: bool = False
    blacklisted: int = 0


PLANS: list[DistrictPlan] = [
    # 固原: 206 institutions, 97 SUBJECT, over its five county-level units; afterwards
    # 167 active, 6 SUBJECT (39 closed, 52 turned non-subject): 压减率 93.8%.
    DistrictPlan("640402", 41, 38, closed_subject=15, reclassified_subject=24),
    DistrictPlan("640422", 20, 21, closed_subject=8, reclassified_subject=11),
    DistrictPlan("640423", 12, 15, closed_subject=5, reclassified_subject=6),
    DistrictPlan("640424", 9, 10, closed_subject=4, reclassified_subject=4),
    DistrictPlan("640425", 15, 25, closed_subject=7, reclassified_subject=7),
    # 天津: 141 SUBJECT institutions over four central districts, all 营转非.
    DistrictPlan("120101", 38, 20, online_share=0.1, converted=True),
    DistrictPlan("120103", 41, 22, online_share=0.1, converted=True),
    DistrictPlan("120104", 35, 18, online_share=0.1, converted=True),
    DistrictPlan("120116", 27, 30, online_share=0.1, converted=True),
    # 重庆江北: 63 licensed, 20 still without a licence (有照无证), 4 on the public blacklist.
    DistrictPlan("500105", 30, 53, approved=63, blacklisted=4),
    # 合肥庐阳.
    DistrictPlan("340103", 45, 75, approved=108),
]


def credit_code(rng: random.Random, region: str) -> str:
    """A code that passes GB 32100: 52 (民办非企业单位) + region + organisation code + check."""
    org = "".join(rng.choice(CREDIT_CODE_CHARS[:10]) for _ in range(8)) + rng.choice("0123456789X")
    org = org.replace("X", "0")
    first17 = "52" + region + org
    return first17 + credit_code_check_char(first17)


def _moment(rng: random.Random, start: date, end: date) -> datetime:
    day = start + timedelta(days=rng.randrange((end - start).days))
    return datetime(day.year, day.month, day.day, rng.randrange(8, 18), tzinfo=SHANGHAI)


async def load_demo(
    commands: CommandService,
    regions: RegionTree,
    seed: int = 2021,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Register (and mostly approve) the demo institutions; returns how many.

    ``settle`` waits until every read model (and process manager) has caught up: the
    inspections and finance services check institutions against their views of the
    register, so each phase waits for the one before, as a district would.
    """

    async def settled() -> None:
        if settle is not None:
            await settle()

    rng = random.Random(seed)
    ctx = CommandContext(actor="demo-loader")
    count = 0
    for plan in PLANS:
        district = regions.require_district(plan.region)
        categories = ["SUBJECT"] * plan.subject + ["NON_SUBJECT"] * plan.non_subject
        for n, category in enumerate(categories, start=1):
            kind = None if category == "SUBJECT" else rng.choice(KINDS)
            tail = rng.choice(SUBJECT_TAILS if kind is None else KIND_TAILS[kind])
            name = f"{district.name}{rng.choice(SUBJECT_WORDS)}{tail}"
            institution_id = f"demo-{plan.region}-{n:03d}"
            registered = _moment(rng, date(2016, 1, 1), date(2021, 5, 1))
            await commands.handle(
                RegisterInstitution(
                    id=institution_id,
                    name=name,
                    credit_code=credit_code(rng, plan.region),
                    region=plan.region,
                    address=f"{district.full_name}{rng.randrange(1, 300)}号",
                    category=category,
                    non_subject_kind=kind,
                    mode="ONLINE" if rng.random() < plan.online_share else "OFFLINE",
                    occurred_at=registered,
                ),
                ctx,
            )
            if plan.approved is None or n <= plan.approved:
                approved = registered + timedelta(days=rng.randrange(20, 60))
                await commands.handle(
                    ApproveInstitution(
                        id=institution_id,
                        license_no=f"教民{plan.region}{registered.year}{n:04d}号",
                        occurred_at=min(approved, datetime(2021, 7, 1, tzinfo=SHANGHAI)),
                    ),
                    ctx,
                )
            count += 1
        await _after_the_policy(commands, plan, rng, ctx)
    await _warnings(commands, ctx)
    await settled()
    await _jiangbei_inspections(commands, rng, ctx)
    await _luyang_campaign(commands, rng, ctx)
    await _complaints(commands, rng, ctx)
    await _tianjin_money(commands, rng, ctx, settled)
    # Its own random stream, so the phases above stay as they were.
    await _guyuan_last_year(commands, random.Random(seed + 1), ctx, settled, utc_now())
    return count


async def _after_the_policy(
    commands: CommandService, plan: DistrictPlan, rng: random.Random, ctx: CommandContext
) -> None:
    """What the district did with its SUBJECT institutions once the policy came in."""
    ids = [f"demo-{plan.region}-{n:03d}" for n in range(1, plan.subject + 1)]
    closing = ids[: plan.closed_subject]
    turning = ids[plan.closed_subject : plan.closed_subject + plan.reclassified_subject]
    staying = ids[plan.closed_subject + plan.reclassified_subject :]
    for n, institution_id in enumerate(closing):
        at = _moment(rng, date(2021, 8, 1), date(2022, 6, 30))
        if n % 2:
            await commands.handle(
                RevokeInstitution(
                    id=institution_id, reason="取缔：违规开展学科类培训", occurred_at=at
                ),
                ctx,
            )
        else:
            await commands.handle(
                ExitInstitution(id=institution_id, reason="有序退出，已完成退费", occurred_at=at),
                ctx,
            )
    for institution_id in turning:
        at = _moment(rng, date(2021, 9, 1), date(2022, 12, 31))
        kind = rng.choice(KINDS)
        await commands.handle(
            ReclassifyInstitution(
                id=institution_id, category="NON_SUBJECT", non_subject_kind=kind, occurred_at=at
            ),
            ctx,
        )
    if plan.converted:
        for institution_id in staying:
            at = _moment(rng, date(2021, 9, 1), date(2021, 12, 31))
            await commands.handle(ConvertToNonProfit(id=institution_id, occurred_at=at), ctx)
    unlicensed = [
        f"demo-{plan.region}-{n:03d}" for n in range(plan.subject + plan.non_subject, 0, -1)
    ]
    for institution_id in unlicensed[: plan.blacklisted]:
        at = datetime(2022, 3, 15, 10, tzinfo=SHANGHAI)
        await commands.handle(
            RevokeInstitution(id=institution_id, reason="无证办学，予以取缔", occurred_at=at), ctx
        )
        await commands.handle(
            SetListMark(
                id=institution_id, mark="BLACKLIST", reason="取缔后向社会公示", occurred_at=at
            ),
            ctx,
        )


async def _warnings(commands: CommandService, ctx: CommandContext) -> None:
    """合肥庐阳: warning cards, one institution twice RED (a suspension is recommended)."""
    at = datetime(2023, 11, 6, 10, tzinfo=SHANGHAI)
    for n, color in ((50, "YELLOW"), (51, "YELLOW"), (52, "RED"), (52, "RED")):
        await commands.handle(
            IssueWarningCard(
                id=f"demo-340103-{n:03d}", color=color, reason="消防安全检查不合格", occurred_at=at
            ),
            ctx,
        )
    await commands.handle(
        SuspendInstitution(id="demo-340103-053", reason="停业整顿：消防通道堵塞", occurred_at=at),
        ctx,
    )


JIANGBEI_PROBLEMS = [
    ("FIRE_SAFETY", "灭火器过期，疏散通道堆放杂物"),
    ("STAFF_QUALIFICATION", "两名授课教师未取得相应资格证书"),
    ("TRAINING_MATERIAL", "培训材料未按规定备案"),
    ("FEES", "收费项目未公示，预收费超过三个月"),
    ("FALSE_ADVERTISING", "宣传中使用“提分保障”等误导性用语"),
]


async def _jiangbei_inspections(
    commands: CommandService, rng: random.Random, ctx: CommandContext
) -> None:
    """重庆江北: 43 institutions inspected in 2023, 34 with problems, 31 rectified."""
    inspected = [f"demo-500105-{n:03d}" for n in range(1, 44)]  # all licensed, none revoked
    with_problems = set(rng.sample(inspected, 34))
    orders: list[str] = []
    for batch, first in enumerate(range(0, 43, 4), start=1):  # 11 batches of up to 4 visits
        started = datetime(2023, 3, 6, 9, tzinfo=SHANGHAI) + timedelta(days=9 * batch)
        visits = []
        for institution_id in inspected[first : first + 4]:
            findings = []
            if institution_id in with_problems:
                kind, text = rng.choice(JIANGBEI_PROBLEMS)
                findings.append(FindingInput(type=kind, description=text))
            visits.append(VisitInput(institution_id=institution_id, findings=findings))
        inspection_id = f"demo-jb-{batch:02d}"
        await commands.handle(
            RecordInspection(
                id=inspection_id,
                region="500105",
                kind="JOINT" if batch % 4 == 0 else rng.choice(["DAILY", "RANDOM", "NIGHT"]),
                started_at=started,
                personnel=rng.randrange(4, 9),
                departments=["区教委", "区市场监管局"] if batch % 4 == 0 else ["区教委"],
                visits=visits,
                rectify_within_days=30,
            ),
            ctx,
        )
        opened = sum(1 for v in visits if v.findings)
        orders += [f"{inspection_id}~{n}" for n in range(1, opened + 1)]
    # 31 finish; one fails its verification; two are never finished (overdue now).
    for n, order in enumerate(orders):
        done = datetime(2023, 3, 6, 9, tzinfo=SHANGHAI) + timedelta(days=120 + n)
        if n == 32:
            continue
        await commands.handle(
            SubmitRectification(id=order, note="已按要求完成整改，附照片", occurred_at=done), ctx
        )
        if n == 33:
            continue
        passed = n != 31
        await commands.handle(
            VerifyRectification(
                id=order,
                passed=passed,
                note="复查合格" if passed else "复查不合格：消防通道仍被占用",
                occurred_at=done + timedelta(days=3),
            ),
            ctx,
        )


LUYANG_VENUES = [
    f"庐阳区{street}小区{n}栋" for street in ("杏花", "亳州路", "双岗") for n in (3, 7, 12, 15, 21)
]


async def _luyang_campaign(
    commands: CommandService, rng: random.Random, ctx: CommandContext
) -> None:
    """合肥庐阳's fire-safety campaign at a tenth of its size, with the district's joint
    enforcement rounds, law talks and penalties."""
    active = [
        f"demo-340103-{n:03d}" for n in range(1, 121) if n not in (52, 53)
    ]  # 52 holds two RED cards, 53 is suspended
    places: list[tuple[str | None, str | None]] = [(i, None) for i in active[:70]]
    places += [(None, venue) for venue in LUYANG_VENUES]  # 15 unregistered venues
    rng.shuffle(places)
    personnel = [15] * 12 + [18]  # 198 in all
    revisits = places[:10]  # ten places are visited twice: still 85 distinct
    rounds = [places[n::13] for n in range(13)]
    for n, extra in enumerate(revisits):
        rounds[(n + 5) % 13].append(extra)
    fire_orders: list[str] = []
    for batch, visited in enumerate(rounds, start=1):
        started = datetime(2023, 11, 1, 19, tzinfo=SHANGHAI) + timedelta(days=2 * batch)
        visits = []
        for institution_id, venue in visited:
            findings = []
            if venue is not None and rng.random() < 0.4:
                findings.append(
                    FindingInput(type="HIDDEN_TRAINING", description="居民楼内隐形变异培训")
                )
            elif institution_id is not None and rng.random() < 0.25:
                findings.append(FindingInput(type="FIRE_SAFETY", description="消防设施不合格"))
            visits.append(VisitInput(institution_id=institution_id, venue=venue, findings=findings))
        opened = sum(1 for v in visits if v.findings)
        fire_orders += [f"demo-ly-fire-{batch:03d}~{n}" for n in range(1, opened + 1)]
        await commands.handle(
            RecordInspection(
                id=f"demo-ly-fire-{batch:03d}",
                region="340103",
                kind="SPECIAL",
                started_at=started,
                personnel=personnel[batch - 1],
                departments=["区教体局", "区消防救援大队"],
                visits=visits,
                rectify_within_days=15,
            ),
            ctx,
        )
    # All but the last three orders of the campaign were rectified within weeks.
    for n, order in enumerate(fire_orders[:-3]):
        done = datetime(2023, 11, 20, 10, tzinfo=SHANGHAI) + timedelta(days=n % 10)
        await commands.handle(
            SubmitRectification(id=order, note="已整改：更换灭火器，清理通道", occurred_at=done),
            ctx,
        )
        await commands.handle(
            VerifyRectification(id=order, passed=True, note="复查合格", occurred_at=done), ctx
        )
    # 8 joint enforcement rounds, 4 of them finding prepaid-money problems (FEES).
    fees_orders: list[str] = []
    for batch in range(1, 9):
        institution_id = active[70 + batch]
        findings = (
            [FindingInput(type="FEES", description="预收费未进入监管账户")] if batch <= 4 else []
        )
        inspection_id = f"demo-ly-joint-{batch}"
        await commands.handle(
            RecordInspection(
                id=inspection_id,
                region="340103",
                kind="JOINT",
                started_at=datetime(2023, 12, 4, 9, tzinfo=SHANGHAI) + timedelta(days=7 * batch),
                personnel=6,
                departments=["区教体局", "区市场监管局", "区公安分局"],
                visits=[VisitInput(institution_id=institution_id, findings=findings)],
            ),
            ctx,
        )
        if findings:
            fees_orders.append(f"{inspection_id}~1")
    for n, order in enumerate(fees_orders):
        done = datetime(2024, 1, 20, 10, tzinfo=SHANGHAI) + timedelta(days=n)
        await commands.handle(
            SubmitRectification(id=order, note="预收费已全部转入监管账户", occurred_at=done), ctx
        )
        await commands.handle(
            VerifyRectification(id=order, passed=True, note="核查合格", occurred_at=done), ctx
        )
    for n, persons in enumerate((8, 7, 9, 6, 5, 7)):  # law talks with 42 people
        await commands.handle(
            RecordLawTalk(
                id=f"demo-ly-talk-{n + 1}",
                region="340103",
                institution_id=active[80 + n],
                persons=persons,
                occurred_at=datetime(2023, 12, 20, 14, tzinfo=SHANGHAI) + timedelta(days=n),
            ),
            ctx,
        )
    await commands.handle(
        RecordPenalty(
            id="demo-ly-penalty-1",
            region="340103",
            venue=LUYANG_VENUES[0],
            article="ARTICLE_17",
            kind="FINE",
            fine=Decimal("16000"),
            illegal_gains=Decimal("8000"),
            reason="未经审批在居民楼内组织学科类培训，没收违法所得并处违法所得二倍罚款",
            occurred_at=datetime(2023, 12, 28, 10, tzinfo=SHANGHAI),
        ),
        ctx,
    )
    await commands.handle(
        RecordPenalty(
            id="demo-ly-penalty-2",
            region="340103",
            venue=LUYANG_VENUES[4],
            article="ARTICLE_18",
            kind="FINE",
            circumstance="SERIOUS",
            fine=Decimal("30000"),
            reason="以“家政服务”名义变相开展学科类培训，情节严重",
            occurred_at=datetime(2024, 1, 8, 10, tzinfo=SHANGHAI),
        ),
        ctx,
    )


COMPLAINTS = [
    ("HOTLINE_12345", "周末仍在开设数学培训班"),
    ("PLATFORM", "退费申请超过一个月未处理"),
    ("PETITION", "培训机构一次性收取一年学费"),
    ("ONLINE", "线上课程晚上十点后仍在上课"),
    ("HOTLINE_12345", "机构消防通道被堵塞"),
    ("OTHER", "家长群内招揽寒假学科培训"),
]


async def _complaints(commands: CommandService, rng: random.Random, ctx: CommandContext) -> None:
    """举报 through every channel in both districts; two of three resolved."""
    for region in ("500105", "340103"):
        for n, (channel, text) in enumerate(COMPLAINTS * 2, start=1):
            complaint_id = f"demo-complaint-{region}-{n:02d}"
            about = f"demo-{region}-{rng.randrange(1, 44):03d}" if n % 3 else None
            received = datetime(2024, 2, 1, 10, tzinfo=SHANGHAI) + timedelta(days=11 * n)
            await commands.handle(
                FileComplaint(
                    id=complaint_id,
                    region=region,
                    channel=channel,
                    institution_id=about,
                    text=text,
                    occurred_at=received,
                ),
                ctx,
            )
            if n % 3 != 2:
                await commands.handle(
                    ResolveComplaint(
                        id=complaint_id,
                        substantiated=n % 2 == 0,
                        note="已核查处理并回复举报人",
                        occurred_at=received + timedelta(days=5),
                    ),
                    ctx,
                )


TIANJIN = ("120101", "120103", "120104", "120116")
TIANJIN_ORDERS = 660
TIANJIN_TOTAL = Decimal("1420000.00")
BANKS = ["中国工商银行天津分行", "中国建设银行天津分行", "天津银行", "渤海银行"]


async def _tianjin_money(
    commands: CommandService,
    rng: random.Random,
    ctx: CommandContext,
    settled: Callable[[], Awaitable[None]],
) -> None:
    """天津 at a hundredth: 120 accounts, 660 orders worth exactly 1,420,000.00 yuan."""
    holders = [f"demo-{d}-{n:03d}" for d in TIANJIN for n in range(1, 31)]
    deposit = {holders[7]: Decimal("300")}  # a thin risk deposit
    for n, holder in enumerate(holders):
        await commands.handle(
            OpenSupervisionAccount(
                id=holder,
                mode="RISK_DEPOSIT" if holder in deposit else "BANK_CUSTODY",
                bank=BANKS[n % len(BANKS)],
                account_no=f"6222{rng.randrange(10**11, 10**12)}",
                deposit=deposit.get(holder),
                occurred_at=datetime(2022, 12, 1, 9, tzinfo=SHANGHAI),
            ),
            ctx,
        )
    await settled()  # orders check the accounts' institutions through finance's view
    # Prices in pairs around 107.50 yuan a lesson (20 lessons: 2,150.00 an order), twenty
    # of them 2.50 dearer: 660 × 2,150.00 + 20 × 50.00 = 1,420,000.00 exactly.
    prices: list[Decimal] = []
    for _ in range(TIANJIN_ORDERS // 2):
        spread = Decimal(rng.randrange(0, 4000, 50)) / 100
        prices += [Decimal("107.50") + spread, Decimal("107.50") - spread]
    prices = [p + (Decimal("2.50") if n % 33 == 0 else 0) for n, p in enumerate(prices)]
    assert sum(p * 20 for p in prices) == TIANJIN_TOTAL
    for n, price in enumerate(prices):
        holder = holders[n % len(holders)]
        paid = _moment(rng, date(2023, 1, 3), date(2023, 6, 28))
        order_id = f"demo-order-{n + 1:04d}"
        await commands.handle(
            RecordPrepaidOrder(
                id=order_id,
                institution_id=holder,
                payer_ref=f"demo-payer-{rng.randrange(10**8)}",
                lessons=20,
                price_per_lesson=price,
                course_start=paid.date(),
                course_end=paid.date() + timedelta(days=80),
                paid_at=paid,
            ),
            ctx,
        )
        if n % 10 < 6:  # lessons given and confirmed one week at a time
            for week in range(1, rng.randrange(2, 6)):
                await commands.handle(
                    ConfirmLessons(
                        id=order_id, lessons=2, occurred_at=paid + timedelta(days=7 * week)
                    ),
                    ctx,
                )
        elif n % 25 == 7:
            await commands.handle(
                RefundOrder(
                    id=order_id, reason="家长申请退费", occurred_at=paid + timedelta(days=10)
                ),
                ctx,
            )
    now = utc_now()
    suspended = holders[3]  # money still held when it was ordered to stop
    await commands.handle(
        SuspendInstitution(id=suspended, reason="停业整顿：未按规定退费", occurred_at=now), ctx
    )
    piling = holders[45]
    for n in range(6):
        await commands.handle(
            RequestRefund(
                id=f"demo-order-{46 + n * len(holders):04d}",
                reason="机构经营异常，申请退费",
                occurred_at=now - timedelta(days=2),
            ),
            ctx,
        )
    for n in range(3):
        await commands.handle(
            FileComplaint(
                id=f"demo-complaint-tj-{n + 1}",
                region=piling.split("-")[1],
                channel=["HOTLINE_12345", "PLATFORM", "ONLINE"][n],
                institution_id=piling,
                text="培训机构疑似跑路，课程无法正常上课",
                occurred_at=now - timedelta(days=1),
            ),
            ctx,
        )


GUYUAN = ("640402", "640422", "640423", "640424", "640425")
GUYUAN_PLANS = {plan.region: plan for plan in PLANS if plan.region in GUYUAN}
GUYUAN_FINDINGS = [
    ("FIRE_SAFETY", "灭火器过期，疏散通道堆放杂物"),
    ("STAFF_QUALIFICATION", "部分从业人员无相应资质"),
    ("TRAINING_MATERIAL", "培训材料未备案"),
    ("FEES", "一次性收取超过3个月费用"),
    ("FALSE_ADVERTISING", "宣传中含有提分承诺"),
]
GUYUAN_BANKS = ["中国工商银行固原分行", "宁夏银行固原分行", "黄河农村商业银行"]


def _month_starts(now: datetime, count: int) -> list[datetime]:
    """The first moments of the last ``count`` months, the current one last (China time)."""
    local = now.astimezone(SHANGHAI)
    index = local.year * 12 + local.month - 1
    return [
        datetime((index - k) // 12, (index - k) % 12 + 1, 1, tzinfo=SHANGHAI)
        for k in range(count - 1, -1, -1)
    ]


async def _guyuan_last_year(
    commands: CommandService,
    rng: random.Random,
    ctx: CommandContext,
    settled: Callable[[], Awaitable[None]],
    now: datetime,
) -> None:
    """固原's last twelve months of work, up to ``now`` (see the module docstring)."""
    cutoff = now - timedelta(hours=1)  # nothing in the future, whatever the clock does
    months = _month_starts(now, 13)
    # Sixteen supervised non-subject institutions (the first ones after the SUBJECT ones).
    holders = [
        f"demo-{region}-{GUYUAN_PLANS[region].subject + n:03d}"
        for region in ("640402", "640422")
        for n in range(1, 9)
    ]
    for n, holder in enumerate(holders):
        await commands.handle(
            OpenSupervisionAccount(
                id=holder,
                mode="BANK_CUSTODY",
                bank=GUYUAN_BANKS[n % len(GUYUAN_BANKS)],
                account_no=f"6222{rng.randrange(10**11, 10**12)}",
                occurred_at=months[0] - timedelta(days=20),
            ),
            ctx,
        )
    await settled()
    orders = 0
    for number, start in enumerate(months):
        days = ((start + timedelta(days=32)).replace(day=1) - start).days
        for region in GUYUAN:
            plan = GUYUAN_PLANS[region]
            places = [
                f"demo-{region}-{plan.subject + n:03d}" for n in range(1, plan.non_subject + 1)
            ]
            for batch in range(rng.randrange(1, 4) + (region == "640402")):
                started = start + timedelta(days=rng.randrange(days), hours=rng.randrange(9, 17))
                kind = rng.choices(["DAILY", "NIGHT", "JOINT", "RANDOM"], [5, 2, 2, 2])[0]
                if kind == "NIGHT":
                    started = started.replace(hour=19)
                if started > cutoff:
                    continue
                visits = [
                    VisitInput(institution_id=place, findings=_found(rng))
                    for place in rng.sample(places, rng.randrange(2, 6))
                ]
                if rng.random() < 0.15:
                    flat = f"{rng.choice(['新区', '西城', '东关'])}小区{rng.randrange(1, 30)}栋"
                    visits.append(
                        VisitInput(
                            venue=flat,
                            findings=[
                                FindingInput(
                                    type="HIDDEN_TRAINING", description="居民楼内隐形变异学科培训"
                                )
                            ],
                        )
                    )
                inspection_id = f"demo-gy-{number:02d}-{region}-{batch}"
                within = rng.choice([15, 30])
                await commands.handle(
                    RecordInspection(
                        id=inspection_id,
                        region=region,
                        kind=kind,
                        started_at=started,
                        personnel=rng.randrange(2, 9),
                        departments=["县教体局", "县市场监管局"]
                        if kind == "JOINT"
                        else ["县教体局"],
                        visits=visits,
                        rectify_within_days=within,
                    ),
                    ctx,
                )
                found = sum(1 for visit in visits if visit.findings)
                for k in range(1, found + 1):
                    await _rectify(
                        commands, rng, ctx, f"{inspection_id}~{k}", started, within, cutoff
                    )
            for n in range(rng.randrange(0, 3)):
                received = start + timedelta(days=rng.randrange(days), hours=10)
                if received > cutoff:
                    continue
                complaint_id = f"demo-gy-c-{number:02d}-{region}-{n}"
                await commands.handle(
                    FileComplaint(
                        id=complaint_id,
                        region=region,
                        channel=rng.choices(
                            ["HOTLINE_12345", "PLATFORM", "ONLINE", "PETITION"], [4, 3, 2, 1]
                        )[0],
                        institution_id=rng.choice(places),
                        text=rng.choice(["周末仍在上学科类课程", "退费困难", "收费超过三个月"]),
                        occurred_at=received,
                    ),
                    ctx,
                )
                if rng.random() < 0.85 and received + timedelta(days=7) < cutoff:
                    await commands.handle(
                        ResolveComplaint(
                            id=complaint_id,
                            substantiated=rng.random() < 0.4,
                            note="已核查处理并答复",
                            occurred_at=received + timedelta(days=rng.randrange(2, 8)),
                        ),
                        ctx,
                    )
            if rng.random() < 0.5:
                talked = start + timedelta(days=rng.randrange(days), hours=15)
                if talked < cutoff:
                    await commands.handle(
                        RecordLawTalk(
                            region=region,
                            institution_id=rng.choice(places),
                            persons=rng.randrange(1, 6),
                            occurred_at=talked,
                        ),
                        ctx,
                    )
        for holder in holders:
            for _ in range(rng.randrange(0, 3)):
                paid = start + timedelta(days=rng.randrange(days), hours=rng.randrange(9, 19))
                if paid > cutoff:
                    continue
                orders += 1
                order_id = f"demo-gy-order-{orders:04d}"
                await commands.handle(
                    RecordPrepaidOrder(
                        id=order_id,
                        institution_id=holder,
                        payer_ref=f"demo-payer-{rng.randrange(10**8)}",
                        lessons=20,
                        price_per_lesson=Decimal(rng.randrange(60, 160)),
                        course_start=paid.date(),
                        course_end=paid.date() + timedelta(days=80),
                        paid_at=paid,
                    ),
                    ctx,
                )
                if rng.random() < 0.06 and paid + timedelta(days=10) < cutoff:
                    await commands.handle(
                        RefundOrder(
                            id=order_id,
                            reason="家长申请退费",
                            occurred_at=paid + timedelta(days=10),
                        ),
                        ctx,
                    )
                    continue
                for week in range(1, 11):  # two lessons a week while the course runs
                    given = paid + timedelta(days=7 * week)
                    if given > cutoff:
                        break
                    await commands.handle(
                        ConfirmLessons(id=order_id, lessons=2, occurred_at=given), ctx
                    )
    await settled()


def _found(rng: random.Random) -> list[FindingInput]:
    """A quarter of the visits find something."""
    if rng.random() >= 0.25:
        return []
    kind, text = rng.choice(GUYUAN_FINDINGS)
    return [FindingInput(type=kind, description=text)]


async def _rectify(
    commands: CommandService,
    rng: random.Random,
    ctx: CommandContext,
    order: str,
    opened: datetime,
    within: int,
    cutoff: datetime,
) -> None:
    """Most orders are rectified in time; some late; a few never (overdue once due)."""
    fate = rng.random()
    if fate < 0.08:
        return
    late = fate < 0.2
    done = opened + timedelta(
        days=within + rng.randrange(3, 20) if late else rng.randrange(3, within)
    )
    if done + timedelta(days=2) > cutoff:
        return
    await commands.handle(
        SubmitRectification(id=order, note="已完成整改，附照片", occurred_at=done), ctx
    )
    await commands.handle(
        VerifyRectification(
            id=order, passed=True, note="复查合格", occurred_at=done + timedelta(days=2)
        ),
        ctx,
    )
