"""Working days in China: weekends and statutory holidays are rest days, and make-up
working days (调休) are working days, as the State Council's yearly arrangement sets them.

The ``chinese_calendar`` package carries the official arrangement up to the year it was
released for; the State Council publishes the next year's each November, so operators
add it as configuration (``SHUANGJIAN_EXTRA_HOLIDAYS`` / ``SHUANGJIAN_EXTRA_WORKDAYS``)
without a release. A year neither knows counts weekends only, and says so. Pure: the
schedule checker (inspections) and the 15- and 5-working-day clocks (finance) both use it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import chinese_calendar


@dataclass(frozen=True)
class WorkCalendar:
    """The official calendar with configured days on top (they win over the package)."""

    extra_holidays: frozenset[dt.date] = frozenset()
    extra_workdays: frozenset[dt.date] = frozenset()

    def __post_init__(self) -> None:
        clash = self.extra_holidays & self.extra_workdays
        if clash:
            days = ", ".join(str(day) for day in sorted(clash))
            raise ValueError(f"{days} listed both as extra holiday and as extra workday")

    def knows_year(self, year: int) -> bool:
        """Whether configuration carries that year's arrangement (any extra day in it)."""
        return any(day.year == year for day in self.extra_holidays | self.extra_workdays)

    def rest_day(self, day: dt.date) -> tuple[bool, str, str | None]:
        """(rest day?, why, warning): why names the holiday; the warning says when the
        year's arrangement is unknown and only weekends were counted."""
        weekend = day.weekday() >= 5
        if day in self.extra_workdays:
            return False, "a configured working day", None
        if day in self.extra_holidays:
            return True, "a rest day (statutory holiday, configured)", None
        try:
            workday = bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            warning = None if self.knows_year(day.year) else unknown_year_warning(day.year)
            return weekend, "a rest day (weekend)", warning
        if workday:
            return False, "a working day", None
        _, holiday = chinese_calendar.get_holiday_detail(day)
        if holiday:
            return True, f"a rest day (statutory holiday: {holiday})", None
        return True, "a rest day (weekend)", None

    def is_rest_day(self, day: dt.date) -> tuple[bool, str | None]:
        """Whether ``day`` is a rest day, and the unknown-year warning if there is one."""
        rest, _, warning = self.rest_day(day)
        return rest, warning

    def working_days_after(self, start: dt.date, n: int) -> dt.date:
        """The n-th working day after ``start`` (``start`` itself not counted).

        Years nobody knows count weekends only, silently: ``is_rest_day`` has the warning.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        day = start
        while n:
            day += dt.timedelta(days=1)
            if not self.rest_day(day)[0]:
                n -= 1
        return day


def unknown_year_warning(year: int) -> str:
    return (
        f"the official holiday arrangement for {year} is not known: only weekends count as "
        "rest days; add it as SHUANGJIAN_EXTRA_HOLIDAYS / SHUANGJIAN_EXTRA_WORKDAYS"
    )
