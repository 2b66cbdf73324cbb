"""Policy rules of the register (see shared/domain/RULES.md), with their national defaults.

Everything a jurisdiction may vary lives in ``RegistryPolicy``; the defaults are the
national values, and configuration overrides them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

from services.common.errors import BadInput


class Category(enum.StrEnum):
    SUBJECT = "SUBJECT"
    NON_SUBJECT = "NON_SUBJECT"


class NonSubjectKind(enum.StrEnum):
    SPORTS = "SPORTS"
    ARTS = "ARTS"
    SCIENCE_TECH = "SCIENCE_TECH"
    COMPREHENSIVE_PRACTICE = "COMPREHENSIVE_PRACTICE"
    OTHER = "OTHER"


class TeachingMode(enum.StrEnum):
    OFFLINE = "OFFLINE"
    ONLINE = "ONLINE"


class Status(enum.StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    SUSPENDED = "SUSPENDED"
    REVOKED = "REVOKED"
    EXITED = "EXITED"


class ListMark(enum.StrEnum):
    NONE = "NONE"
    WHITELIST = "WHITELIST"
    BLACKLIST = "BLACKLIST"


class WarningColor(enum.StrEnum):
    YELLOW = "YELLOW"
    RED = "RED"


TERMINAL = frozenset({Status.REVOKED, Status.EXITED})
ACTIVE = frozenset({Status.PENDING, Status.APPROVED, Status.SUSPENDED})

# The lifecycle (RULES.md): which states each transition may start from.
TRANSITIONS: Mapping[str, frozenset[Status]] = {
    "approve": frozenset({Status.PENDING}),
    "suspend": frozenset({Status.APPROVED}),
    "resume": frozenset({Status.SUSPENDED}),
    "revoke": ACTIVE,
    "exit": ACTIVE,
}

# 主管单位 by category (RULES.md "Categories and supervising authority").
NATIONAL_AUTHORITIES: Mapping[str, str] = {
    "SUBJECT": "EDUCATION",
    "SPORTS": "SPORTS",
    "ARTS": "CULTURE_TOURISM",
    "SCIENCE_TECH": "SCIENCE_TECH",
    "COMPREHENSIVE_PRACTICE": "EDUCATION",
    "OTHER": "EDUCATION",
}


@dataclass(frozen=True)
class RegistryPolicy:
    """National defaults; a deployment overrides them per jurisdiction."""

    # 中办国办 opinion of 2021-07-24: no new approvals of compulsory-stage SUBJECT institutions.
    policy_start: date = date(2021, 7, 24)
    # 营转非 deadline for SUBJECT institutions.
    non_profit_deadline: date = date(2021, 12, 31)
    # subjectBaseline counts SUBJECT institutions active on this day.
    baseline_date: date = date(2021, 7, 24)
    # Per region-code prefix (e.g. "43" for Hunan): category/kind -> authority.
    authority_overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Per region-code prefix: another baseline day for subjectBaseline.
    baseline_overrides: Mapping[str, date] = field(default_factory=dict)
    # Warning escalation: this many RED cards recommend suspension (0 turns it off) ...
    red_cards_for_suspension: int = 2
    # ... and so does a RED card while a rectification of the institution is overdue.
    red_while_overdue_recommends_suspension: bool = True

    def baseline_for(self, region: str) -> date:
        return _longest_prefix(self.baseline_overrides, region) or self.baseline_date

    def authority(self, region: str, category: Category, kind: NonSubjectKind | None) -> str:
        key = category.value if category is Category.SUBJECT else (kind or "OTHER")
        for prefix in sorted(self.authority_overrides, key=len, reverse=True):
            if region.startswith(prefix) and key in self.authority_overrides[prefix]:
                return self.authority_overrides[prefix][key]
        return NATIONAL_AUTHORITIES.get(key, "UNASSIGNED")

    def compliance_flags(
        self, category: str, non_profit: bool, status: str, today: date
    ) -> list[str]:
        """营转非: an active for-profit SUBJECT institution after the deadline is flagged."""
        flags = []
        if (
            category == Category.SUBJECT
            and not non_profit
            and status not in TERMINAL
            and today > self.non_profit_deadline
        ):
            flags.append("FOR_PROFIT_SUBJECT")
        return flags


V = TypeVar("V")


def _longest_prefix(table: Mapping[str, V], region: str) -> V | None:
    for prefix in sorted(table, key=len, reverse=True):
        if region.startswith(prefix):
            return table[prefix]
    return None


# --- 统一社会信用代码 (GB 32100-2015) ---------------------------------------------------

CREDIT_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, S, V, Z
_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def credit_code_check_char(first17: str) -> str:
    total = sum(CREDIT_CODE_CHARS.index(c) * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return CREDIT_CODE_CHARS[(31 - total % 31) % 31]


def validate_credit_code(code: str, field: str = "credit_code") -> str:
    """Normalise and check a credit code: 18 characters of the GB 32100 set, valid check char."""
    normalised = code.strip().upper()
    if len(normalised) != 18:
        raise BadInput(
            f"a unified social credit code has 18 characters, got {len(normalised)}", field=field
        )
    bad = sorted({c for c in normalised if c not in CREDIT_CODE_CHARS})
    if bad:
        raise BadInput(
            f"character(s) {''.join(bad)!r} cannot appear in a unified social credit code",
            field=field,
        )
    expected = credit_code_check_char(normalised[:17])
    if normalised[17] != expected:
        raise BadInput(
            f"check character is {normalised[17]!r} but GB 32100 gives {expected!r}: "
            "the code is mistyped",
            field=field,
        )
    return normalised
