"""The training-schedule checker: which lessons of a timetable break the Double Reduction rules.

Sources: 中共中央办公厅、国务院办公厅《关于进一步减轻义务教育阶段学生作业负担和校外培训负担的
意见》(2021, "the 2021 opinion") and 教育部等十三部门《关于规范面向中小学生的非学科类校外培训的
意见》(2022, "the 2022 opinion"). One code per rule, in ``RULES`` order:

* ``SUBJECT_ON_REST_DAY``: no SUBJECT training on statutory holidays or rest days (2021 opinion).
  Rest days follow the State Council's yearly arrangement, make-up working days (调休) included:
  ``services.common.workdays`` (the ``chinese_calendar`` package), overridden by
  ``SchedulePolicy.extra_holidays`` / ``extra_workdays`` so that operators can add next
  year's arrangement as configuration. A year
  that neither knows counts weekends only, with one warning per year.
* ``SUBJECT_IN_SCHOOL_BREAK``: no SUBJECT training in the winter or summer break (2021 opinion).
  Provinces set their own breaks; ``province_breaks`` replaces the national defaults.
* ``ONLINE_LESSON_TOO_LONG``: an online lesson lasts at most 30 minutes (2021 opinion).
* ``ONLINE_GAP_TOO_SHORT``: at least 10 minutes between online lessons (2021 opinion).
* ``ONLINE_ENDS_TOO_LATE``: online training ends by 21:00 (2021 and 2022 opinions).
* ``OFFLINE_ENDS_TOO_LATE``: offline NON_SUBJECT training ends by 20:30 (2022 opinion).
* ``ONLINE_PRESCHOOL``: no online training of preschool children (2021 opinion).

The input is one learner's or one class's timetable: the gap rule compares the online lessons of
the same date within the input, whatever their region. Times are Asia/Shanghai wall-clock times.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from services.common.errors import BadInput
from services.common.workdays import WorkCalendar

RULES: Final = (
    "SUBJECT_ON_REST_DAY",
    "SUBJECT_IN_SCHOOL_BREAK",
    "ONLINE_LESSON_TOO_LONG",
    "ONLINE_GAP_TOO_SHORT",
    "ONLINE_ENDS_TOO_LATE",
    "OFFLINE_ENDS_TOO_LATE",
    "ONLINE_PRESCHOOL",
)

Mode = Literal["OFFLINE", "ONLINE"]
Category = Literal["SUBJECT", "NON_SUBJECT"]
MODES: Final = ("OFFLINE", "ONLINE")
CATEGORIES: Final = ("SUBJECT", "NON_SUBJECT")

_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_REGION = re.compile(r"[0-9]{6}")
_PROVINCE = re.compile(r"[0-9]{2}")

# Gregorian date of 春节 (农历正月初一), from the published lunar calendar. A table rather than a
# lunar-calendar dependency: extend it (and the default breaks) before 2031.
SPRING_FESTIVAL: Final[Mapping[int, dt.date]] = {
    2021: dt.date(2021, 2, 12),
    2022: dt.date(2022, 2, 1),
    2023: dt.date(2023, 1, 22),
    2024: dt.date(2024, 2, 10),
    2025: dt.date(2025, 1, 29),
    2026: dt.date(2026, 2, 17),
    2027: dt.date(2027, 2, 6),
    2028: dt.date(2028, 1, 26),
    2029: dt.date(2029, 2, 13),
    2030: dt.date(2030, 2, 3),
}


@dataclass(frozen=True)
class SchoolBreak:
    """A winter or summer break (寒暑假), both ends inclusive."""

    name: str
    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"school break {self.name!r} ends {self.end} before it starts")

    def covers(self, day: dt.date) -> bool:
        return self.start <= day <= self.end


def default_breaks(years: range) -> tuple[SchoolBreak, ...]:
    """National fallback breaks: winter from 7 days before to 21 days after Spring Festival,
    summer 15 July to 31 August. Provinces publish their own; these only approximate them."""
    missing = [year for year in years if year not in SPRING_FESTIVAL]
    if missing:
        raise ValueError(f"no Spring Festival date is recorded for {missing}: extend the table")
    breaks: list[SchoolBreak] = []
    for year in years:
        festival = SPRING_FESTIVAL[year]
        breaks.append(
            SchoolBreak(
                f"winter {year}",
                festival - dt.timedelta(days=7),
                festival + dt.timedelta(days=21),
            )
        )
        breaks.append(SchoolBreak(f"summer {year}", dt.date(year, 7, 15), dt.date(year, 8, 31)))
    return tuple(breaks)


DEFAULT_BREAKS: Final = default_breaks(range(2021, 2031))


def _minutes(text: object) -> int | None:
    if not isinstance(text, str):
        return None
    match = _TIME.fullmatch(text)
    if match is None:
        return None
    return int(match[1]) * 60 + int(match[2])


@dataclass(frozen=True)
class SchedulePolicy:
    """The national values; configuration overrides them (calendar, provincial breaks)."""

    # Days the State Council's arrangement makes rest days / working days; they override the
    # chinese_calendar package, and listing any day of a year makes that year "known".
    extra_holidays: frozenset[dt.date] = frozenset()
    extra_workdays: frozenset[dt.date] = frozenset()
    national_breaks: tuple[SchoolBreak, ...] = DEFAULT_BREAKS
    # Keyed by the 2-digit province prefix of a GB/T 2260 code; replaces national_breaks.
    province_breaks: Mapping[str, tuple[SchoolBreak, ...]] = field(default_factory=dict)
    online_max_minutes: int = 30
    online_min_gap_minutes: int = 10
    online_latest_end: str = "21:00"
    offline_latest_end: str = "20:30"
    max_lessons: int = 500
    calendar: WorkCalendar = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "calendar", WorkCalendar(self.extra_holidays, self.extra_workdays))
        for name in ("online_latest_end", "offline_latest_end"):
            if _minutes(getattr(self, name)) is None:
                raise ValueError(f"{name} must be a time HH:MM, got {getattr(self, name)!r}")
        bad = [key for key in self.province_breaks if not _PROVINCE.fullmatch(key)]
        if bad:
            raise ValueError(f"province_breaks keys are 2-digit province prefixes, got {bad}")
        if self.online_max_minutes < 1 or self.online_min_gap_minutes < 0 or self.max_lessons < 1:
            raise ValueError("online_max_minutes and max_lessons must be positive, the gap >= 0")

    def knows_year(self, year: int) -> bool:
        """Whether configuration carries that year's arrangement (any extra day in it)."""
        return self.calendar.knows_year(year)

    def breaks_for(self, region: str | None) -> tuple[SchoolBreak, ...]:
        if region is not None and region[:2] in self.province_breaks:
            return self.province_breaks[region[:2]]
        return self.national_breaks


