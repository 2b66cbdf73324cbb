"""Property: any command sequence leaves the roll-ups equal to a recount, at every level."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.application import CommandContext
from services.common.errors import ShuangjianError
from services.common.projection import ProjectionRunner
from services.common.regions import RegionTree
from services.common.rollups import all_months, month_range, totals_through
from services.common.sqlite import SQLiteEventStore, SQLiteReadStore
from services.common.timeutil import SHANGHAI, local_date
from services.registry.domain.commands import (
    ApproveInstitution,
    ConvertToNonProfit,
    ExitInstitution,
    IssueWarningCard,
    ReclassifyInstitution,
    RegisterInstitution,
    RegistryCommand,
    ResumeInstitution,
    RevokeInstitution,
    SetListMark,
    SuspendInstitution,
)
from services.registry.domain.rules import RegistryPolicy
from services.registry.handlers import Registry
from services.registry.module import no_rectifications
from services.registry.projections import (
    INSTITUTIONS,
    InstitutionsProjection,
    active_subject_on,
)
from services.registry.views import month_end_counts
from tests.factories import valid_credit_code
from tests.rollups import recount, stored_rollups

REGIONS = RegionTree.load()
POLICY = RegistryPolicy()
DISTRICTS = ["640402", "640422", "640502", "120101", "120116"]
BASE = datetime(2021, 7, 24, 12, tzinfo=SHANGHAI)

register_op = st.tuples(
    st.just("register"),
    st.integers(0, 7),  # institution slot: repeats exercise the idempotent path
    st.sampled_from(DISTRICTS),
    st.sampled_from(["SUBJECT", "NON_SUBJECT"]),
    st.sampled_from(["ONLINE", "OFFLINE"]),
    st.integers(-400, 200),  # days from the policy start: before and after the baseline
)
slot = st.integers(0, 7)
days = st.integers(-400, 200)
lifecycle_op = st.one_of(
    st.tuples(st.just("approve"), slot, days),
    st.tuples(st.just("convert"), slot, days),
    st.tuples(st.just("reclassify"), slot, days, st.sampled_from(["SUBJECT", "ARTS", "SPORTS"])),
    st.tuples(st.just("suspend"), slot, days),
    st.tuples(st.just("resume"), slot, days),
    st.tuples(st.just("revoke"), slot, days),
    st.tuples(st.just("exit"), slot, days),
    st.tuples(st.just("mark"), slot, days, st.sampled_from(["NONE", "WHITELIST", "BLACKLIST"])),
    st.tuples(st.just("card"), slot, days, st.sampled_from(["YELLOW", "RED"])),
)
commands = st.lists(st.one_of(register_op, lifecycle_op), min_size=1, max_size=30)


def lifecycle(op: tuple[Any, ...]) -> RegistryCommand:
    """Any command of the register, back-dated (business time may arrive out of order)."""
    name, n, offset, *extra = op
    common: dict[str, Any] = {"id": f"i{n}", "occurred_at": BASE + timedelta(days=offset)}
    match name:
        case "approve":
            return ApproveInstitution(license_no="L", **common)
        case "convert":
            return ConvertToNonProfit(**common)
        case "reclassify":
            kind = None if extra[0] == "SUBJECT" else extra[0]
            category = "SUBJECT" if kind is None else "NON_SUBJECT"
            return ReclassifyInstitution(category=category, non_subject_kind=kind, **common)
        case "suspend":
            return SuspendInstitution(reason="r", **common)
        case "resume":
            return ResumeInstitution(**common)
        case "revoke":
            return RevokeInstitution(reason="r", **common)
        case "exit":
            return ExitInstitution(reason="r", **common)
        case "mark":
            return SetListMark(mark=extra[0], reason="r", **common)
    return IssueWarningCard(color=extra[0], reason="r", **common)


def active_on(doc: dict[str, Any], day: date) -> bool:
    """Registered by the end of ``day`` and not revoked or exited by then (business time)."""
    status = None
    for change in sorted(doc["timeline"], key=lambda c: datetime.fromisoformat(c["at"])):
        if local_date(datetime.fromisoformat(change["at"])) > day:
            break
        if change["field"] == "status":
            status = change["value"]
    return status is not None and status not in ("REVOKED", "EXITED")


async def run_sequence(ops: list[tuple[object, ...]], root: Path) -> None:
    store = SQLiteEventStore(root / "events.db")
    reads = SQLiteReadStore(root / "reads.db")
    await store.start()
    registry = Registry(
        store,
        REGIONS,
        POLICY,
        clock=lambda: BASE + timedelta(days=400),
        rectification_overdue=no_rectifications,
    )
    ctx = CommandContext(actor="property")
    try:
        for op in ops:
            try:
                if op[0] == "register":
                    _, slot, region, category, mode, days = op
                    await registry.handle(
                        RegisterInstitution(
                            id=f"i{slot}",
                            name=f"机构{slot}",
                            credit_code=valid_credit_code(str(region), f"MA{slot:07d}"),
                            region=str(region),
                            category=str(category),
                            non_subject_kind=None if category == "SUBJECT" else "SPORTS",
                            mode=str(mode),
                            occurred_at=BASE + timedelta(days=int(str(days))),
                        ),
                        ctx,
                    )
                else:
                    await registry.handle(lifecycle(op), ctx)
            except ShuangjianError:
                pass  # refused by a rule: the property must hold all the same
        runner = ProjectionRunner(
            [InstitutionsProjection(REGIONS, POLICY)], reads, {"registry": store}
        )
        await runner.start()

        docs = await reads.dump(INSTITUTIONS.name)
        rollups = await stored_rollups(reads)
        assert rollups == recount(docs, REGIONS, POLICY)
        # Each level is the sum of the level below it.
        for city in ("640400", "640500", "120100"):
            children = [r.code for r in REGIONS.children(city)]
            for name, value in rollups.get(("region_stats", city), {}).items():
                below = sum(rollups.get(("region_stats", c), {}).get(name, 0) for c in children)
                assert below == value, (city, name)
        for province, cities in (("640000", ("640400", "640500")), ("120000", ("120100",))):
            for name, value in rollups.get(("region_stats", province), {}).items():
                assert value == sum(
                    rollups.get(("region_stats", c), {}).get(name, 0) for c in cities
                )
        # The month buckets summed up to a month give the standing at its end: the
        # institutions active then, and the SUBJECT ones among them, document by document.
        for code in ("640000", "640400", "640402", "120000"):
            prefix = REGIONS.subtree_prefix(code)
            buckets = await all_months(reads, code)
            mine = [d for d in docs if d["region"].startswith(prefix)]
            for first in month_range(
                BASE.date() - timedelta(days=400), BASE.date() + timedelta(days=200)
            ):
                last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
                standing = month_end_counts(totals_through(buckets, first))
                assert standing["subject"] == sum(active_subject_on(d, last) for d in mine)
                assert standing["active"] == sum(active_on(d, last) for d in mine), (code, first)
    finally:
        await store.close()
        await reads.close()


@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(commands)
def test_rollups_always_equal_a_recount(ops: list[tuple[object, ...]]) -> None:
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(run_sequence(ops, Path(root)))
