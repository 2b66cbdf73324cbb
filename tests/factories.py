"""Small builders shared by the test rings."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import uuid4

from services.common.envelope import Envelope
from services.common.timeutil import SHANGHAI
from services.registry.domain.commands import RegisterInstitution

T0 = datetime(2021, 7, 24, 9, 0, tzinfo=SHANGHAI)


def envelope(stream: str, version: int, **overrides: Any) -> Envelope:
    fields: dict[str, Any] = {
        "id": uuid4(),
        "type": "registry.InstitutionRegistered",
        "stream": stream,
        "version": version,
        "region": "640402",
        "occurred_at": T0,
        "recorded_at": T0,
        "actor": "tester",
        "data": {"n": version},
    }
    fields.update(overrides)
    return Envelope(**fields)


def commit(stream: str, expected: int, count: int = 1, **overrides: Any) -> list[Envelope]:
    return [envelope(stream, expected + i, **overrides) for i in range(1, count + 1)]


DISTRICTS = ["640402", "640422", "120101", "340103"]  # 固原 ×2, 天津和平, 合肥庐阳


def numbered_registration(n: int) -> RegisterInstitution:
    """Institution ``i{n:03d}``: district, category, mode and date vary with ``n``.

    Every third is SUBJECT and registered in 2020, so approving it is legal; the others
    are ARTS institutions registered between 2020 and 2022.
    """
    region = DISTRICTS[n % len(DISTRICTS)]
    subject = n % 3 == 0
    return RegisterInstitution(
        id=f"i{n:03d}",
        name=f"机构{n}",
        credit_code=valid_credit_code(region, f"MA{n:07d}"),
        region=region,
        category="SUBJECT" if subject else "NON_SUBJECT",
        non_subject_kind=None if subject else "ARTS",
        mode="ONLINE" if n % 5 == 0 else "OFFLINE",
        occurred_at=datetime(2020 + n % 3, 1 + n % 12, 1, tzinfo=SHANGHAI),
    )


def valid_credit_code(region: str = "640402", org: str = "MA0000001") -> str:
    from services.registry.domain.rules import credit_code_check_char

    first17 = "52" + region + org
    return first17 + credit_code_check_char(first17)


def registration(**overrides: Any) -> dict[str, Any]:
    """A RegisterInstitutionInput that passes every rule."""
    fields: dict[str, Any] = {
        "name": "原州区启明学科培训学校",
        "creditCode": valid_credit_code(),
        "region": "640402",
        "category": "SUBJECT",
        "mode": "OFFLINE",
        "occurredAt": "2021-03-01T09:00:00",
    }
    fields.update(overrides)
    return fields