@dataclass(frozen=True)
class Lesson:
    """One lesson of one learner's or one class's timetable; times are "HH:MM" in Shanghai."""

    date: dt.date
    start: str
    end: str
    mode: Mode
    category: Category
    preschool: bool = False
    region: str | None = None


@dataclass(frozen=True)
class Violation:
    index: int
    rule: str
    message: str


@dataclass(frozen=True)
class ScheduleCheck:
    violations: list[Violation]
    warnings: list[str]


def _rest_day(day: dt.date, policy: SchedulePolicy) -> tuple[bool, str, str | None]:
    """(rest day?, why, warning): the why names the holiday for the violation message."""
    return policy.calendar.rest_day(day)


def is_rest_day(day: dt.date, policy: SchedulePolicy) -> tuple[bool, str | None]:
    """Whether ``day`` is a rest day in China, make-up working days (调休) counted as work.

    The second item is a warning when neither the package nor the policy knows the year (then
    only weekends are rest days). The policy is required so that configuration is never skipped.
    """
    return policy.calendar.is_rest_day(day)


def working_days_after(start: dt.date, n: int, policy: SchedulePolicy) -> dt.date:
    """The n-th working day after ``start`` (``WorkCalendar.working_days_after``)."""
    return policy.calendar.working_days_after(start, n)


@dataclass(frozen=True)
class _Timed:
    index: int
    lesson: Lesson
    start: int
    end: int


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_time(value: object, path: str) -> int:
    minutes = _minutes(value)
    if minutes is None:
        raise BadInput(
            f"{path.rsplit('.', 1)[1]} {value!r} is not a time HH:MM from 00:00 to 23:59",
            field=path,
        )
    return minutes


def _validate(lessons: Sequence[Lesson], policy: SchedulePolicy) -> list[_Timed]:
    """Every lesson is checked before any rule runs, so a bad one never yields half a report."""
    if len(lessons) > policy.max_lessons:
        raise BadInput(
            f"{len(lessons)} lessons sent; at most {policy.max_lessons} are checked at once",
            field="lessons",
        )
    timed: list[_Timed] = []
    for i, lesson in enumerate(lessons):
        path = f"lessons[{i}]"
        if not isinstance(lesson, Lesson):
            raise BadInput(f"expected a lesson, got {type(lesson).__name__}", field=path)
        if not isinstance(lesson.date, dt.date) or isinstance(lesson.date, dt.datetime):
            raise BadInput(
                f"date must be a calendar date, got {lesson.date!r}", field=f"{path}.date"
            )
        start = _parse_time(lesson.start, f"{path}.start")
        end = _parse_time(lesson.end, f"{path}.end")
        if end <= start:
            raise BadInput(
                f"end {lesson.end} is not after start {lesson.start}", field=f"{path}.end"
            )
        if lesson.mode not in MODES:
            raise BadInput(
                f"mode {lesson.mode!r} is not one of {', '.join(MODES)}", field=f"{path}.mode"
            )
        if lesson.category not in CATEGORIES:
            raise BadInput(
                f"category {lesson.category!r} is not one of {', '.join(CATEGORIES)}",
                field=f"{path}.category",
            )
        if not isinstance(lesson.preschool, bool):
            raise BadInput(
                f"preschool must be true or false, got {lesson.preschool!r}",
                field=f"{path}.preschool",
            )
        if lesson.region is not None and not (
            isinstance(lesson.region, str) and _REGION.fullmatch(lesson.region)
        ):
            raise BadInput(
                f"region {lesson.region!r} is not a 6-digit GB/T 2260 code",
                field=f"{path}.region",
            )
        timed.append(_Timed(i, lesson, start, end))
    return timed


