"""Demo data shaped by the figures of the seed articles (shared/domain/RULES.md).

Loaded through the registry's own commands, so it is ordinary events: back-dated
registrations from before the policy (districts importing history) and their approvals.

* 固原 (640400): 206 institutions before the policy, 97 of them SUBJECT.
* 天津 (120000): 141 SUBJECT institutions, with NON_SUBJECT ones beside them.
* 重庆江北 (500105): 63 有证有照 (approved) and institutions still waiting for a licence.
* 合肥庐阳 (340103): a district of a provincial capital with a mixed register.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from services.common.application import CommandContext
from services.common.regions import RegionTree
from services.common.timeutil import SHANGHAI
from services.registry.domain.commands import ApproveInstitution, RegisterInstitution
from services.registry.domain.rules import CREDIT_CODE_CHARS, credit_code_check_char
from services.registry.handlers import Registry

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
    approved_share: float = 1.0
    online_share: float = 0.05


PLANS: list[DistrictPlan] = [
    # 固原: 206 institutions, 97 SUBJECT, spread over its five county-level units.
    DistrictPlan("640402", 41, 38),
    DistrictPlan("640422", 20, 21),
    DistrictPlan("640423", 12, 15),
    DistrictPlan("640424", 9, 10),
    DistrictPlan("640425", 15, 25),
    # 天津: 141 SUBJECT institutions over four central districts.
    DistrictPlan("120101", 38, 20, online_share=0.1),
    DistrictPlan("120103", 41, 22, online_share=0.1),
    DistrictPlan("120104", 35, 18, online_share=0.1),
    DistrictPlan("120116", 27, 30, online_share=0.1),
    # 重庆江北: 63 licensed, 20 still without a licence (有照无证).
    DistrictPlan("500105", 30, 53, approved_share=63 / 83),
    # 合肥庐阳.
    DistrictPlan("340103", 45, 75, approved_share=0.9),
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


async def load_demo(registry: Registry, regions: RegionTree, seed: int = 2021) -> int:
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
            await registry.handle(
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
            if rng.random() < plan.approved_share:
                approved = registered + timedelta(days=rng.randrange(20, 60))
                await registry.handle(
                    ApproveInstitution(
                        id=institution_id,
                        license_no=f"教民{plan.region}{registered.year}{n:04d}号",
                        occurred_at=min(approved, datetime(2021, 7, 1, tzinfo=SHANGHAI)),
                    ),
                    ctx,
                )
            count += 1
    return count
