"""Contract scalars: Date, DateTime (naive means Asia/Shanghai) and Money (exact yuan)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

from services.common.timeutil import aware

_MONEY = re.compile(r"^\d{1,12}(\.\d{1,2})?$")


def _parse_datetime(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError("DateTime is an ISO 8601 string")
    try:
        return aware(dt.datetime.fromisoformat(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date-time") from None


def _parse_date(value: object) -> dt.date:
    if not isinstance(value, str):
        raise ValueError("Date is an ISO 8601 string")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date (YYYY-MM-DD)") from None


def money_from_fen(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _parse_money(value: object) -> Decimal:
    if not isinstance(value, str) or not _MONEY.match(value):
        raise ValueError('Money is a string of yuan with at most two decimals, e.g. "4999.00"')
    return Decimal(value)


DateTime = NewType("DateTime", dt.datetime)
Date = NewType("Date", dt.date)
Money = NewType("Money", Decimal)

SCALARS: dict[object, ScalarDefinition] = {
    DateTime: strawberry.scalar(
        name="DateTime",
        description="ISO 8601 date-time with offset; naive inputs are Asia/Shanghai",
        serialize=lambda v: aware(v).isoformat(),
        parse_value=_parse_datetime,
    ),
    Date: strawberry.scalar(
        name="Date",
        description="ISO 8601 date, e.g. 2021-07-24",
        serialize=lambda v: v.isoformat(),
        parse_value=_parse_date,
    ),
    Money: strawberry.scalar(
        name="Money",
        description=(
            'Exact decimal amount in yuan, serialised as a string with two decimals: "4999.00". '
            "Never a float."
        ),
        serialize=lambda v: money_from_fen(v) if isinstance(v, int) else f"{Decimal(v):.2f}",
        parse_value=_parse_money,
    ),
}
