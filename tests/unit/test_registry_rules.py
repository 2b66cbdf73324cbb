"""Registry rules in pure code: no store, no bus."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from services.common.errors import BadInput, Conflict, NotFound
from services.common.regions import RegionTree
from services.common.timeutil import SHANGHAI
from services.registry.domain.commands import RegisterInstitution
from services.registry.domain.model import Institution
from services.registry.domain.rules import (
    Category,
    NonSubjectKind,
    RegistryPolicy,
    Status,
    validate_credit_code,
)
from tests.factories import valid_credit_code

REGIONS = RegionTree.load()
POLICY = RegistryPolicy()
BEFORE = datetime(2021, 3, 1, 9, tzinfo=SHANGHAI)
AFTER = datetime(2021, 9, 1, 9, tzinfo=SHANGHAI)


def command(**overrides: object) -> RegisterInstitution:
    fields: dict[str, object] = {
        "name": "启明学科培训学校",
        "credit_code": valid_credit_code(),
        "region": "640402",
        "category": "SUBJECT",
        "mode": "OFFLINE",
    }
    fields.update(overrides)
    return RegisterInstitution(**fields)  # type: ignore[arg-type]


def registered(at: datetime = BEFORE, **overrides: object) -> Institution:
    inst = Institution("i1")
    inst.register(command(**overrides), at, REGIONS, POLICY)
    inst.collect()
    return inst


def test_registering_records_one_event_with_the_authority() -> None:
    inst = Institution("i1")
    inst.register(command(category="NON_SUBJECT", non_subject_kind="ARTS"), BEFORE, REGIONS, POLICY)
    [change] = inst.collect()
    assert change.event.TYPE == "registry.InstitutionRegistered"
    assert change.region == "640402"
    assert change.event.authority == "CULTURE_TOURISM"  # type: ignore[attr-defined]
    assert inst.status is Status.PENDING


def test_authority_follows_jurisdiction_overrides() -> None:
    hunan = RegistryPolicy(authority_overrides={"43": {"ARTS": "EDUCATION", "SPORTS": "EDUCATION"}})
    assert hunan.authority("430102", Category.NON_SUBJECT, NonSubjectKind.ARTS) == "EDUCATION"
    assert hunan.authority("640402", Category.NON_SUBJECT, NonSubjectKind.ARTS) == "CULTURE_TOURISM"
    assert POLICY.authority("640402", Category.SUBJECT, None) == "EDUCATION"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"name": "  "}, "name", "must not be empty"),
        ({"name": "校" * 201}, "name", "at most 200"),
        ({"credit_code": "123"}, "credit_code", "18 characters"),
        ({"credit_code": valid_credit_code()[:-1] + "0"}, "credit_code", "check character"),
        ({"credit_code": "52640402MA000000IO"}, "credit_code", "cannot appear"),
        ({"region": "640400"}, "region", "is a CITY"),
        ({"region": "999999"}, "region", "not a GB/T 2260 code"),
        ({"category": "TUTORING"}, "category", "not one of"),
        ({"mode": "HYBRID"}, "mode", "not one of"),
        ({"non_subject_kind": "ARTS"}, "non_subject_kind", "no nonSubjectKind"),
        ({"category": "NON_SUBJECT"}, "non_subject_kind", "needs its kind"),
    ],
)
def test_bad_registrations_name_the_field(
    overrides: dict[str, object], field: str, message: str
) -> None:
    inst = Institution("i1")
    with pytest.raises(BadInput, match=message) as err:
        inst.register(command(**overrides), BEFORE, REGIONS, POLICY)
    assert err.value.field == field
    assert inst.collect() == []


def test_credit_code_is_normalised() -> None:
    code = valid_credit_code()
    assert validate_credit_code(f" {code.lower()} ") == code


def test_same_registration_again_is_a_no_op_and_different_is_a_conflict() -> None:
    inst = registered()
    inst.register(command(), BEFORE, REGIONS, POLICY)
    assert inst.collect() == []
    with pytest.raises(Conflict, match="different details"):
        inst.register(command(name="另一个名字"), BEFORE, REGIONS, POLICY)


def test_approve_needs_a_registered_pending_institution() -> None:
    with pytest.raises(NotFound):
        Institution("nobody").approve("L-1", BEFORE, POLICY)
    inst = registered(category="NON_SUBJECT", non_subject_kind="SPORTS")
    with pytest.raises(BadInput, match="must not be empty"):
        inst.approve(" ", AFTER, POLICY)
    inst.approve("L-1", AFTER, POLICY)
    assert inst.status is Status.APPROVED
    assert [c.event.TYPE for c in inst.collect()] == ["registry.InstitutionApproved"]
    inst.approve("L-1", AFTER, POLICY)  # the same approval again changes nothing
    assert inst.collect() == []
    with pytest.raises(Conflict, match="approve needs an institution that is PENDING"):
        inst.approve("L-2", AFTER, POLICY)


def test_no_new_subject_approvals_after_the_policy_start() -> None:
    late = registered(at=datetime(2021, 7, 24, 8, tzinfo=SHANGHAI))
    with pytest.raises(Conflict, match="no new SUBJECT institutions"):
        late.approve("L-1", AFTER, POLICY)
    # A district importing history back-dates the registration: approval is allowed.
    early = registered(at=datetime(2021, 7, 23, 23, tzinfo=SHANGHAI))
    early.approve("L-1", AFTER, POLICY)
    assert early.status is Status.APPROVED
    # The cut-off date is configuration.
    later_policy = RegistryPolicy(policy_start=date(2022, 1, 1))
    registered(at=AFTER).approve("L-1", AFTER, later_policy)
