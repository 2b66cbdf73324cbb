"""Commands to the register: what a caller asks for, before any rule is checked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class RegisterInstitution:
    name: str
    credit_code: str
    region: str
    category: str
    mode: str
    address: str | None = None
    non_subject_kind: str | None = None
    non_profit: bool = False
    id: str | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class ApproveInstitution:
    id: str
    license_no: str
    occurred_at: datetime | None = None
