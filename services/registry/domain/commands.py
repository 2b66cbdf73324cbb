"""Commands to the register: what a caller asks for, before any rule is checked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class RegistryCommand:
    id: str | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class RegisterInstitution(RegistryCommand):
    name: str
    credit_code: str
    region: str
    category: str
    mode: str
    address: str | None = None
    non_subject_kind: str | None = None
    non_profit: bool = False


@dataclass(frozen=True, kw_only=True)
class ApproveInstitution(RegistryCommand):
    license_no: str


@dataclass(frozen=True, kw_only=True)
class ConvertToNonProfit(RegistryCommand):
    pass


@dataclass(frozen=True, kw_only=True)
class ReclassifyInstitution(RegistryCommand):
    category: str
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
    mark: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class IssueWarningCard(RegistryCommand):
    color: str
    reason: str
