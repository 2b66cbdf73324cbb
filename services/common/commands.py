"""Checks every command input shares: client-chosen ids and business time."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from uuid import uuid4

from services.common.errors import BadInput
from services.common.timeutil import SHANGHAI, aware

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
EARLIEST = datetime(1990, 1, 1, tzinfo=SHANGHAI)
# Clocks of district systems drift; a fact stamped a few minutes ahead is still accepted.
CLOCK_SKEW = timedelta(minutes=5)


def entity_id(value: str | None, field: str = "id") -> str:
    """A client-chosen id, checked, or a new one."""
    if value is None:
        return uuid4().hex
    if not _ID.match(value):
        raise BadInput(
            "an id is 1-64 letters, digits or _ . : - and starts with a letter or digit",
            field=field,
        )
    return value


def business_time(value: datetime | None, now: datetime, field: str = "occurred_at") -> datetime:
    """When a fact happened: given (possibly back-dated), or now. Never in the future."""
    if value is None:
        return aware(now)
    value = aware(value)
    if value > now + CLOCK_SKEW:
        raise BadInput(f"{value.isoformat()} is in the future", field=field)
    if value < EARLIEST:
        raise BadInput(f"{value.isoformat()} is before 1990", field=field)
    return value
