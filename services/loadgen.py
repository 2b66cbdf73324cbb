"""A province-size data set, fast and reproducible: ``shuangjian bench-load``.

The data set is written as events, straight into the services' event stores: the
services' own event classes in the one envelope, versions counted per stream, bodies as
``SQLiteEventStore.append`` stores them, many thousands of commits per transaction
(``SQLiteEventStore.append_batch``). The read models are then brought up to date by the
projections' own streaming catch-up, so ``shuangjian up`` serves the data at once.

Nothing is held for the whole data set: every institution's facts are a function of the
seed and its number (``Plan.institution``), so each service's events are generated one
entity at a time, and a million institutions cost no more memory than a thousand. The same
seed and sizes give the same events, ids included.

What the data obeys (the rules the command handlers would have applied):

* Registrations back-dated over 2016–2025, every credit code valid (GB 32100) and unique;
  SUBJECT institutions registered and licensed before the 2021 policy; three in four
  approved, each after its registration; warning cards, list marks, suspensions and
  closures after approval, never after ``AS_OF``.
* Inspection batches visit institutions of their own district registered before the visit;
  complaints, law talks and penalties name registered institutions of their district.
* Finance only for approved NON_SUBJECT institutions (a supervised account each), orders
  with two deliveries confirmed in time and a few refunds answered in time.
* Risk levels as the risk watch and the daily finance clock decide them (they are not run
  over the loaded history: their positions are set to its end). The data is shaped so
  the only rule that fires is COMPLAINTS: a RISK_DEPOSIT covers every order of its
  account, no account sees five refund requests, no institution with money is closed, no
  FEES rectification goes past its deadline, and inspections carry no finding that the
  warning-card process would card. One approved institution in a hundred draws three
  complaints within ten days: YELLOW at the third, GREEN again when the first leaves the
  30-day window (the clock's daily judgement), or still YELLOW at ``AS_OF``.

Positions follow entities (an institution's events, then the next one's), not business
time; every stream's versions follow its business time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING
from uuid import UUID

from services.common.aggregate import DomainEvent
from services.common.envelope import Envelope
from services.common.errors import BadInput, Conflict
from services.common.ports import Batch
from services.common.projection import ProjectionRunner, replaying, stamp_versions
from services.common.regions import Region, RegionLevel, RegionTree
from services.common.sqlite import SQLiteEventStore
from services.common.timeutil import SHANGHAI
from services.finance.domain.events import (
    LessonsConfirmed,
    LessonsDelivered,
    LessonsRefunded,
    PrepaidOrderRecorded,
    RefundRequestAnswered,
    RefundRequested,
    RiskLevelChanged,
    SupervisionAccountOpened,
    account_stream,
    risk_stream,
)
from services.finance.domain.rules import RiskLevel, RiskPolicy, SupervisionMode
from services.inspections.domain.events import (
    ComplaintFiled,
    ComplaintResolved,
    Finding,
    InspectionRecorded,
    LawTalkRecorded,
    PenaltyImposed,
    RectificationSubmitted,
    RectificationVerified,
    Visit,
    rectification_id,
)
from services.inspections.domain.rules import (
    Circumstance,
    ComplaintChannel,
    FindingType,
    InspectionKind,
    InspectionPolicy,
    PenaltyArticle,
    PenaltyKind,
)
from services.registry.domain.events import (
    CreditCodeReserved,
    InstitutionApproved,
    InstitutionConvertedToNonProfit,
    InstitutionExited,
    InstitutionRegistered,
    InstitutionResumed,
    InstitutionRevoked,
    InstitutionSuspended,
    ListMarkSet,
    WarningCardIssued,
    credit_code_stream,
)
from services.registry.domain.rules import (
    Category,
    ListMark,
    NonSubjectKind,
    TeachingMode,
    WarningColor,
    credit_code_check_char,
)

if TYPE_CHECKING:
    from services.bootstrap import Platform

ACTOR = "bench-load"
AS_OF = date(2025, 9, 30)
"""The data set's today: nothing happens after it, so the same seed gives the same data
whenever it is loaded (the platform's clock judges what moved since, as it would)."""
FIRST_DAY = date(2016, 1, 1)
SUBJECT_BEFORE = date(2021, 5, 1)  # SUBJECT ones were registered and licensed before the policy
INSPECTIONS_FROM = date(2021, 9, 1)
ORDER_SPAN = timedelta(days=140)  # an order's events end within this of its payment

APPROVED_SHARE = 0.75
ACCOUNT_SHARE = 0.2  # of the approved NON_SUBJECT institutions
CLUSTER_SHARE = 0.01  # approved institutions drawing three complaints in ten days
MAX_REFUNDS = 4  # per account: five requests in 30 days would make it YELLOW
FINANCE_EVENTS_PER_ORDER = 5.3  # recorded, 2 × (delivered, confirmed), a refund in ten
MAX_ORDER_FEN = 40 * 20_000

WORDS = ["启明", "博学", "育才", "思源", "明德", "致远", "优学", "新航道", "星火", "青苗"]
TAILS = {
    "SUBJECT": ["学科培训学校", "文化课辅导中心", "教育培训学校"],
    "SPORTS": ["篮球俱乐部", "跆拳道馆", "游泳培训中心"],
    "ARTS": ["美术工作室", "钢琴艺术学校", "舞蹈培训中心"],
    "SCIENCE_TECH": ["编程创客中心", "机器人学校"],
    "COMPREHENSIVE_PRACTICE": ["研学实践中心"],
}
KINDS = [NonSubjectKind(kind) for kind in TAILS if kind != "SUBJECT"]
VISIT_FINDINGS = [
    kind for kind in FindingType if kind not in InspectionPolicy().yellow_card_findings
]  # the warning-card process would card the others (it does not run over the history)

Commit = list[Envelope]
Progress = Callable[[str, int], None]
"""(service, events generated so far)."""


def credit_code(region: str, n: int) -> str:
    """A code that passes GB 32100, unique per ``n`` (52 = 民办非企业单位)."""
    first17 = f"52{region}MA{n:07d}"
    return first17 + credit_code_check_char(first17)


def districts_of(regions: RegionTree, province: str) -> list[Region]:
    code = regions.canonical(province, "province")
    if regions.require(code).level is not RegionLevel.PROVINCE:
        raise BadInput(f"{province} is not a province", field="province")
    prefix = regions.subtree_prefix(code)
    return [r for r in regions.by_level(RegionLevel.DISTRICT) if r.code.startswith(prefix)]


def orders_for(finance_events: int) -> int:
    """Orders that make about ``finance_events`` finance events."""
    return math.ceil(finance_events / FINANCE_EVENTS_PER_ORDER)


def _moment(rng: random.Random, start: date, end: date) -> datetime:
    day = start + timedelta(days=rng.randrange(max((end - start).days, 1)))
    return datetime(day.year, day.month, day.day, rng.randrange(8, 20), tzinfo=SHANGHAI)


def _end_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 23, 59, tzinfo=SHANGHAI)


