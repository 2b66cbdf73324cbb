"""Property: any sequence of inspection commands leaves every roll-up equal to a recount.

After a random run of batches, rectification reports and verifications, complaints, law
talks and penalties (refused and re-sent ones included, the projection catching up now and
then), the ``inspections_`` counters of ``region_stats``, the ``region_months`` buckets
and ``rectification_deadlines`` equal

* the sum of the projection's pure counter functions over the stored documents, and
* a brute-force count of the commands that were accepted,

at every level (district, city, province); the read-time figures (distinct places
inspected, overdue rectifications) equal a brute-force count on several days; and a
redelivery or a rebuild leaves every document as it was.
"""

from __future__ import annotations

import asyncio
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.common.application import CommandContext
from services.common.commands import Command
from services.common.errors import ShuangjianError
from services.common.projection import DEAD_LETTERS, ProjectionRunner, project
from services.common.regions import RegionTree
from services.common.rollups import (
    REGION_MONTHS,
    REGION_STATS,
    all_months,
    stats_fields,
    totals_through,
)
from services.common.sqlite import SQLiteEventStore, SQLiteReadStore
from services.common.timeutil import SHANGHAI
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
from services.inspections.domain.events import SERVICE
from services.inspections.domain.rules import (
    ComplaintChannel,
    FindingType,
    InspectionKind,
    InspectionPolicy,
)
from services.inspections.handlers import Inspections
from services.inspections.projections import (
    COMPLAINTS,
    INSPECTIONS,
    LAW_TALKS,
    PENALTIES,
    PREFIX,
    RECTIFICATION_DEADLINES,
    RECTIFICATIONS,
    InspectionsProjection,
    complaint_counters,
    inspection_counters,
    law_talk_counters,
    penalty_counters,
    rectification_counters,
)
from services.inspections.views import inspection_counts, month_end_counts, places_inspected_in

REGIONS = RegionTree.load()
POLICY = InspectionPolicy()
DISTRICTS = ["640402", "640422", "120101", "120116"]  # two of 640400 (640000), two of 120100
PROVINCES = ("640000", "120000")
LEVELS = [*DISTRICTS, "640400", "120100", *PROVINCES]
BASE = datetime(2024, 3, 1, tzinfo=SHANGHAI)
NOW = BASE + timedelta(days=400)  # the application's clock: after every business time
# Registered institutions and their districts; "n6" is not registered (refused).
REGISTERED = {
    "n0": "640402",
    "n1": "640402",
    "n2": "640422",
    "n3": "120101",
    "n4": "120116",
    "n5": "120116",
}
INSTITUTIONS = [*REGISTERED, "n6"]
# Spellings of three places: each group must count as one place per district.
VENUES = [
    "幸福小区 3栋",
    "幸福小区3栋",
    "幸福小区３栋",
    "幸福小区\u30003栋",
    "Sunny Café",
    " sunny  CAFÉ ",
    "sunny\u00a0cafe\u0301",
    "阳光书店",
]
# Every month figure the brute-force model counts (the ``…_net`` standings are checked as
# month-end figures instead, against their own brute-force count).
MONTH_FIELDS = (
    "inspections",
    "personnel_dispatched",
    "visits",
    "findings",
    "joint_actions",
    "rectifications_opened",
    "rectifications_closed",
    "complaints",
    "law_talks",
    "law_talk_sessions",
    "penalties",
    "fines_fen",
)
MONTH_PREFIXES = ("finding_", "complaints_channel_", "penalties_")
ROLLUPS = (REGION_STATS.name, REGION_MONTHS.name, RECTIFICATION_DEADLINES.name)

Doc = dict[str, Any]
Docs = Mapping[str, list[Doc]]

# --- strategies ---------------------------------------------------------------------------

