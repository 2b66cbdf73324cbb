"""Business time. Naive inputs are Asia/Shanghai; everything stored is timezone-aware."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

# China has no daylight saving time, so a fixed offset is exact and needs no tz database.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")


def aware(value: datetime) -> datetime:
    """Attach Asia/Shanghai to a naive datetime and express every datetime in +08:00."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=SHANGHAI)
    return value.astimezone(SHANGHAI)


def parse_datetime(text: str) -> datetime:
    return aware(datetime.fromisoformat(text))


def local_date(value: datetime) -> date:
    """The calendar date in China on which ``value`` happened."""
    return aware(value).date()


def month_start(value: datetime | date) -> date:
    day = local_date(value) if isinstance(value, datetime) else value
    return day.replace(day=1)


def utc_now() -> datetime:
    return datetime.now(UTC)


def start_of_day(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)
