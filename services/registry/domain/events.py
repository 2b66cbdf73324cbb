"""What happens to an institution, as past-tense facts. Field names are the stored JSON."""

from __future__ import annotations

from services.common.aggregate import DomainEvent, EventTypes
from services.registry.domain.rules import Category, NonSubjectKind, TeachingMode


class InstitutionRegistered(DomainEvent):
    TYPE = "registry.InstitutionRegistered"

    name: str
    credit_code: str
    region: str
    address: str | None
    category: Category
    non_subject_kind: NonSubjectKind | None
    mode: TeachingMode
    non_profit: bool
    authority: str


class InstitutionApproved(DomainEvent):
    """审批准入: the institution received its 办学许可证."""

    TYPE = "registry.InstitutionApproved"

    license_no: str


REGISTRY_EVENTS = EventTypes(InstitutionRegistered, InstitutionApproved)