# A business time: days after BASE, an hour, and how it is written (+08:00, UTC or naive).
zone = st.sampled_from(["+08:00", "UTC", "naive"])
when = st.tuples(st.integers(0, 60), st.integers(0, 23), zone)
later = st.tuples(st.integers(30, 100), st.integers(0, 22), zone)  # mostly after the batch
# A place: "local" an institution of the command's district, "i" any institution (mostly
# of another district, or "n6" that is not registered: refused), "v" a venue; the number
# picks one (modulo how many there are).
target = st.integers(0, 7)
registered = st.tuples(st.sampled_from(["local", "local", "local", "i"]), target)
place = st.tuples(st.sampled_from(["local", "local", "v", "v", "v", "i"]), target)
some_findings = st.lists(st.sampled_from(list(FindingType)), min_size=1, max_size=2)
visit = st.tuples(place, st.one_of(st.just([]), some_findings, some_findings))
slot = st.sampled_from([0, 0, 1, 1, 2, 3, 4, 5])  # of a batch: repeats are re-sends or conflicts
batch_op = st.tuples(
    st.just("batch"),
    slot,
    st.sampled_from(DISTRICTS),
    st.sampled_from(list(InspectionKind)),
    st.integers(1, 50),  # personnel
    when,
    st.integers(1, 20),  # rectify within days
    st.lists(visit, min_size=1, max_size=4),
)
# b{slot}~{n}: mostly of the first batches (which take slots 0, 1, 2, ...).
order = st.tuples(st.sampled_from([0, 0, 1, 1, 2, 3, 5]), st.sampled_from([1, 1, 1, 1, 2, 2, 3]))
passed = st.sampled_from([True, True, False])
note = st.sampled_from(["已整改", "已更换灭火器"])
# Ids of the one-fact records; "b5" and "c2" may be taken by a batch or a complaint.
talk_id = st.sampled_from(["t0", "t1", "t2", "b5", "c2"])
penalty_id = st.sampled_from(["p0", "p1", "p2", "p3"])
OPS: dict[str, tuple[int, st.SearchStrategy[tuple[Any, ...]]]] = {
    # name: (weight, strategy)
    "batch": (3, batch_op),
    "report": (5, st.tuples(st.just("report"), order, later, passed)),  # submit, then verify
    "submit": (1, st.tuples(st.just("submit"), order, later, note)),
    "verify": (1, st.tuples(st.just("verify"), order, later, passed)),
    "complain": (
        2,
        st.tuples(
            st.just("complain"),
            st.integers(0, 2),
            st.sampled_from(DISTRICTS),
            st.sampled_from(list(ComplaintChannel)),
            st.none() | registered,
            when,
        ),
    ),
    "resolve": (2, st.tuples(st.just("resolve"), st.integers(0, 2), st.booleans(), later)),
    "talk": (
        1,
        st.tuples(
            st.just("talk"),
            talk_id,
            st.sampled_from(DISTRICTS),
            st.integers(1, 50),
            st.none() | registered,
            when,
        ),
    ),
    "penalty": (
        1,
        st.tuples(
            st.just("penalty"),
            penalty_id,
            st.sampled_from(DISTRICTS),
            place,
            st.none() | st.integers(100, 6_000_000),  # fine in fen; over 50,000 yuan: refused
            when,
        ),
    ),
    "again": (1, st.just(("again",))),  # send the previous command once more
    "catch_up": (1, st.just(("catch_up",))),  # the projection runs in the middle
}
op = st.sampled_from([name for name, (weight, _) in OPS.items() for _ in range(weight)]).flatmap(
    lambda name: OPS[name][1]
)


def first_batches_then(first: list[tuple[Any, ...]], rest: list[tuple[Any, ...]]) -> list[Any]:
    """The first batches take slots 0, 1, 2, ... (reports find them), then any op."""
    return [(name, n, *fields) for n, (name, _, *fields) in enumerate(first)] + rest


commands = st.builds(
    first_batches_then,
    st.lists(batch_op, min_size=3, max_size=5),
    st.lists(op, min_size=8, max_size=40),
)


def at(moment: tuple[int, int, str]) -> datetime:
    day, hour, written = moment
    value = BASE + timedelta(days=day, hours=hour)
    if written == "UTC":
        return value.astimezone(UTC)
    return value.replace(tzinfo=None) if written == "naive" else value


def local(value: datetime) -> datetime:
    """A business time in China (naive means Asia/Shanghai)."""
    return value.replace(tzinfo=SHANGHAI) if value.tzinfo is None else value.astimezone(SHANGHAI)


def place_of(where: str, target: int, region: str) -> tuple[str | None, str | None]:
    """The (institution id, venue) a generated place names."""
    if where == "v":
        return None, VENUES[target % len(VENUES)]
    if where == "local":
        ids = [id for id, district in REGISTERED.items() if district == region]
        return ids[target % len(ids)], None
    return INSTITUTIONS[target % len(INSTITUTIONS)], None


