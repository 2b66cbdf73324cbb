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
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from services.common.application import CommandContext
from services.common.module import CommandService
from services.common.regions import RegionTree
from services.common.timeutil import SHANGHAI
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


async def load_demo(commands: CommandService, regions: RegionTree, seed: int = 2021) -> int:
    """Register (and mostly approve) the demo institutions; returns how many."""
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
