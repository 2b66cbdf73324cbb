"""Commands to the register: what a caller asks for, before any rule is checked.

Each is a ``Command`` (an optional ``id`` and a business time ``occurred_at``) with its own
fields; their descriptions are what the HTTP API documents.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.commands import Command, described


@dataclass(frozen=True, kw_only=True)
class RegistryCommand(Command):
    """A command about one institution (``id``)."""


@dataclass(frozen=True, kw_only=True)
class RegisterInstitution(RegistryCommand):
    name: str
    credit_code: str = described("统一社会信用代码 (GB 32100), 18 characters.")
    region: str = described("6-digit district code.")
    category: str = described("SUBJECT or NON_SUBJECT")
    mode: str = described("OFFLINE or ONLINE")
    address: str | None = None
    non_subject_kind: str | None = described(
        "SPORTS, ARTS, SCIENCE_TECH, COMPREHENSIVE_PRACTICE or OTHER", None
    )
    non_profit: bool = False


@dataclass(frozen=True, kw_only=True)
class ApproveInstitution(RegistryCommand):
    license_no: str = described("办学许可证 number.")


@dataclass(frozen=True, kw_only=True)
class ConvertToNonProfit(RegistryCommand):
    pass


@dataclass(frozen=True, kw_only=True)
class ReclassifyInstitution(RegistryCommand):
    category: str = described("SUBJECT or NON_SUBJECT")
    non_subject_kind: str | None = None


@dataclass(frozen=True, kw_only=True)
class SuspendInstitution(RegistryCommand):
    reason: str


@dataclass(frozen=True, kw_only=True)
class ResumeInstitution(RegistryCommand):
    pass


@dataclass(frozen=True, kw_only=True)
class RevokeInstitution(RegistryCommand):
    reason: str


@dataclass(frozen=True, kw_only=True)
class ExitInstitution(RegistryCommand):
    reason: str


@dataclass(frozen=True, kw_only=True)
class SetListMark(RegistryCommand):
    mark: str = described("NONE, WHITELIST or BLACKLIST")
    reason: str


@dataclass(frozen=True, kw_only=True)
class IssueWarningCard(RegistryCommand):
    color: str = described("YELLOW or RED")
    reason: str