def to_commands(op: tuple[Any, ...]) -> list[Command]:
    """The commands an op stands for (ids repeat, so conflicts and re-sends happen)."""
    match op:
        case ("batch", n, region, kind, personnel, started, within, visits):
            return [
                RecordInspection(
                    id=f"b{n}",
                    region=region,
                    kind=kind.value,
                    started_at=at(started),
                    personnel=personnel,
                    rectify_within_days=within,
                    visits=[
                        VisitInput(
                            *place_of(where, target, region),
                            findings=[
                                FindingInput(type=t.value, description="发现") for t in found
                            ],
                        )
                        for (where, target), found in visits
                    ],
                )
            ]
        case ("report", (n, k), moment, ok):
            day, hour, written = moment
            return [
                *to_commands(("submit", (n, k), moment, "已整改")),
                *to_commands(("verify", (n, k), (day, hour + 1, written), ok)),
            ]
        case ("submit", (n, k), moment, text):
            return [SubmitRectification(id=f"b{n}~{k}", note=text, occurred_at=at(moment))]
        case ("verify", (n, k), moment, ok):
            return [VerifyRectification(id=f"b{n}~{k}", passed=ok, occurred_at=at(moment))]
        case ("complain", n, region, channel, about, moment):
            return [
                FileComplaint(
                    id=f"c{n}",
                    region=region,
                    channel=channel.value,
                    institution_id=None
                    if about is None
                    else place_of(about[0], about[1], region)[0],
                    text="夜间补课",
                    occurred_at=at(moment),
                )
            ]
        case ("resolve", n, substantiated, moment):
            return [
                ResolveComplaint(
                    id=f"c{n}", substantiated=substantiated, note="已查", occurred_at=at(moment)
                )
            ]
        case ("talk", id, region, persons, about, moment):
            return [
                RecordLawTalk(
                    id=id,
                    region=region,
                    persons=persons,
                    institution_id=None
                    if about is None
                    else place_of(about[0], about[1], region)[0],
                    occurred_at=at(moment),
                )
            ]
        case ("penalty", id, region, (where, target), fine_fen, moment):
            institution_id, venue = place_of(where, target, region)
            return [
                RecordPenalty(
                    id=id,
                    region=region,
                    institution_id=institution_id,
                    venue=venue,
                    article="ARTICLE_18",
                    kind="WARNING" if fine_fen is None else "FINE",
                    circumstance="ORDINARY" if fine_fen is None else "SERIOUS",
                    fine=None if fine_fen is None else Decimal(fine_fen).scaleb(-2),
                    reason="隐形变异学科类培训",
                    occurred_at=at(moment),
                )
            ]
    raise AssertionError(op)


async def institution_regions(ids: Sequence[str]) -> Mapping[str, str]:
    """The registry's lookup, over the fixed set of registered institutions."""
    return {id: REGISTERED[id] for id in ids if id in REGISTERED}


# --- the brute-force model of what was accepted ------------------------------------------


def normalised(venue: str) -> str:
    """A venue as one place: NFKC, case folded, without whitespace."""
    folded = unicodedata.normalize("NFKC", venue).casefold()
    return "".join(char for char in folded if not char.isspace())


def month(value: datetime | None) -> str:
    assert value is not None
    return local(value).isoformat()[:7]


@dataclass
class Order:
    region: str
    deadline: date
    status: str = "OPEN"
    closed_on: date | None = None