def _lesson_violations(
    item: _Timed, policy: SchedulePolicy, warnings: list[str]
) -> list[Violation]:
    """The rules that look at one lesson alone (all but the gap rule)."""
    lesson, day = item.lesson, item.lesson.date
    found: list[Violation] = []
    span = f"{_clock(item.start)} to {_clock(item.end)} on {day}"

    def add(rule: str, message: str) -> None:
        found.append(Violation(item.index, rule, message))

    if lesson.category == "SUBJECT":
        rest, why, warning = _rest_day(day, policy)
        if warning is not None and warning not in warnings:
            warnings.append(warning)
        if rest:
            add("SUBJECT_ON_REST_DAY", f"SUBJECT training on {day}, {why}")
        school_break = next((b for b in policy.breaks_for(lesson.region) if b.covers(day)), None)
        if school_break is not None:
            add(
                "SUBJECT_IN_SCHOOL_BREAK",
                f"SUBJECT training on {day}, inside the school break {school_break.name!r} "
                f"({school_break.start} to {school_break.end})",
            )
    if lesson.mode == "ONLINE":
        length = item.end - item.start
        if length > policy.online_max_minutes:
            add(
                "ONLINE_LESSON_TOO_LONG",
                f"online lesson {span} lasts {length} minutes; "
                f"at most {policy.online_max_minutes} are allowed",
            )
        latest = _minutes(policy.online_latest_end)
        if latest is not None and item.end > latest:
            add(
                "ONLINE_ENDS_TOO_LATE",
                f"online lesson {span} ends after {policy.online_latest_end}",
            )
    elif lesson.category == "NON_SUBJECT":
        latest = _minutes(policy.offline_latest_end)
        if latest is not None and item.end > latest:
            add(
                "OFFLINE_ENDS_TOO_LATE",
                f"offline NON_SUBJECT lesson {span} ends after {policy.offline_latest_end}",
            )
    if lesson.mode == "ONLINE" and lesson.preschool:
        add("ONLINE_PRESCHOOL", f"online training of preschool children ({span})")
    return found


def _gap_violations(timed: Sequence[_Timed], policy: SchedulePolicy) -> list[Violation]:
    """Against the latest end of all earlier online lessons that day, so overlaps are caught
    even behind a long lesson."""
    by_date: dict[dt.date, list[_Timed]] = {}
    for item in timed:
        if item.lesson.mode == "ONLINE":
            by_date.setdefault(item.lesson.date, []).append(item)
    found: list[Violation] = []
    for day, items in by_date.items():
        items.sort(key=lambda item: (item.start, item.end, item.index))
        previous = items[0]
        for item in items[1:]:
            gap = item.start - previous.end
            if gap < policy.online_min_gap_minutes:
                relation = (
                    f"overlaps lessons[{previous.index}], which ends at {_clock(previous.end)}"
                    if gap < 0
                    else f"starts {gap} minutes after lessons[{previous.index}] ends at "
                    f"{_clock(previous.end)}"
                )
                found.append(
                    Violation(
                        item.index,
                        "ONLINE_GAP_TOO_SHORT",
                        f"online lesson {_clock(item.start)} to {_clock(item.end)} on {day} "
                        f"{relation}; at least {policy.online_min_gap_minutes} minutes "
                        "between online lessons are required",
                    )
                )
            if item.end > previous.end:
                previous = item
    return found


def check_schedule(
    lessons: Sequence[Lesson], policy: SchedulePolicy = SchedulePolicy()
) -> ScheduleCheck:
    """Every rule broken by every lesson, sorted by lesson index then ``RULES`` order.

    Raises ``BadInput`` (field ``lessons[i].<name>``) on the first malformed lesson.
    """
    timed = _validate(lessons, policy)
    warnings: list[str] = []
    violations = [v for item in timed for v in _lesson_violations(item, policy, warnings)]
    violations.extend(_gap_violations(timed, policy))
    violations.sort(key=lambda v: (v.index, RULES.index(v.rule)))
    return ScheduleCheck(violations, warnings)
