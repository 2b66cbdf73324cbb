"""Policy rules of the register (see shared/domain/RULES.md), with their national defaults.

Everything a jurisdiction may vary lives in ``RegistryPolicy``; the defaults are the
national values, and configuration overrides them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

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


TERMINAL = frozenset({Status.REVOKED, Status.EXITED})

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

    def authority(self, region: str, category: Category, kind: NonSubjectKind | None) -> str:
        key = category.value if category is Category.SUBJECT else (kind or "OTHER")
        for prefix in sorted(self.authority_overrides, key=len, reverse=True):
            if region.startswith(prefix) and key in self.authority_overrides[prefix]:
                return self.authority_overrides[prefix][key]
        return NATIONAL_AUTHORITIES.get(key, "UNASSIGNED")


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