class Ids:
    """A service's event ids, increasing in the order they are stored, so the event
    store's id index grows at its end: random ids dirty a random index page per insert,
    and at a million institutions the load was spent rewriting index pages. A tag drawn
    from the seed and the service keeps them unique across services and seeds."""

    def __init__(self, seed: int, service: str) -> None:
        self._tag = random.Random(f"{seed}:{service}:ids").getrandbits(32) << 32
        self._count = itertools.count(1)

    def __call__(self, rng: random.Random) -> UUID:
        return UUID(int=next(self._count) << 64 | self._tag | rng.getrandbits(32))


class Recorder:
    """Commits of one entity's streams: versions counted per stream, ids from the
    service's ``Ids``, recording times from the entity's own random generator."""

    def __init__(self, rng: random.Random, ids: Ids) -> None:
        self.rng = rng
        self.ids = ids
        self.versions: dict[str, int] = {}

    def __call__(self, stream: str, region: str, at: datetime, *events: DomainEvent) -> Commit:
        recorded = at + timedelta(seconds=self.rng.randrange(1, 600))
        version = self.versions.get(stream, 0)
        commit = []
        for event in events:
            version += 1
            commit.append(
                Envelope(
                    id=self.ids(self.rng),
                    type=event.TYPE,
                    schema_version=event.SCHEMA_VERSION,
                    stream=stream,
                    version=version,
                    region=region,
                    occurred_at=at,
                    recorded_at=recorded,
                    actor=ACTOR,
                    data=event.payload(),
                )
            )
        self.versions[stream] = version
        return commit


@dataclass(frozen=True)
class Institution:
    """What the other services need to know of institution ``n``."""

    n: int
    id: str
    district: Region
    subject: bool
    registered_at: datetime
    approved_at: datetime | None
    account: bool  # a supervised account (approved NON_SUBJECT ones only)
    cluster: bool  # three complaints within ten days, once


