"""Inspection rules in pure code: batches, rectification orders, complaints, penalties."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.common.aggregate import Aggregate, Change, DomainEvent
from services.common.errors import BadInput, Conflict, NotFound
from services.common.regions import RegionTree
from services.common.timeutil import SHANGHAI
from services.inspections.domain.commands import (
    FileComplaint,
    FindingInput,
    RecordInspection,
    RecordLawTalk,
    RecordPenalty,
    VisitInput,
)
from services.inspections.domain.events import (
    ComplaintFiled,
    ComplaintResolved,
    InspectionRecorded,
    LawTalkRecorded,
    PenaltyImposed,
    RectificationSubmitted,
    RectificationVerified,
)
from services.inspections.domain.model import (
    Complaint,
    Inspection,
    Institutions,
    KnownInstitution,
    LawTalk,
    Penalty,
)
from services.inspections.domain.rules import (
    ComplaintChannel,
    FindingType,
    InspectionKind,
    InspectionPolicy,
    RectificationStatus,
)

REGIONS = RegionTree.load()
POLICY = InspectionPolicy()
DISTRICT = "340103"
NEIGHBOUR = "340102"
START = datetime(2024, 3, 1, 9, 30, tzinfo=SHANGHAI)
LATER = START + timedelta(days=3)
INSTITUTIONS: dict[str, KnownInstitution | None] = {
    "inst-a": KnownInstitution("inst-a", DISTRICT),
    "inst-b": KnownInstitution("inst-b", DISTRICT),
    "inst-far": KnownInstitution("inst-far", NEIGHBOUR),
    "inst-ghost": None,
}


def finding(type: str = "FIRE_SAFETY", description: str = "灭火器过期") -> FindingInput:
    return FindingInput(type=type, description=description)


def visit(
    institution_id: str | None = "inst-a",
    venue: str | None = None,
    findings: list[FindingInput] | None = None,
) -> VisitInput:
    return VisitInput(institution_id=institution_id, venue=venue, findings=findings or [])


def batch(**overrides: Any) -> RecordInspection:
    fields: dict[str, Any] = {
        "id": "insp-1",
        "region": DISTRICT,
        "kind": "NIGHT",
        "started_at": START,
        "personnel": 12,
        "departments": ["教育局", "市场监管局"],
        "visits": [
            visit("inst-a", findings=[finding(), finding("FEES", "超前收费")]),
            visit("inst-b"),
            visit(
                None, venue="幸福小区3栋201", findings=[finding("HIDDEN_TRAINING", "住宅内补课")]
            ),
        ],
    }
    fields.update(overrides)
    return RecordInspection(**fields)


def record(
    cmd: RecordInspection | None = None,
    at: datetime = START,
    policy: InspectionPolicy = POLICY,
    institutions: Institutions = INSTITUTIONS,
) -> tuple[Inspection, list[Change]]:
    inspection = Inspection("insp-1")
    inspection.record(cmd or batch(), at, REGIONS, institutions, policy)
    return inspection, inspection.collect()


def recorded_event(cmd: RecordInspection | None = None, at: datetime = START) -> InspectionRecorded:
    [change] = record(cmd, at)[1]
    assert isinstance(change.event, InspectionRecorded)
    return change.event


def replayed(changes: list[Change]) -> Inspection:
    return Inspection("insp-1").replay([(c.event, c.occurred_at) for c in changes])


def refused_batch(cmd: RecordInspection, policy: InspectionPolicy = POLICY) -> BadInput:
    inspection = Inspection("insp-1")
    with pytest.raises(BadInput) as refused:
        inspection.record(cmd, START, REGIONS, INSTITUTIONS, policy)
    assert inspection.collect() == []
    assert not inspection.exists
    return refused.value


# --- recording a batch -------------------------------------------------------------------


def test_a_batch_is_one_event_in_its_district_with_orders_for_visits_with_findings() -> None:
    _, changes = record()
    [change] = changes
    event = change.event
    assert isinstance(event, InspectionRecorded)
    assert change.region == DISTRICT
    assert event.region == DISTRICT
    assert event.kind is InspectionKind.NIGHT
    assert event.personnel == 12
    assert event.departments == ("教育局", "市场监管局")
    assert [v.rectification for v in event.visits] == ["insp-1~1", None, "insp-1~2"]
    assert [v.institution_id for v in event.visits] == ["inst-a", "inst-b", None]
    assert event.visits[2].venue == "幸福小区3栋201"
    assert [f.type for f in event.visits[0].findings] == [
        FindingType.FIRE_SAFETY,
        FindingType.FEES,
    ]
    assert event.visits[1].findings == ()
    assert event.deadline == date(2024, 3, 31)


def test_orders_are_numbered_over_visits_with_findings_only() -> None:
    event = recorded_event(
        batch(visits=[visit("inst-a"), visit("inst-b", findings=[finding()]), visit("inst-a")])
    )
    assert [v.rectification for v in event.visits] == [None, "insp-1~1", None]


def test_every_order_of_a_batch_starts_open() -> None:
    inspection, _ = record()
    assert set(inspection.orders) == {"insp-1~1", "insp-1~2"}
    assert {o.status for o in inspection.orders.values()} == {RectificationStatus.OPEN}
    assert inspection.orders["insp-1~2"].institution_id is None


def test_an_explicit_rectification_period_sets_the_deadline() -> None:
    assert recorded_event(batch(rectify_within_days=7)).deadline == date(2024, 3, 8)


def test_the_deadline_counts_from_the_start_date_in_china() -> None:
    late_evening = datetime(2024, 3, 1, 23, 30, tzinfo=SHANGHAI)
    assert recorded_event(batch(rectify_within_days=7), late_evening).deadline == date(2024, 3, 8)
    just_after_midnight_as_utc = datetime(2024, 3, 1, 16, 30, tzinfo=UTC)
    event = recorded_event(batch(rectify_within_days=7), just_after_midnight_as_utc)
    assert event.deadline == date(2024, 3, 9)


def test_a_jurisdiction_may_change_the_default_rectification_period() -> None:
    [change] = record(policy=InspectionPolicy(rectify_within_days=15))[1]
    assert isinstance(change.event, InspectionRecorded)
    assert change.event.deadline == date(2024, 3, 16)


# --- refused batches ---------------------------------------------------------------------


def test_an_unregistered_institution_is_refused_at_its_visit() -> None:
    error = refused_batch(batch(visits=[visit("inst-a"), visit("inst-ghost")]))
    assert error.field == "visits[1].institution_id"


def test_an_institution_missing_from_the_lookup_is_refused() -> None:
    error = refused_batch(batch(visits=[visit("inst-unseen")]))
    assert error.field == "visits[0].institution_id"


def test_an_institution_of_another_district_is_refused_naming_both_districts() -> None:
    error = refused_batch(batch(visits=[visit("inst-far"), visit("inst-a")]))
    assert error.field == "visits[0].institution_id"
    assert NEIGHBOUR in error.message
    assert DISTRICT in error.message


@pytest.mark.parametrize(
    ("given", "field"),
    [
        (visit("inst-a", venue="小区会所"), "visits[0].venue"),
        (visit(None), "visits[0].institution_id"),
        (visit(None, venue="   "), "visits[0].venue"),
    ],
    ids=["both", "neither", "blank-venue"],
)
def test_a_visit_names_exactly_one_institution_or_venue(given: VisitInput, field: str) -> None:
    assert refused_batch(batch(visits=[given])).field == field


@pytest.mark.parametrize("personnel", [0, POLICY.max_personnel + 1])
def test_personnel_out_of_range_is_refused(personnel: int) -> None:
    assert refused_batch(batch(personnel=personnel)).field == "personnel"


def test_personnel_at_the_bounds_is_accepted() -> None:
    assert recorded_event(batch(personnel=1)).personnel == 1
    assert recorded_event(batch(personnel=POLICY.max_personnel)).personnel == POLICY.max_personnel


@pytest.mark.parametrize("days", [0, 366])
def test_a_rectification_period_out_of_range_is_refused(days: int) -> None:
    assert refused_batch(batch(rectify_within_days=days)).field == "rectify_within_days"


def test_a_rectification_period_of_a_year_is_accepted() -> None:
    assert recorded_event(batch(rectify_within_days=365)).deadline == date(2025, 3, 1)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"visits": []}, "visits"),
        ({"kind": "WEEKLY"}, "kind"),
        ({"visits": [visit(findings=[finding("NOISE")])]}, "visits[0].findings[0].type"),
        (
            {"visits": [visit(findings=[finding(description="门\x07锁")])]},
            "visits[0].findings[0].description",
        ),
        ({"region": "340100"}, "region"),
        ({"departments": [f"部门{n}" for n in range(POLICY.max_departments + 1)]}, "departments"),
    ],
    ids=["no-visits", "kind", "finding-type", "control-character", "city", "departments"],
)
def test_a_malformed_batch_is_refused_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    assert refused_batch(batch(**overrides)).field == field


def test_a_later_bad_visit_refuses_the_whole_batch() -> None:
    error = refused_batch(batch(visits=[visit("inst-a", findings=[finding()]), visit(None)]))
    assert error.field == "visits[1].institution_id"


def test_the_policy_limits_what_a_batch_may_say() -> None:
    strict = InspectionPolicy(max_personnel=12, max_visits=1, max_findings_per_visit=1)
    assert refused_batch(batch(personnel=13), strict).field == "personnel"
    assert refused_batch(batch(), strict).field == "visits"
    two_findings = batch(visits=[visit(findings=[finding(), finding()])])
    assert refused_batch(two_findings, strict).field == "visits[0].findings"


# --- the same batch again ----------------------------------------------------------------


def test_recording_the_same_batch_again_changes_nothing() -> None:
    inspection, _ = record()
    inspection.record(batch(), START, REGIONS, INSTITUTIONS, POLICY)
    assert inspection.collect() == []
    assert inspection.version == 1


def test_recording_the_same_batch_on_the_stored_one_changes_nothing() -> None:
    inspection = replayed(record()[1])
    inspection.record(batch(), START, REGIONS, INSTITUTIONS, POLICY)
    assert inspection.collect() == []


@pytest.mark.parametrize(
    ("cmd", "at"),
    [(batch(personnel=13), START), (batch(), START + timedelta(hours=1))],
    ids=["other-details", "other-time"],
)
def test_another_batch_under_a_used_id_is_a_conflict(cmd: RecordInspection, at: datetime) -> None:
    inspection = replayed(record()[1])
    with pytest.raises(Conflict) as conflict:
        inspection.record(cmd, at, REGIONS, INSTITUTIONS, POLICY)
    assert conflict.value.field == "id"
    assert inspection.collect() == []


# --- rectification orders ----------------------------------------------------------------


def stored() -> Inspection:
    return replayed(record()[1])


def only(aggregate: Aggregate) -> DomainEvent:
    [change] = aggregate.collect()
    return change.event


def test_submitting_an_open_order_makes_it_submitted() -> None:
    inspection = stored()
    inspection.submit("insp-1~1", "已更换灭火器", LATER)
    event = only(inspection)
    assert isinstance(event, RectificationSubmitted)
    assert (event.rectification, event.institution_id, event.note) == (
        "insp-1~1",
        "inst-a",
        "已更换灭火器",
    )
    assert inspection.orders["insp-1~1"].status is RectificationStatus.SUBMITTED
    assert inspection.orders["insp-1~2"].status is RectificationStatus.OPEN


def test_a_passed_verification_closes_the_order() -> None:
    inspection = stored()
    inspection.submit("insp-1~1", "fixed", LATER)
    inspection.verify("insp-1~1", True, "复查合格", LATER)
    events = [c.event for c in inspection.collect()]
    assert isinstance(events[1], RectificationVerified)
    assert (events[1].passed, events[1].failures, events[1].institution_id) == (True, 0, "inst-a")
    assert inspection.orders["insp-1~1"].status is RectificationStatus.CLOSED


def test_failed_verifications_reopen_the_order_and_are_counted() -> None:
    inspection = stored()
    inspection.submit("insp-1~1", "fixed", LATER)
    inspection.collect()
    inspection.verify("insp-1~1", False, "仍有过期灭火器", LATER)
    first = only(inspection)
    assert isinstance(first, RectificationVerified)
    assert (first.passed, first.failures) == (False, 1)
    assert inspection.orders["insp-1~1"].status is RectificationStatus.OPEN

    inspection.submit("insp-1~1", "fixed, really", LATER + timedelta(days=1))
    inspection.verify("insp-1~1", False, None, LATER + timedelta(days=2))
    second = inspection.collect()[-1].event
    assert isinstance(second, RectificationVerified)
    assert (second.passed, second.failures, second.note) == (False, 2, None)


def test_the_failure_count_survives_a_replay() -> None:
    inspection = stored()
    inspection.submit("insp-1~1", "fixed", LATER)
    inspection.verify("insp-1~1", False, None, LATER)
    reloaded = replayed(record()[1] + inspection.collect())
    reloaded.submit("insp-1~1", "fixed again", LATER)
    reloaded.verify("insp-1~1", True, None, LATER)
    passed = reloaded.collect()[-1].event
    assert isinstance(passed, RectificationVerified)
    assert (passed.passed, passed.failures) == (True, 1)


def test_a_venue_order_carries_no_institution() -> None:
    inspection = stored()
    inspection.submit("insp-1~2", "已停止补课", LATER)
    inspection.verify("insp-1~2", True, None, LATER)
    submitted, verified = (c.event for c in inspection.collect())
    assert isinstance(submitted, RectificationSubmitted)
    assert isinstance(verified, RectificationVerified)
    assert (submitted.institution_id, verified.institution_id) == (None, None)


def test_submitting_the_same_report_again_changes_nothing() -> None:
    inspection = stored()
    inspection.submit("insp-1~1", "fixed", LATER)
    inspection.collect()
    inspection.submit("insp-1~1", "fixed", LATER + timedelta(hours=1))
    assert inspection.collect() == []


def test_submitting_another_report_on_a_submitted_order_is_a_conflict() -> None:
    inspection = stored()
    inspection.submit("insp-1~1", "fixed", LATER)
    inspection.collect()
    with pytest.raises(Conflict) as conflict:
        inspection.submit("insp-1~1", "something else", LATER)
    assert conflict.value.field == "id"
    assert inspection.collect() == []


def test_the_same_passed_verification_sent_again_changes_nothing() -> None:
    inspection = stored()
    inspection.submit("insp-1~1", "fixed", LATER)
    inspection.verify("insp-1~1", True, "复查合格", LATER)
    inspection.collect()
    inspection.verify("insp-1~1", True, "复查合格", LATER + timedelta(hours=1))
    assert inspection.collect() == []
    with pytest.raises(Conflict):  # a failed one after it contradicts what is recorded
        inspection.verify("insp-1~1", False, None, LATER + timedelta(hours=1))


def test_a_verification_cannot_come_before_the_report() -> None:
    inspection = stored()
    inspection.submit("insp-1~1", "fixed", LATER)
    inspection.collect()
    with pytest.raises(BadInput) as refused:
        inspection.verify("insp-1~1", True, None, LATER - timedelta(minutes=1))
    assert refused.value.field == "occurred_at"
    assert inspection.collect() == []


def test_an_open_order_cannot_be_verified() -> None:
    inspection = stored()
    with pytest.raises(Conflict):
        inspection.verify("insp-1~1", True, None, LATER)
    assert inspection.collect() == []


def test_a_closed_order_cannot_be_submitted_again() -> None:
    inspection = stored()
    inspection.submit("insp-1~1", "fixed", LATER)
    inspection.verify("insp-1~1", True, None, LATER)
    inspection.collect()
    with pytest.raises(Conflict):
        inspection.submit("insp-1~1", "fixed", LATER)
    assert inspection.collect() == []


def test_an_order_the_batch_did_not_open_is_not_found() -> None:
    inspection = stored()
    with pytest.raises(NotFound) as missing:
        inspection.submit("insp-1~9", "fixed", LATER)
    assert missing.value.field == "id"
    with pytest.raises(NotFound):
        inspection.verify("insp-1~3", True, None, LATER)


def test_an_order_of_an_unrecorded_batch_is_not_found() -> None:
    with pytest.raises(NotFound):
        Inspection("insp-1").submit("insp-1~1", "fixed", LATER)


@pytest.mark.parametrize("action", ["submit", "verify"])
def test_an_order_cannot_move_before_its_batch_started(action: str) -> None:
    inspection = stored()
    if action == "verify":
        inspection.submit("insp-1~1", "fixed", LATER)
        inspection.collect()
    before = START - timedelta(minutes=1)
    with pytest.raises(BadInput) as refused:
        if action == "submit":
            inspection.submit("insp-1~1", "fixed", before)
        else:
            inspection.verify("insp-1~1", True, None, before)
    assert refused.value.field == "occurred_at"
    assert inspection.collect() == []


def test_a_blank_report_is_refused() -> None:
    inspection = stored()
    with pytest.raises(BadInput) as refused:
        inspection.submit("insp-1~1", "  ", LATER)
    assert refused.value.field == "note"


# --- ids are unique within the service ---------------------------------------------------


def test_a_complaint_cannot_reuse_an_inspections_id() -> None:
    [change] = record()[1]
    with pytest.raises(Conflict) as conflict:
        Complaint("insp-1").replay([(change.event, change.occurred_at)])
    assert conflict.value.field == "id"


def test_an_inspection_cannot_reuse_a_complaints_id() -> None:
    complaint = Complaint("c-1")
    complaint.file(filing(), START, REGIONS, INSTITUTIONS)
    [change] = complaint.collect()
    with pytest.raises(Conflict) as conflict:
        Inspection("c-1").replay([(change.event, change.occurred_at)])
    assert conflict.value.field == "id"


# --- complaints --------------------------------------------------------------------------


def filing(**overrides: Any) -> FileComplaint:
    fields: dict[str, Any] = {
        "id": "c-1",
        "region": DISTRICT,
        "channel": "HOTLINE_12345",
        "institution_id": "inst-a",
        "text": "周末仍在上数学课",
    }
    fields.update(overrides)
    return FileComplaint(**fields)


def filed_event() -> ComplaintFiled:
    complaint = Complaint("c-1")
    complaint.file(filing(), START, REGIONS, INSTITUTIONS)
    event = complaint.collect()[0].event
    assert isinstance(event, ComplaintFiled)
    return event


def filed() -> Complaint:
    return Complaint("c-1").replay([(filed_event(), START)])


def test_a_complaint_is_filed_about_an_institution_of_the_district() -> None:
    complaint = Complaint("c-1")
    complaint.file(filing(), START, REGIONS, INSTITUTIONS)
    [change] = complaint.collect()
    event = change.event
    assert isinstance(event, ComplaintFiled)
    assert (event.region, event.channel, event.institution_id) == (
        DISTRICT,
        ComplaintChannel.HOTLINE_12345,
        "inst-a",
    )
    assert change.region == DISTRICT


def test_a_complaint_need_not_name_an_institution() -> None:
    complaint = Complaint("c-1")
    complaint.file(filing(institution_id=None), START, REGIONS, INSTITUTIONS)
    event = only(complaint)
    assert isinstance(event, ComplaintFiled)
    assert event.institution_id is None


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"channel": "WECHAT"}, "channel"),
        ({"institution_id": "inst-far"}, "institution_id"),
        ({"institution_id": "inst-ghost"}, "institution_id"),
        ({"text": " "}, "text"),
    ],
    ids=["channel", "other-district", "unregistered", "blank-text"],
)
def test_a_malformed_complaint_is_refused(overrides: dict[str, Any], field: str) -> None:
    complaint = Complaint("c-1")
    with pytest.raises(BadInput) as refused:
        complaint.file(filing(**overrides), START, REGIONS, INSTITUTIONS)
    assert refused.value.field == field
    assert complaint.collect() == []


def test_resolving_a_complaint_carries_its_institution() -> None:
    complaint = filed()
    complaint.resolve(True, "查实，已立案", LATER)
    event = only(complaint)
    assert isinstance(event, ComplaintResolved)
    assert (event.institution_id, event.substantiated, event.note) == (
        "inst-a",
        True,
        "查实，已立案",
    )


def test_resolving_again_identically_changes_nothing_and_differently_conflicts() -> None:
    complaint = filed()
    complaint.resolve(True, "查实", LATER)
    stored_again = Complaint("c-1").replay(
        [(filed_event(), START), *((c.event, c.occurred_at) for c in complaint.collect())]
    )
    stored_again.resolve(True, "查实", LATER + timedelta(days=1))
    assert stored_again.collect() == []
    with pytest.raises(Conflict) as conflict:
        stored_again.resolve(False, "查实", LATER)
    assert conflict.value.field == "id"
    with pytest.raises(Conflict):
        stored_again.resolve(True, "另有结论", LATER)


def test_a_complaint_cannot_be_resolved_before_it_was_received() -> None:
    complaint = filed()
    with pytest.raises(BadInput) as refused:
        complaint.resolve(False, "不属实", START - timedelta(seconds=1))
    assert refused.value.field == "occurred_at"
    assert complaint.collect() == []


def test_an_unfiled_complaint_cannot_be_resolved() -> None:
    with pytest.raises(NotFound):
        Complaint("c-404").resolve(True, "查实", LATER)


def test_filing_the_same_complaint_again_changes_nothing() -> None:
    complaint = filed()
    complaint.file(filing(), START, REGIONS, INSTITUTIONS)
    assert complaint.collect() == []


# --- law talks ---------------------------------------------------------------------------


def talk(persons: int) -> RecordLawTalk:
    return RecordLawTalk(id="t-1", region=DISTRICT, institution_id="inst-b", persons=persons)


def test_a_law_talk_records_its_persons() -> None:
    law_talk = LawTalk("t-1")
    law_talk.record(talk(42), START, REGIONS, INSTITUTIONS)
    event = only(law_talk)
    assert isinstance(event, LawTalkRecorded)
    assert (event.persons, event.institution_id, event.region) == (42, "inst-b", DISTRICT)


@pytest.mark.parametrize("persons", [0, 10_001])
def test_a_law_talk_with_persons_out_of_range_is_refused(persons: int) -> None:
    law_talk = LawTalk("t-1")
    with pytest.raises(BadInput) as refused:
        law_talk.record(talk(persons), START, REGIONS, INSTITUTIONS)
    assert refused.value.field == "persons"
    assert law_talk.collect() == []


# --- penalties (教育部令第53号) -------------------------------------------------------------


def penalty(**overrides: Any) -> RecordPenalty:
    fields: dict[str, Any] = {
        "id": "p-1",
        "region": DISTRICT,
        "institution_id": "inst-a",
        "article": "ARTICLE_17",
        "kind": "FINE",
        "fine": Decimal("30000"),
        "illegal_gains": Decimal("10000"),
        "reason": "未经审批开展校外培训，庐教罚〔2024〕1号",
    }
    fields.update(overrides)
    return RecordPenalty(**fields)


def impose(**overrides: Any) -> PenaltyImposed:
    decision = Penalty("p-1")
    decision.impose(penalty(**overrides), START, REGIONS, INSTITUTIONS, POLICY)
    [change] = decision.collect()
    assert isinstance(change.event, PenaltyImposed)
    return change.event


def refused_penalty(**overrides: Any) -> BadInput:
    decision = Penalty("p-1")
    with pytest.raises(BadInput) as refused:
        decision.impose(penalty(**overrides), START, REGIONS, INSTITUTIONS, POLICY)
    assert decision.collect() == []
    return refused.value


@pytest.mark.parametrize("fine", ["10000", "50000", "10000.00"])
def test_article_17_fines_one_to_five_times_the_illegal_gains(fine: str) -> None:
    event = impose(fine=Decimal(fine))
    assert event.fine_fen == int(Decimal(fine) * 100)
    assert event.illegal_gains_fen == 1_000_000


@pytest.mark.parametrize("fine", ["9999.99", "50000.01"])
def test_article_17_refuses_a_fine_outside_its_range(fine: str) -> None:
    error = refused_penalty(fine=Decimal(fine))
    assert error.field == "fine"
    assert "Article 17" in error.message


def test_article_17_fine_needs_the_illegal_gains() -> None:
    assert refused_penalty(illegal_gains=None).field == "illegal_gains"
    assert refused_penalty(illegal_gains=Decimal(0)).field == "illegal_gains"


def article_18(circumstance: str, fine: str) -> dict[str, Any]:
    return {
        "article": "ARTICLE_18",
        "circumstance": circumstance,
        "fine": Decimal(fine),
        "illegal_gains": None,
    }


@pytest.mark.parametrize(
    ("circumstance", "fine"),
    [
        ("SERIOUS", "0.01"),
        ("SERIOUS", "50000"),
        ("ESPECIALLY_SERIOUS", "50000"),
        ("ESPECIALLY_SERIOUS", "100000"),
    ],
)
def test_article_18_fines_within_its_ranges(circumstance: str, fine: str) -> None:
    assert impose(**article_18(circumstance, fine)).fine_fen == int(Decimal(fine) * 100)


@pytest.mark.parametrize(
    ("circumstance", "fine"),
    [
        ("SERIOUS", "50000.01"),
        ("ESPECIALLY_SERIOUS", "49999.99"),
        ("ESPECIALLY_SERIOUS", "100000.01"),
    ],
)
def test_article_18_refuses_fines_outside_its_ranges(circumstance: str, fine: str) -> None:
    error = refused_penalty(**article_18(circumstance, fine))
    assert error.field == "fine"
    assert "Article 18" in error.message


def test_article_18_does_not_fine_an_ordinary_case() -> None:
    assert refused_penalty(**article_18("ORDINARY", "1000")).field == "circumstance"


def test_article_18_ordinary_case_gets_a_warning() -> None:
    event = impose(article="ARTICLE_18", kind="WARNING", fine=None, illegal_gains=None)
    assert (event.fine_fen, event.illegal_gains_fen) == (0, None)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"fine": None}, "fine"),
        ({"kind": "WARNING", "fine": Decimal("100")}, "fine"),
        ({"fine": Decimal("20000.005")}, "fine"),
        ({"fine": Decimal("-1")}, "fine"),
        ({"illegal_gains": Decimal("-0.01")}, "illegal_gains"),
        ({"kind": "CONFISCATION", "fine": None, "illegal_gains": None}, "illegal_gains"),
        ({"article": "ARTICLE_99"}, "article"),
        ({"kind": "JAIL"}, "kind"),
        ({"circumstance": "MILD"}, "circumstance"),
        ({"institution_id": "inst-far"}, "institution_id"),
        ({"institution_id": None}, "institution_id"),
    ],
    ids=[
        "fine-without-amount",
        "warning-with-amount",
        "three-decimals",
        "negative-fine",
        "negative-gains",
        "confiscation-without-gains",
        "article",
        "kind",
        "circumstance",
        "other-district",
        "nobody",
    ],
)
def test_a_malformed_penalty_is_refused(overrides: dict[str, Any], field: str) -> None:
    assert refused_penalty(**overrides).field == field


def test_a_fine_above_the_national_maximum_is_refused() -> None:
    error = refused_penalty(article="OTHER", fine=Decimal("10000000.01"), illegal_gains=None)
    assert error.field == "fine"


def test_confiscation_records_the_illegal_gains() -> None:
    event = impose(kind="CONFISCATION", fine=None, illegal_gains=Decimal("12345.67"))
    assert (event.fine_fen, event.illegal_gains_fen) == (0, 1_234_567)


def test_a_penalty_may_name_a_venue_instead_of_an_institution() -> None:
    event = impose(
        institution_id=None, venue="某咖啡馆", **article_18("ESPECIALLY_SERIOUS", "50000.00")
    )
    assert (event.institution_id, event.venue) == (None, "某咖啡馆")
    assert event.fine_fen == 5_000_000
    assert event.illegal_gains_fen is None


def test_imposing_the_same_penalty_again_changes_nothing_and_another_conflicts() -> None:
    decision = Penalty("p-1")
    decision.impose(penalty(), START, REGIONS, INSTITUTIONS, POLICY)
    decision.impose(penalty(), START, REGIONS, INSTITUTIONS, POLICY)
    assert len(decision.collect()) == 1
    with pytest.raises(Conflict) as conflict:
        decision.impose(penalty(fine=Decimal("40000")), START, REGIONS, INSTITUTIONS, POLICY)
    assert conflict.value.field == "id"