@dataclass
class Model:
    """What the accepted commands say, counted by hand at every level."""

    stats: Counter[tuple[str, str]] = field(default_factory=Counter)
    months: Counter[tuple[str, str]] = field(default_factory=Counter)
    orders: dict[str, Order] = field(default_factory=dict)
    places: set[tuple[str, str, str]] = field(default_factory=set)  # (district, kind, id)
    # (month, district, kind, id)
    monthly_places: set[tuple[str, str, str, str]] = field(default_factory=set)
    complaint_regions: dict[str, str] = field(default_factory=dict)
    # Plain totals over the whole country, to compare with the provinces' roll-ups.
    totals: Counter[str] = field(default_factory=Counter)

    def add(self, region: str, name: str, value: int = 1, in_month: str | None = None) -> None:
        for level in REGIONS.lineage(region):
            self.stats[(level.code, PREFIX + name)] += value
            if in_month is not None:
                self.months[(f"{level.code}:{in_month}", name)] += value

    def accepted(self, cmd: Command) -> None:
        match cmd:
            case RecordInspection():
                self.batch(cmd)
            case SubmitRectification():
                self.orders[cmd.id or ""].status = "SUBMITTED"
            case VerifyRectification(passed=True):
                order = self.orders[cmd.id or ""]
                order.status = "CLOSED"
                assert cmd.occurred_at is not None
                order.closed_on = local(cmd.occurred_at).date()
                self.add(order.region, "rectifications_closed", in_month=month(cmd.occurred_at))
            case VerifyRectification(passed=False):
                self.orders[cmd.id or ""].status = "OPEN"
            case FileComplaint():
                self.add(cmd.region, "complaints", in_month=month(cmd.occurred_at))
                channel = f"complaints_channel_{cmd.channel.lower()}"
                self.add(cmd.region, channel, in_month=month(cmd.occurred_at))
                self.complaint_regions[cmd.id or ""] = cmd.region
            case ResolveComplaint():
                region = self.complaint_regions[cmd.id or ""]
                self.add(region, "complaints_resolved")
                self.add(region, "complaints_substantiated", int(cmd.substantiated))
            case RecordLawTalk():
                talked = month(cmd.occurred_at)
                self.add(cmd.region, "law_talks", cmd.persons, in_month=talked)
                self.add(cmd.region, "law_talk_sessions", in_month=talked)
            case RecordPenalty():
                decided = month(cmd.occurred_at)
                self.add(cmd.region, "penalties", in_month=decided)
                self.add(cmd.region, f"penalties_{cmd.kind.lower()}", in_month=decided)
                fine = int((cmd.fine or 0) * 100)
                self.add(cmd.region, "fines_fen", fine, in_month=decided)

    def batch(self, cmd: RecordInspection) -> None:
        started = local(cmd.started_at)
        assert cmd.rectify_within_days is not None
        deadline = started.date() + timedelta(days=cmd.rectify_within_days)
        region, batch_month = cmd.region, month(started)
        self.totals["inspections"] += 1
        self.totals["personnel_dispatched"] += cmd.personnel
        self.totals["findings"] += sum(len(v.findings) for v in cmd.visits)
        self.totals["rectifications_opened"] += sum(1 for v in cmd.visits if v.findings)
        self.add(region, "inspections", in_month=batch_month)
        self.add(region, "personnel_dispatched", cmd.personnel, in_month=batch_month)
        self.add(region, "visits", len(cmd.visits), in_month=batch_month)
        joint = int(cmd.kind == InspectionKind.JOINT)
        self.add(region, "joint_actions", joint, in_month=batch_month)
        opened = 0
        for visit in cmd.visits:
            if visit.institution_id is not None:
                place = (region, "i", visit.institution_id)
            else:
                place = (region, "v", normalised(visit.venue or ""))
            self.places.add(place)
            self.monthly_places.add((batch_month, *place))
            self.add(region, "findings", len(visit.findings), in_month=batch_month)
            for finding in visit.findings:
                self.add(region, f"finding_{finding.type.lower()}", in_month=batch_month)
            if visit.findings:
                opened += 1
                self.orders[f"{cmd.id}~{opened}"] = Order(region, deadline)
                self.add(region, "rectifications_opened", in_month=batch_month)

    def overdue(self, prefix: str, today: date) -> int:
        return sum(
            1
            for o in self.orders.values()
            if o.region.startswith(prefix) and o.status != "CLOSED" and o.deadline < today
        )

    def places_in(self, prefix: str) -> int:
        return sum(1 for place in self.places if place[0].startswith(prefix))

    def places_in_month(self, prefix: str, in_month: str) -> int:
        return sum(1 for p in self.monthly_places if p[0] == in_month and p[1].startswith(prefix))

    def overdue_at_end_of(self, prefix: str, in_month: str) -> int:
        """Orders due in the month or before and not closed by its end."""
        return sum(
            1
            for o in self.orders.values()
            if o.region.startswith(prefix)
            and o.deadline.isoformat()[:7] <= in_month
            and (o.closed_on is None or o.closed_on.isoformat()[:7] > in_month)
        )


