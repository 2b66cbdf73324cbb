"""What happens to an institution, as past-tense facts. Field names are the stored JSON."""

from __future__ import annotations

from collections.abc import Mapping

from services.common.aggregate import DomainEvent, EventTypes
from services.registry.domain.rules import (
    Category,
    ListMark,
    NonSubjectKind,
    Status,
    TeachingMode,
    WarningColor,
)

SERVICE = "registry"  # the prefix of every type below, the store's and the topic's name

CREDIT_CODE_STREAM = "credit-code/"
"""Prefix of the stream that reserves one credit code: ``credit-code/<code>``. An
institution id cannot contain ``/``, so no institution's stream can ever look like it."""


def credit_code_stream(code: str) -> str:
    return CREDIT_CODE_STREAM + code


def is_credit_code_stream(stream: str) -> bool:
    """Is this the reservation of a credit code rather than an institution's stream?"""
    return stream.startswith(CREDIT_CODE_STREAM)


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


class InstitutionConvertedToNonProfit(DomainEvent):
    """营转非."""

    TYPE = "registry.InstitutionConvertedToNonProfit"


class InstitutionReclassified(DomainEvent):
    """转型: a new category, and with it possibly a new supervising authority."""

    TYPE = "registry.InstitutionReclassified"

    category: Category
    non_subject_kind: NonSubjectKind | None
    authority: str


class InstitutionSuspended(DomainEvent):
    """停业整顿."""

    TYPE = "registry.InstitutionSuspended"

    reason: str


class InstitutionResumed(DomainEvent):
    TYPE = "registry.InstitutionResumed"


class InstitutionRevoked(DomainEvent):
    """取缔: final."""

    TYPE = "registry.InstitutionRevoked"

    reason: str


class InstitutionExited(DomainEvent):
    """有序退出 / 注销: final."""

    TYPE = "registry.InstitutionExited"

    reason: str


class ListMarkSet(DomainEvent):
    """Put on (or taken off) the public black or white list."""

    TYPE = "registry.ListMarkSet"

    mark: ListMark
    reason: str


class WarningCardIssued(DomainEvent):
    """红黄牌."""

    TYPE = "registry.WarningCardIssued"

    color: WarningColor
    reason: str


class SuspensionRecommended(DomainEvent):
    """The warning rules recommend 停业整顿; an officer decides. Never a state change."""

    TYPE = "registry.SuspensionRecommended"

    reason: str


class CreditCodeReserved(DomainEvent):
    """A 统一社会信用代码 is claimed for an institution, in the code's own stream.

    Written before the institution's registration and carrying it, so that a crash
    between the two commits leaves a claim anyone can finish (see ``CreditCode``).
    """

    TYPE = "registry.CreditCodeReserved"

    institution_id: str
    registration: InstitutionRegistered


REGISTRY_EVENTS = EventTypes(
    InstitutionRegistered,
    InstitutionApproved,
    InstitutionConvertedToNonProfit,
    InstitutionReclassified,
    InstitutionSuspended,
    InstitutionResumed,
    InstitutionRevoked,
    InstitutionExited,
    ListMarkSet,
    WarningCardIssued,
    SuspensionRecommended,
    CreditCodeReserved,
)

# The status each lifecycle event leads to: the aggregate and the read model both apply
# this table, so "resumed means APPROVED again" is written once.
STATUS_AFTER: Mapping[type[DomainEvent], Status] = {
    InstitutionRegistered: Status.PENDING,
    InstitutionApproved: Status.APPROVED,
    InstitutionSuspended: Status.SUSPENDED,
    InstitutionResumed: Status.APPROVED,
    InstitutionRevoked: Status.REVOKED,
    InstitutionExited: Status.EXITED,
}
