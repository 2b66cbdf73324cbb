"""The Institution aggregate: registration and lifecycle, every rule checked here."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from functools import singledispatchmethod
from typing import TypeVar

from services.common.aggregate import Aggregate, DomainEvent
from services.common.errors import BadInput, Conflict, NotFound
from services.common.regions import RegionTree
from services.common.timeutil import local_date
from services.registry.domain.commands import RegisterInstitution
from services.registry.domain.events import InstitutionApproved, InstitutionRegistered
from services.registry.domain.rules import (
    TERMINAL,
    Category,
    NonSubjectKind,
    RegistryPolicy,
    Status,
    TeachingMode,
    validate_credit_code,
)

NAME_MAX = 200
ADDRESS_MAX = 500
LICENSE_MAX = 64


class Institution(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.registration: InstitutionRegistered | None = None
        self.registered_at: datetime | None = None
        self.status: Status | None = None
        self.license_no: str | None = None

    # --- decisions -------------------------------------------------------------------

    def register(
        self,
        cmd: RegisterInstitution,
        at: datetime,
        regions: RegionTree,
        policy: RegistryPolicy,
    ) -> None:
        event = registration_event(cmd, regions, policy)
        if self.registration is not None:
            if self.registration == event:
                return  # the same registration sent again: nothing to do
            raise Conflict(
                f"institution {self.id} is already registered with different details",
                field="id",
            )
        self.region = event.region
        self._record(event, at)

    def approve(self, license_no: str, at: datetime, policy: RegistryPolicy) -> None:
        reg = self._require_registered()
        license_no = _text(license_no, "license_no", LICENSE_MAX)
        if self.status is Status.APPROVED and self.license_no == license_no:
            return
        if self.status is not Status.PENDING:
            raise Conflict(
                f"only a PENDING institution can be approved; {self.id} is {self.status}",
                field="id",
            )
        assert self.registered_at is not None
        if reg.category is Category.SUBJECT and local_date(self.registered_at) >= (
            policy.policy_start
        ):
            raise Conflict(
                "no new SUBJECT institutions are approved after "
                f"{policy.policy_start.isoformat()} (双减 opinion); this one was registered on "
                f"{local_date(self.registered_at).isoformat()}",
                field="id",
            )
        self._record(InstitutionApproved(license_no=license_no), at)

    def _require_registered(self) -> InstitutionRegistered:
        if self.registration is None:
            raise NotFound(f"no institution with id {self.id}", field="id")
        if self.status in TERMINAL:
            raise Conflict(f"institution {self.id} is {self.status}: a final state", field="id")
        return self.registration

    # --- state -----------------------------------------------------------------------

    @singledispatchmethod
    def when(self, event: DomainEvent, at: datetime) -> None:
        super().when(event, at)

    @when.register
    def _(self, event: InstitutionRegistered, at: datetime) -> None:
        self.registration = event
        self.registered_at = at
        self.region = event.region
        self.status = Status.PENDING

    @when.register
    def _(self, event: InstitutionApproved, at: datetime) -> None:
        self.status = Status.APPROVED
        self.license_no = event.license_no


def registration_event(
    cmd: RegisterInstitution, regions: RegionTree, policy: RegistryPolicy
) -> InstitutionRegistered:
    """Check a registration field by field and turn it into the fact to record."""
    name = _text(cmd.name, "name", NAME_MAX)
    credit_code = validate_credit_code(cmd.credit_code, "credit_code")
    region = regions.require_district(cmd.region, "region").code
    address = _text(cmd.address, "address", ADDRESS_MAX) if cmd.address else None
    category = _choice(Category, cmd.category, "category")
    mode = _choice(TeachingMode, cmd.mode, "mode")
    kind = _optional_choice(NonSubjectKind, cmd.non_subject_kind, "non_subject_kind")
    if category is Category.SUBJECT and kind is not None:
        raise BadInput("a SUBJECT institution has no nonSubjectKind", field="non_subject_kind")
    if category is Category.NON_SUBJECT and kind is None:
        raise BadInput(
            "a NON_SUBJECT institution needs its kind (SPORTS, ARTS, …)", field="non_subject_kind"
        )
    return InstitutionRegistered(
        name=name,
        credit_code=credit_code,
        region=region,
        address=address,
        category=category,
        non_subject_kind=kind,
        mode=mode,
        non_profit=cmd.non_profit,
        authority=policy.authority(region, category, kind),
    )


def _text(value: str | None, field: str, limit: int) -> str:
    text = (value or "").strip()
    if not text:
        raise BadInput(f"{field} must not be empty", field=field)
    if len(text) > limit:
        raise BadInput(f"{field} is {len(text)} characters; at most {limit}", field=field)
    return text


E = TypeVar("E", bound=StrEnum)


def _optional_choice(enum_type: type[E], value: str | None, field: str) -> E | None:
    return None if value is None else _choice(enum_type, value, field)


def _choice(enum_type: type[E], value: str, field: str) -> E:
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum_type)
        raise BadInput(f"{value!r} is not one of {allowed}", field=field) from None