def nonzero(counts: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    result: dict[str, dict[str, int]] = {}
    for (key, name), value in counts.items():
        if value:
            result.setdefault(key, {})[name] = value
    return result


# --- recounts from the stored documents ----------------------------------------------------


def recount(docs: Docs) -> dict[str, dict[str, dict[str, int]]]:
    """The roll-ups as the sum of the pure counter functions over every stored document."""
    totals: Counter[tuple[str, str, str]] = Counter()
    for collection, counters in (
        (INSPECTIONS.name, inspection_counters),
        (RECTIFICATIONS.name, rectification_counters),
        (COMPLAINTS.name, complaint_counters),
        (LAW_TALKS.name, law_talk_counters),
        (PENALTIES.name, penalty_counters),
    ):
        for doc in docs[collection]:
            totals.update(counters(doc, REGIONS))
    result: dict[str, dict[str, dict[str, int]]] = {name: {} for name in ROLLUPS}
    for (collection, key, name), value in totals.items():
        if value:
            result[collection].setdefault(key, {})[name] = value
    return result


def stored_rollups(docs: Docs) -> dict[str, dict[str, dict[str, int]]]:
    """This service's counters as stored (zeros left out, as a recount has none)."""
    wanted = {
        REGION_STATS.name: lambda name: name.startswith(PREFIX),
        REGION_MONTHS.name: lambda name: (
            name in MONTH_FIELDS or name.startswith(MONTH_PREFIXES) or name.endswith("_net")
        ),
        RECTIFICATION_DEADLINES.name: lambda name: name.startswith("due_"),
    }
    result: dict[str, dict[str, dict[str, int]]] = {}
    for collection, keep in wanted.items():
        result[collection] = {}
        for doc in docs[collection]:
            values = {k: v for k, v in doc.items() if keep(k) and v}
            if values:
                result[collection][doc["id"]] = values
    return result


def places_in_docs(batches: list[Doc], prefix: str) -> int:
    """Distinct institutions, and venues of a district, over every visit under ``prefix``."""
    places: set[tuple[str, ...]] = set()
    for batch in batches:
        if batch["region"].startswith(prefix):
            for visit in batch["visits"]:
                if visit["institution_id"] is not None:
                    places.add(("i", visit["institution_id"]))
                else:
                    places.add(("v", batch["region"], normalised(visit["venue"])))
    return len(places)


def overdue_in_docs(orders: list[Doc], prefix: str, today: date) -> int:
    return sum(
        1
        for o in orders
        if o["region"].startswith(prefix)
        and o["status"] != "CLOSED"
        and date.fromisoformat(o["deadline"]) < today
    )


async def dump_all(reads: SQLiteReadStore, names: Sequence[str]) -> dict[str, list[Doc]]:
    return {name: await reads.dump(name) for name in names}


# --- the property ---------------------------------------------------------------------------


async def send(app: Inspections, cmd: Command, model: Model) -> int | None:
    """Handle one command: the number of events it stored, or ``None`` when refused."""
    try:
        outcome = await app.handle(cmd, CommandContext(actor="property"))
    except ShuangjianError:
        return None  # refused by a rule: nothing written, the property holds all the same
    if outcome.events:
        model.accepted(cmd)
    return len(outcome.events)


async def run_sequence(
    ops: list[tuple[Any, ...]], extra_today: int, redeliver_from: int, root: Path
) -> None:
    store = SQLiteEventStore(root / "events.db")
    reads = SQLiteReadStore(root / "reads.db")
    await store.start()
    app = Inspections(store, REGIONS, POLICY, institution_regions, clock=lambda: NOW)
    projection = InspectionsProjection(REGIONS)
    # A small batch size: the projection commits in several runs, also mid-sequence.
    runner = ProjectionRunner([projection], reads, {SERVICE: store}, batch_size=3)
    model = Model()
    try:
        await runner.prepare()
        previous: tuple[Command, bool] | None = None  # the last command, and if accepted
        for op in ops:
            if op[0] == "catch_up":
                await runner.catch_up()
            elif op[0] == "again":
                if previous is None:
                    continue
                cmd, accepted = previous
                stored = await send(app, cmd, model)
                if accepted:
                    # A re-sent command records nothing: accepted as a no-op (a verification
                    # may be refused instead: its order is no longer SUBMITTED).
                    assert not stored, cmd
                    assert stored == 0 or isinstance(cmd, VerifyRectification), cmd
                previous = (cmd, accepted or bool(stored))
            else:
                for cmd in to_commands(op):
                    previous = (cmd, bool(await send(app, cmd, model)))
        await runner.catch_up()
        event(f"batches accepted: {model.totals['inspections']}")
        event(f"orders closed: {sum(o.status == 'CLOSED' for o in model.orders.values())}")

        names = [c.name for c in projection.collections]
        docs = await dump_all(reads, names)
        assert await reads.dump(DEAD_LETTERS.name) == []

        # 1. The stored roll-ups equal the pure counter functions over the documents...
        rollups = stored_rollups(docs)
        assert rollups == recount(docs)
        # ... and a brute-force count of the accepted commands, at every level.
        assert rollups[REGION_STATS.name] == nonzero(model.stats)
        flows = {
            key: kept
            for key, counts in rollups[REGION_MONTHS.name].items()
            if (kept := {k: v for k, v in counts.items() if not k.endswith("_net")})
        }
        assert flows == nonzero(model.months)
        assert {d["id"] for d in docs[RECTIFICATIONS.name]} == set(model.orders)
        for doc in docs[RECTIFICATIONS.name]:
            expected = model.orders[doc["id"]]
            assert (doc["region"], doc["deadline"], doc["status"]) == (
                expected.region,
                expected.deadline.isoformat(),
                expected.status,
            ), doc

        # 2. The read-time figures equal a brute-force count, judged on several days.
        todays = [BASE.date() + timedelta(days=d) for d in (0, 40, 120, extra_today)]
        for code in LEVELS:
            prefix = REGIONS.subtree_prefix(code)
            stats_doc = next((d for d in docs[REGION_STATS.name] if d["id"] == code), None)
            places = places_in_docs(docs[INSPECTIONS.name], prefix)
            assert places == model.places_in(prefix), code
            for today in todays:
                counts = await inspection_counts(reads, code, prefix, stats_doc, today)
                assert counts["institutions_inspected"] == places, code
                overdue = overdue_in_docs(docs[RECTIFICATIONS.name], prefix, today)
                assert overdue == model.overdue(prefix, today), (code, today)
                assert counts["rectifications_overdue"] == overdue, (code, today)

        # 2b. Month by month: places inspected in the month, and the orders overdue at the
        # end of it (the ``_net`` buckets summed up to it), against a brute-force count.
        months = sorted({key.split(":")[1] for key in rollups[REGION_MONTHS.name]})
        months += [o.deadline.isoformat()[:7] for o in model.orders.values()]
        for code in LEVELS:
            prefix = REGIONS.subtree_prefix(code)
            buckets = await all_months(reads, code)
            for name in sorted(set(months)):
                first_day = date.fromisoformat(f"{name}-01")
                standing = month_end_counts(totals_through(buckets, first_day))
                expected = model.overdue_at_end_of(prefix, name)
                assert standing["rectifications_overdue"] == expected, (code, name)
                places = await places_inspected_in(reads, prefix, first_day)
                assert places == model.places_in_month(prefix, name), (code, name)

        # 3. Totals of the provinces against what was accepted: batches, people, findings
        # and rectification orders (one per visit with findings).
        provinces = [
            stats_fields(d, PREFIX) for d in docs[REGION_STATS.name] if d["id"] in PROVINCES
        ]
        for name in ("inspections", "personnel_dispatched", "findings", "rectifications_opened"):
            assert sum(p.get(name, 0) for p in provinces) == model.totals[name], name

        # 4. A redelivery (a worker restarting from an older position) changes nothing...
        events = await store.read_all(after_position=0, limit=100_000)
        await project(projection, reads, SERVICE, events, min(redeliver_from, len(events)))
        assert await reads.dump(DEAD_LETTERS.name) == []
        assert await dump_all(reads, names) == docs
        # ... and a rebuild replays every event into the same documents.
        await runner.rebuild(projection)
        assert await dump_all(reads, names) == docs
    finally:
        await store.close()
        await reads.close()


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(commands, st.integers(0, 90), st.integers(0, 60))
def test_inspection_rollups_always_equal_a_recount(
    ops: list[tuple[Any, ...]], extra_today: int, redeliver_from: int
) -> None:
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(run_sequence(ops, extra_today, redeliver_from, Path(root)))