@dataclass(frozen=True)
class Plan:
    """The sizes and the seed; everything else follows from them."""

    institutions: int
    orders: int
    districts: Sequence[Region]
    seed: int = 2021
    batches: int = field(init=False)
    complaints: int = field(init=False)
    talks: int = field(init=False)
    penalties: int = field(init=False)

    def __post_init__(self) -> None:
        n = self.institutions
        object.__setattr__(self, "batches", max(n // 5, 1))
        object.__setattr__(self, "complaints", n * 2 // 3)
        object.__setattr__(self, "talks", n // 12)
        object.__setattr__(self, "penalties", n // 22)

    def rng(self, kind: str, n: int) -> random.Random:
        # A string seed is hashed with SHA-512: the same in every process and build.
        return random.Random(f"{self.seed}:{kind}:{n}")

    def institution(self, n: int) -> tuple[Institution, random.Random]:
        """Institution ``n``'s facts, and its generator to draw the rest of its history."""
        rng = self.rng("institution", n)
        district = self.districts[n % len(self.districts)]
        subject = rng.random() < 0.3
        last = SUBJECT_BEFORE if subject else AS_OF - timedelta(days=400)
        registered = _moment(rng, FIRST_DAY, last)
        approved = None
        if rng.random() < APPROVED_SHARE:
            approved = registered + timedelta(days=rng.randrange(5, 60))
        account = approved is not None and not subject and rng.random() < ACCOUNT_SHARE
        cluster = approved is not None and rng.random() < CLUSTER_SHARE
        facts = Institution(
            n, f"load-{n:07d}", district, subject, registered, approved, account, cluster
        )
        return facts, rng

    def in_district(self, rng: random.Random, d: int) -> int | None:
        """A random institution of district number ``d`` (they are ``d``, ``d + D``, ...)."""
        count = len(range(d, self.institutions, len(self.districts)))
        return d + len(self.districts) * rng.randrange(count) if count else None

    def cluster_days(self, facts: Institution) -> list[datetime]:
        """The three complaints of a cluster institution."""
        assert facts.approved_at is not None
        rng = self.rng("cluster", facts.n)
        latest = (AS_OF - facts.approved_at.date()).days - 10  # over 300 (see ``institution``)
        first = facts.approved_at + timedelta(days=rng.randrange(30, min(900, latest)))
        days = [first]
        for _ in range(2):
            days.append(days[-1] + timedelta(days=rng.randrange(1, 5), hours=rng.randrange(3)))
        return days

    # --- the registry ---------------------------------------------------------------

    def registry(self) -> Iterator[Commit]:
        ids = Ids(self.seed, "registry")
        for n in range(self.institutions):
            yield from self._institution(n, ids)

    def _institution(self, n: int, ids: Ids) -> Iterator[Commit]:
        facts, rng = self.institution(n)
        record = Recorder(rng, ids)
        district, code, iid = facts.district, facts.district.code, facts.id
        kind = None if facts.subject else rng.choice(KINDS)
        tail = rng.choice(TAILS[kind.value if kind else "SUBJECT"])
        registered = InstitutionRegistered(
            name=f"{district.name}{rng.choice(WORDS)}{tail}{n}",
            credit_code=credit_code(code, n),
            region=code,
            address=f"{district.full_name}{rng.randrange(1, 300)}号",
            category=Category.SUBJECT if facts.subject else Category.NON_SUBJECT,
            non_subject_kind=kind,
            mode=TeachingMode.ONLINE if rng.random() < 0.1 else TeachingMode.OFFLINE,
            non_profit=rng.random() < 0.3,
            authority="教育局" if facts.subject else "文化和旅游局",
        )
        at = facts.registered_at
        reserved = CreditCodeReserved(institution_id=iid, registration=registered)
        yield record(credit_code_stream(registered.credit_code), code, at, reserved)
        yield record(iid, code, at + timedelta(seconds=1), registered)
        if facts.approved_at is None:
            return  # still pending
        at = facts.approved_at
        yield record(iid, code, at, InstitutionApproved(license_no=f"教民{code}{n:07d}号"))
        end = _end_of(AS_OF)
        later: list[DomainEvent] = []
        for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
            color = WarningColor.RED if rng.random() < 0.2 else WarningColor.YELLOW
            later.append(WarningCardIssued(color=color, reason="超前超标培训"))
        if rng.random() < 0.12:
            mark = ListMark.WHITELIST if rng.random() < 0.6 else ListMark.BLACKLIST
            later.append(ListMarkSet(mark=mark, reason="年度检查"))
        if rng.random() < 0.03:
            later.append(InstitutionConvertedToNonProfit())
        roll = rng.random()
        if facts.account:
            pass  # money is held for it: closing it would make it RED
        elif roll < 0.06:
            later.append(InstitutionSuspended(reason="消防隐患"))
            if rng.random() < 0.6:
                later.append(InstitutionResumed())
        elif roll < 0.09:
            later.append(InstitutionExited(reason="停止办学"))
        elif roll < 0.10:
            later.append(InstitutionRevoked(reason="吊销许可"))
        for event in later:
            at += timedelta(days=rng.randrange(10, 200))
            if at > end:
                return
            yield record(iid, code, at, event)

    # --- inspections ------------------------------------------------------------------

    def inspections(self) -> Iterator[Commit]:
        ids = Ids(self.seed, "inspections")
        for b in range(self.batches):
            yield from self._batch(b, ids)
        stride = _coprime_stride(self.institutions)
        for c in range(self.complaints):
            yield from self._complaint(c, c * stride % self.institutions, ids)
        for n in range(self.institutions):
            facts, _ = self.institution(n)
            if facts.cluster:
                for k, at in enumerate(self.cluster_days(facts)):
                    rng = self.rng("cluster-complaint", 3 * n + k)
                    stream = f"complaint-{n:07d}-{k}"
                    yield from self._complaint_about(Recorder(rng, ids), facts, stream, at)
        for t in range(self.talks):
            yield from self._talk(t, ids)
        for p in range(self.penalties):
            yield from self._penalty(p, ids)

    def _registered_in(self, rng: random.Random, d: int, at: datetime) -> Institution | None:
        n = self.in_district(rng, d)
        if n is None:
            return None
        facts, _ = self.institution(n)
        return facts if facts.registered_at < at else None

    def _batch(self, b: int, ids: Ids) -> Iterator[Commit]:
        """8–15 visits (institutions of the district and venues, three in ten with
        findings, each opening an order), the orders submitted and verified (some fail
        once and come back, a FEES one always passes in time), some left open."""
        rng = self.rng("batch", b)
        record = Recorder(rng, ids)
        d = rng.randrange(len(self.districts))
        code = self.districts[d].code
        at = _moment(rng, INSPECTIONS_FROM, AS_OF - timedelta(days=60))
        stream = f"batch-{b:07d}"
        visits: list[Visit] = []
        orders: list[tuple[str, str | None, bool]] = []
        for _ in range(rng.randrange(8, 16)):
            facts = self._registered_in(rng, d, at) if rng.random() < 0.7 else None
            institution = facts.id if facts else None
            venue = None if institution else f"幸福小区{rng.randrange(1, 400)}栋"
            findings: tuple[Finding, ...] = ()
            order = None
            if rng.random() < 0.3:
                types = VISIT_FINDINGS if institution else list(FindingType)
                findings = tuple(
                    Finding(type=rng.choice(types), description="现场发现")
                    for _ in range(rng.randrange(1, 3))
                )
                order = rectification_id(stream, len(orders) + 1)
                fees = any(f.type is FindingType.FEES for f in findings)
                orders.append((order, institution, fees))
            visits.append(
                Visit(
                    institution_id=institution, venue=venue, findings=findings, rectification=order
                )
            )
        kind = rng.choice(list(InspectionKind))
        recorded = InspectionRecorded(
            region=code,
            kind=kind,
            started_at=at,
            personnel=rng.randrange(2, 12),
            departments=("教育局", "市场监管局") if kind == InspectionKind.JOINT else ("教育局",),
            visits=tuple(visits),
            deadline=(at + timedelta(days=30)).date(),
        )
        yield record(stream, code, at, recorded)
        later: list[tuple[datetime, int, DomainEvent]] = []
        for order, institution, fees in orders:
            if not fees and rng.random() < 0.2:
                continue  # left open
            when = at + timedelta(days=rng.randrange(3, 16 if fees else 25))
            failures = 0
            while True:
                submitted = RectificationSubmitted(
                    rectification=order, institution_id=institution, note="已整改"
                )
                later.append((when, len(later), submitted))
                when += timedelta(days=rng.randrange(1, 5))
                passed = fees or failures > 0 or rng.random() < 0.85
                failures += 0 if passed else 1
                verified = RectificationVerified(
                    rectification=order,
                    institution_id=institution,
                    passed=passed,
                    note=None,
                    failures=failures,
                )
                later.append((when, len(later), verified))
                if passed:
                    break
                when += timedelta(days=rng.randrange(1, 10))
        for when, _, event in sorted(later, key=lambda e: (e[0], e[1])):
            yield record(stream, code, when, event)

    def _complaint(self, c: int, n: int, ids: Ids) -> Iterator[Commit]:
        """A complaint, most about an institution (each institution is named by one such
        complaint at most, so only the clusters reach three in 30 days)."""
        rng = self.rng("complaint", c)
        at = _moment(rng, INSPECTIONS_FROM, AS_OF - timedelta(days=30))
        facts, _ = self.institution(n)
        named = rng.random() < 0.8 and not facts.cluster and facts.registered_at < at
        record = Recorder(rng, ids)
        yield from self._complaint_about(record, facts, f"complaint-{c:07d}", at, named=named)

    def _complaint_about(
        self,
        record: Recorder,
        facts: Institution,
        stream: str,
        at: datetime,
        *,
        named: bool = True,
    ) -> Iterator[Commit]:
        rng = record.rng
        code = facts.district.code
        institution = facts.id if named else None
        filed = ComplaintFiled(
            region=code,
            channel=rng.choice(list(ComplaintChannel)),
            institution_id=institution,
            text="周末仍在上学科类课程",
        )
        yield record(stream, code, at, filed)
        if rng.random() < 0.7:
            resolved = ComplaintResolved(
                institution_id=institution, substantiated=rng.random() < 0.4, note="已核实"
            )
            yield record(stream, code, at + timedelta(days=rng.randrange(1, 20)), resolved)

    def _talk(self, t: int, ids: Ids) -> Iterator[Commit]:
        rng = self.rng("talk", t)
        at = _moment(rng, INSPECTIONS_FROM, AS_OF)
        facts = self._registered_in(rng, rng.randrange(len(self.districts)), at)
        if facts is None:
            return
        code = facts.district.code
        talk = LawTalkRecorded(region=code, institution_id=facts.id, persons=rng.randrange(1, 6))
        yield Recorder(rng, ids)(f"talk-{t:07d}", code, at, talk)

    def _penalty(self, p: int, ids: Ids) -> Iterator[Commit]:
        rng = self.rng("penalty", p)
        at = _moment(rng, INSPECTIONS_FROM, AS_OF)
        facts = self._registered_in(rng, rng.randrange(len(self.districts)), at)
        if facts is None:
            return
        code = facts.district.code
        kind = rng.choice((PenaltyKind.WARNING, PenaltyKind.FINE))
        penalty = PenaltyImposed(
            region=code,
            institution_id=facts.id,
            venue=None,
            article=PenaltyArticle.ARTICLE_17,
            circumstance=Circumstance.ORDINARY,
            kind=kind,
            fine_fen=rng.randrange(1, 50) * 100_000 if kind == PenaltyKind.FINE else 0,
            illegal_gains_fen=None,
            reason="未经审批开展校外培训",
        )
        yield Recorder(rng, ids)(f"penalty-{p:07d}", code, at, penalty)

    # --- finance ----------------------------------------------------------------------

    @cached_property
    def accounts(self) -> int:
        """Supervised accounts: one per approved NON_SUBJECT institution in five."""
        return sum(1 for n in range(self.institutions) if self.institution(n)[0].account)

    def check(self) -> None:
        """Refuse a plan that cannot be loaded (before anything is written)."""
        if self.orders and not self.accounts:
            raise BadInput(
                "no institution took a supervised account: load more institutions",
                field="orders",
            )

    def finance(self) -> Iterator[Commit]:
        """Accounts with their orders (``orders`` spread evenly over them), then the risk
        levels of the cluster institutions."""
        self.check()
        ids = Ids(self.seed, "finance")
        total = self.accounts
        k = o = 0
        for n in range(self.institutions):
            facts, _ = self.institution(n)
            if facts.account:
                count = self.orders * (k + 1) // total - self.orders * k // total
                yield from self._account(facts, o, count, ids)
                k, o = k + 1, o + count
            if facts.cluster:
                yield from self._risk(facts, ids)

    def _account(self, facts: Institution, first: int, count: int, ids: Ids) -> Iterator[Commit]:
        assert facts.approved_at is not None
        rng = self.rng("account", facts.n)
        record = Recorder(rng, ids)
        iid, code = facts.id, facts.district.code
        opened = facts.approved_at + timedelta(days=rng.randrange(1, 30))
        mode = SupervisionMode.BANK_CUSTODY if rng.random() < 0.7 else SupervisionMode.RISK_DEPOSIT
        account = SupervisionAccountOpened(
            institution_id=iid,
            region=code,
            mode=mode,
            bank="中国银行",
            account_no=f"6217{facts.n:012d}",
            # It covers every order it will ever hold: the cover rule never fires.
            deposit_fen=max(count, 1) * MAX_ORDER_FEN if mode == "RISK_DEPOSIT" else 0,
        )
        yield record(account_stream(iid), code, opened, account)
        start = max(opened.date(), AS_OF - timedelta(days=700))
        paid = sorted(
            _moment(rng, start + timedelta(days=1), AS_OF - ORDER_SPAN) for _ in range(count)
        )
        refunds = 0
        for o, at in enumerate(paid, start=first):
            refund = refunds < MAX_REFUNDS and rng.random() < 0.1
            refunds += refund
            yield from self._order(Recorder(rng, ids), facts, f"order-{o:08d}", at, refund)

    def _order(
        self, record: Recorder, facts: Institution, stream: str, at: datetime, refund: bool
    ) -> Iterator[Commit]:
        rng = record.rng
        iid, code = facts.id, facts.district.code
        lessons, price = rng.choice((10, 20, 40)), rng.choice((8_000, 12_000, 20_000))
        start = at.date() + timedelta(days=3)
        recorded = PrepaidOrderRecorded(
            institution_id=iid,
            region=code,
            payer_hash=f"{rng.getrandbits(64):016x}",
            lessons=lessons,
            price_fen=price,
            amount_fen=lessons * price,
            course_start=start,
            course_end=start + timedelta(days=120),
            paid_at=at,
        )
        yield record(stream, code, at, recorded)
        given = 0
        for delivery in (1, 2):
            at += timedelta(days=rng.randrange(7, 40))
            part = lessons // 4
            delivered = LessonsDelivered(
                institution_id=iid,
                delivery=delivery,
                lessons=part,
                confirm_by=(at + timedelta(days=21)).date(),
            )
            yield record(stream, code, at, delivered)
            at += timedelta(days=rng.randrange(1, 10))
            confirmed = LessonsConfirmed(
                institution_id=iid,
                lessons=part,
                amount_fen=part * price,
                deliveries=(delivery,),
                automatic=False,
            )
            yield record(stream, code, at, confirmed)
            given += part
        if not refund:
            return
        at += timedelta(days=rng.randrange(1, 30))
        requested = RefundRequested(
            institution_id=iid,
            request=1,
            lessons=None,
            reason="搬家",
            answer_by=(at + timedelta(days=7)).date(),
        )
        yield record(stream, code, at, requested)
        at += timedelta(days=rng.randrange(1, 5))
        answered = RefundRequestAnswered(
            institution_id=iid, request=1, accepted=True, note=None, automatic=False
        )
        refunded = LessonsRefunded(
            institution_id=iid,
            lessons=lessons - given,
            amount_fen=(lessons - given) * price,
            reason="搬家",
            request=1,
        )
        yield record(stream, code, at, answered, refunded)

    def _risk(self, facts: Institution, ids: Ids) -> Iterator[Commit]:
        """YELLOW when the third complaint comes in (the risk watch), GREEN on the day the
        first one leaves the window (the finance clock), unless that is after ``AS_OF``."""
        rng = self.rng("risk", facts.n)
        record = Recorder(rng, ids)
        iid, code = facts.id, facts.district.code
        days = self.cluster_days(facts)
        window = RiskPolicy().window_days
        yellow = RiskLevelChanged(
            institution_id=iid,
            region=code,
            level=RiskLevel.YELLOW,
            previous=RiskLevel.GREEN,
            reasons=(f"COMPLAINTS: 3 complaints in {window} days",),
        )
        yield record(risk_stream(iid), code, days[2] + timedelta(seconds=5), yellow)
        back = days[0].date() + timedelta(days=window)
        if back <= AS_OF:
            green = RiskLevelChanged(
                institution_id=iid,
                region=code,
                level=RiskLevel.GREEN,
                previous=RiskLevel.YELLOW,
                reasons=(),
            )
            at = datetime(back.year, back.month, back.day, 1, tzinfo=SHANGHAI)
            yield record(risk_stream(iid), code, at, green)


def _coprime_stride(n: int) -> int:
    """A step that visits every number below ``n`` once (``c * stride % n``)."""
    stride = 1_000_003
    while math.gcd(stride, n) != 1:
        stride += 2
    return stride


# --- writing ----------------------------------------------------------------------------

BATCH_EVENTS = 5_000
"""Events per transaction: the fsync is nothing beside them, and a batch's envelopes and
rows are a few megabytes."""


async def write(
    store: SQLiteEventStore,
    commits: Iterator[Commit],
    *,
    service: str = "",
    progress: Progress | None = None,
    batch_events: int = BATCH_EVENTS,
) -> int:
    """Append ``commits`` in transactions of about ``batch_events`` events, marked as
    published (history is not news: the relay must not send it to live subscribers).
    One batch is generated while the one before is written. Returns how many events
    were written."""
    written = 0
    pending: asyncio.Task[int] | None = None

    async def flush(batch: list[Commit]) -> None:
        nonlocal written, pending
        if pending is not None:
            written += await pending
            if progress is not None:
                progress(service, written)
        if batch:
            pending = asyncio.create_task(store.append_batch(batch, published=True))
            for _ in range(3):  # until it waits on the writer thread (rows, queue, flusher)
                await asyncio.sleep(0)
        else:
            pending = None

    batch: list[Commit] = []
    size = 0
    for commit in commits:
        batch.append(commit)
        size += len(commit)
        if size >= batch_events:
            await flush(batch)
            batch, size = [], 0
    await flush(batch)
    await flush([])
    return written


# --- loading a data dir -----------------------------------------------------------------


@dataclass
class Loaded:
    institutions: int
    accounts: int
    orders: int
    events: dict[str, int]


Projecting = Callable[[str, int, int], None]
"""(service, events applied by every projection so far, events stored)."""


async def load(
    platform: Platform,
    plan: Plan,
    *,
    catch_up: bool = True,
    progress: Progress | None = None,
    projecting: Projecting | None = None,
) -> Loaded:
    """Write ``plan``'s events into the platform's (empty) event stores, then bring the
    read models up to date by the projections' catch-up (unless ``catch_up`` is off: the
    next start does it). The process managers are not run over the history: what they
    would have decided is in it (see the module), so their positions go to its end."""
    plan.check()
    stores: dict[str, SQLiteEventStore] = {}
    for name, store in platform.event_stores.items():
        if not isinstance(store, SQLiteEventStore):
            raise BadInput("bench-load fills the embedded SQLite event stores", field="data-dir")
        await store.start()
        if await store.max_position() > 0:
            raise Conflict(
                f"{platform.settings.data_dir} holds events already: bench-load fills an "
                "empty one (delete it, or choose another)",
                field="data-dir",
            )
        stores[name] = store
    generated = {
        "registry": plan.registry(),
        "inspections": plan.inspections(),
        "finance": plan.finance(),
    }
    events = {}
    for name, commits in generated.items():
        events[name] = await write(stores[name], commits, service=name, progress=progress)
    runner = platform.runner
    await runner.prepare()
    for manager in platform.processes:
        for source in manager.sources:
            head = events.get(source, 0)
            await platform.read_store.commit(Batch(manager.name, source, head))
    await runner.prepare()  # the positions just set
    if catch_up:
        with replaying():
            for name in stores:
                await _catch_up(runner, name, events[name], projecting)
        await stamp_versions(platform.read_store, runner.projections)
    return Loaded(plan.institutions, plan.accounts, plan.orders, events)


async def _catch_up(
    runner: ProjectionRunner, source: str, end: int, projecting: Projecting | None
) -> None:
    """The runner's catch-up of one source, in replay-sized runs, with its progress."""
    following = [p for p in runner.projections if source in p.sources]

    def report() -> None:
        if projecting is not None:
            done = min((runner.position(p.name, source) for p in following), default=end)
            projecting(source, done, end)

    async def watch() -> None:
        while True:
            report()
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch())
    try:
        await runner.catch_up(source, batch_size=runner.replay_batch_size)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    report()
