"""The institution lifecycle and the rules around it, in pure code."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import uuid4

import pytest

from services.common.envelope import Envelope
from services.common.errors import BadInput, Conflict
from services.common.timeutil import SHANGHAI
from services.registry.domain.model import Institution
from services.registry.domain.rules import ListMark, RegistryPolicy, Status
from services.registry.projections import active_subject_on, evolve
from tests.unit.test_registry_rules import POLICY, REGIONS, command, registered

AT = datetime(2021, 9, 1, 9, tzinfo=SHANGHAI)


def types(inst: Institution) -> list[str]:
    return [change.event.TYPE.split(".")[1] for change in inst.collect()]


def approved(**overrides: Any) -> Institution:
    inst = registered(**overrides)
    inst.approve("L-1", AT, POLICY)
    inst.collect()
    return inst


def test_suspend_and_resume() -> None:
    inst = approved()
    inst.suspend("消防隐患 fire exits blocked", AT)
    assert inst.status is Status.SUSPENDED
    with pytest.raises(Conflict, match="suspend needs an institution that is APPROVED"):
        inst.suspend("again", AT)
    inst.resume(AT)
    assert inst.status is Status.APPROVED
    assert types(inst) == ["InstitutionSuspended", "InstitutionResumed"]
    with pytest.raises(Conflict, match="resume needs an institution that is SUSPENDED"):
        inst.resume(AT)


def test_pending_institutions_cannot_be_suspended() -> None:
    with pytest.raises(Conflict, match="APPROVED; i1 is PENDING"):
        registered().suspend("reason", AT)


@pytest.mark.parametrize("final", ["revoke", "exit"])
def test_revoked_and_exited_are_final(final: str) -> None:
    inst = approved()
    getattr(inst, final)("取缔 / 注销", AT)
    assert inst.status in (Status.REVOKED, Status.EXITED)
    for attempt in (
        lambda: inst.approve("L-2", AT, POLICY),
        lambda: inst.resume(AT),
        lambda: inst.suspend("x", AT),
        lambda: inst.revoke("x", AT),
        lambda: inst.exit("x", AT),
        lambda: inst.convert_to_non_profit(AT),
        lambda: inst.reclassify("NON_SUBJECT", "ARTS", AT, POLICY),
        lambda: inst.issue_warning_card("RED", "x", AT, POLICY),
    ):
        with pytest.raises(Conflict, match="a final state"):
            attempt()
    # The public blacklist outlives the institution.
    inst.set_list_mark("BLACKLIST", "取缔后公示", AT)
    assert inst.list_mark is ListMark.BLACKLIST


def test_a_pending_institution_can_be_revoked_or_exit() -> None:
    inst = registered()
    inst.revoke("无证办学", AT)
    assert inst.status is Status.REVOKED


def test_reasons_are_required() -> None:
    with pytest.raises(BadInput) as err:
        approved().suspend("  ", AT)
    assert err.value.field == "reason"


def test_reclassify_changes_category_and_authority() -> None:
    inst = approved()
    inst.reclassify("NON_SUBJECT", "SPORTS", AT, POLICY)
    [change] = inst.collect()
    assert change.event.authority == "SPORTS"  # type: ignore[attr-defined]
    inst.reclassify("NON_SUBJECT", "SPORTS", AT, POLICY)  # nothing new
    assert inst.collect() == []
    with pytest.raises(BadInput, match="needs its kind"):
        inst.reclassify("NON_SUBJECT", None, AT, POLICY)


def test_convert_to_non_profit_once() -> None:
    inst = approved()
    inst.convert_to_non_profit(AT)
    inst.convert_to_non_profit(AT)
    assert types(inst) == ["InstitutionConvertedToNonProfit"]
    assert inst.non_profit


def test_list_mark_with_a_reason_and_no_op_when_unchanged() -> None:
    inst = approved()
    inst.set_list_mark("WHITELIST", "规范办学", AT)
    inst.set_list_mark("WHITELIST", "again", AT)
    assert types(inst) == ["ListMarkSet"]
    with pytest.raises(BadInput) as err:
        inst.set_list_mark("GREYLIST", "x", AT)
    assert err.value.field == "mark"


def test_two_red_cards_recommend_suspension_without_suspending() -> None:
    inst = approved()
    inst.issue_warning_card("YELLOW", "超前超标", AT, POLICY)
    inst.issue_warning_card("RED", "违规收费", AT, POLICY)
    assert types(inst) == ["WarningCardIssued", "WarningCardIssued"]
    inst.issue_warning_card("RED", "再次违规", AT, POLICY)
    assert types(inst) == ["WarningCardIssued", "SuspensionRecommended"]
    assert inst.status is Status.APPROVED  # a recommendation, never a silent state change


def test_red_card_while_a_rectification_is_overdue_recommends_suspension() -> None:
    inst = approved()
    inst.issue_warning_card("RED", "逾期未整改", AT, POLICY, rectification_overdue=True)
    assert types(inst) == ["WarningCardIssued", "SuspensionRecommended"]


def test_escalation_is_configurable() -> None:
    lenient = RegistryPolicy(
        red_cards_for_suspension=0, red_while_overdue_recommends_suspension=False
    )
    inst = approved()
    for _ in range(3):
        inst.issue_warning_card("RED", "x", AT, lenient, rectification_overdue=True)
    assert set(types(inst)) == {"WarningCardIssued"}


def test_compliance_flag_for_profit_subject_after_the_deadline() -> None:
    flags = POLICY.compliance_flags
    assert flags("SUBJECT", False, "APPROVED", date(2022, 1, 1)) == ["FOR_PROFIT_SUBJECT"]
    assert flags("SUBJECT", False, "APPROVED", date(2021, 12, 31)) == []
    assert flags("SUBJECT", True, "APPROVED", date(2022, 1, 1)) == []
    assert flags("NON_SUBJECT", False, "APPROVED", date(2022, 1, 1)) == []
    assert flags("SUBJECT", False, "EXITED", date(2022, 1, 1)) == []


def test_baseline_day_can_differ_per_region() -> None:
    policy = RegistryPolicy(baseline_overrides={"12": date(2021, 9, 1)})
    assert policy.baseline_for("120101") == date(2021, 9, 1)
    assert policy.baseline_for("640402") == date(2021, 7, 24)


# --- business time --------------------------------------------------------------------


def fresh(at: datetime) -> Institution:
    """Registered, with the registration still pending collection."""
    inst = Institution("i1")
    inst.register(command(), at, REGIONS, POLICY)
    return inst


def stamp(event: Any, version: int, occurred: datetime) -> Envelope:
    return Envelope(
        id=uuid4(),
        type=event.TYPE,
        stream="i1",
        version=version,
        region="640402",
        occurred_at=occurred,
        recorded_at=datetime(2026, 1, 1, tzinfo=SHANGHAI),
        data=event.payload(),
    )


def test_baseline_is_judged_by_business_time_whatever_the_arrival_order() -> None:
    """Reclassified in September, but a suspension back-dated to May arrives later."""
    inst = fresh(datetime(2020, 3, 1, tzinfo=SHANGHAI))
    inst.approve("L-1", datetime(2020, 4, 1, tzinfo=SHANGHAI), POLICY)
    inst.reclassify("NON_SUBJECT", "ARTS", datetime(2021, 9, 1, tzinfo=SHANGHAI), POLICY)
    inst.suspend("back-dated", datetime(2021, 5, 1, tzinfo=SHANGHAI))
    doc = None
    for version, change in enumerate(inst.collect(), start=1):
        doc = evolve(doc, stamp(change.event, version, change.occurred_at))
    assert doc is not None
    # On 2021-07-24 it was a (suspended, so still active) SUBJECT institution.
    assert active_subject_on(doc, date(2021, 7, 24))
    assert not active_subject_on(doc, date(2021, 9, 2))
    assert not active_subject_on(doc, date(2020, 2, 1))


def test_exit_back_dated_before_the_baseline_removes_it_from_the_baseline() -> None:
    inst = fresh(datetime(2020, 3, 1, tzinfo=SHANGHAI))
    inst.exit("closed before the policy", datetime(2021, 6, 30, tzinfo=SHANGHAI))
    doc = None
    for version, change in enumerate(inst.collect(), start=1):
        doc = evolve(doc, stamp(change.event, version, change.occurred_at))
    assert doc is not None
    assert not active_subject_on(doc, date(2021, 7, 24))
    assert active_subject_on(doc, date(2021, 6, 29))


def test_nothing_happens_to_an_institution_before_it_was_registered() -> None:
    inst = registered(at=datetime(2021, 3, 1, tzinfo=SHANGHAI))
    with pytest.raises(BadInput, match="before the institution was registered") as err:
        inst.approve("L-1", datetime(2021, 2, 1, tzinfo=SHANGHAI), POLICY)
    assert err.value.field == "occurred_at"
