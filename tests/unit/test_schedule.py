"""The training-schedule checker in pure code: calendar, school breaks, online limits."""

from __future__ import annotations

from datetime import date

import pytest

from services.common.errors import BadInput
from services.inspections.domain.schedule import (
    DEFAULT_BREAKS,
    RULES,
    Lesson,
    SchedulePolicy,
    SchoolBreak,
    check_schedule,
    default_breaks,
    is_rest_day,
    working_days_after,
)

POLICY = SchedulePolicy()
WEDNESDAY = date(2025, 3, 5)  # an ordinary school day: no holiday, no break
SATURDAY = date(2025, 3, 8)
ANHUI_SUMMER = {"34": (SchoolBreak("summer", date(2025, 7, 5), date(2025, 7, 31)),)}


def lesson(
    day: date = WEDNESDAY,
    start: str = "09:00",
    end: str = "09:30",
    mode: str = "OFFLINE",
    category: str = "NON_SUBJECT",
    preschool: bool = False,
    region: str | None = None,
) -> Lesson:
    return Lesson(day, start, end, mode, category, preschool, region)  # type: ignore[arg-type]


def subject(day: date, **overrides: object) -> Lesson:
    return lesson(day, category="SUBJECT", **overrides)  # type: ignore[arg-type]


def online(start: str, end: str, day: date = WEDNESDAY, **overrides: object) -> Lesson:
    return lesson(day, start, end, mode="ONLINE", **overrides)  # type: ignore[arg-type]


def rules(lessons: list[Lesson], policy: SchedulePolicy = POLICY) -> list[tuple[int, str]]:
    return [(v.index, v.rule) for v in check_schedule(lessons, policy).violations]


def fired(rule: str, one: Lesson, policy: SchedulePolicy = POLICY) -> bool:
    return (0, rule) in rules([one], policy)


def test_rules_are_the_seven_stable_codes_in_order() -> None:
    assert RULES == (
        "SUBJECT_ON_REST_DAY",
        "SUBJECT_IN_SCHOOL_BREAK",
        "ONLINE_LESSON_TOO_LONG",
        "ONLINE_GAP_TOO_SHORT",
        "ONLINE_ENDS_TOO_LATE",
        "OFFLINE_ENDS_TOO_LATE",
        "ONLINE_PRESCHOOL",
    )


def test_a_compliant_schedule_has_no_violation_and_no_warning() -> None:
    check = check_schedule(
        [
            subject(WEDNESDAY, start="18:00", end="19:30"),
            online("19:40", "20:10"),
            online("20:20", "20:50"),
        ]
    )
    assert check.violations == []
    assert check.warnings == []


# --- SUBJECT_ON_REST_DAY --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "rest"),
    [
        (date(2025, 1, 28), True),  # Spring Festival holiday
        (date(2025, 1, 26), False),  # Sunday, but a make-up working day (调休)
        (date(2025, 2, 8), False),  # Saturday, but a make-up working day
        (SATURDAY, True),  # an ordinary Saturday
        (date(2025, 10, 1), True),  # National Day
        (WEDNESDAY, False),
    ],
)
def test_subject_on_rest_day_follows_the_state_council_arrangement(day: date, rest: bool) -> None:
    assert fired("SUBJECT_ON_REST_DAY", subject(day)) is rest
    assert is_rest_day(day, POLICY) == (rest, None)


def test_rest_day_message_names_the_date_and_the_holiday() -> None:
    [violation] = [
        v
        for v in check_schedule([subject(date(2025, 1, 28))]).violations
        if v.rule == "SUBJECT_ON_REST_DAY"
    ]
    assert violation.message.startswith(
        "SUBJECT training on 2025-01-28, a rest day (statutory holiday"
    )


def test_non_subject_training_on_a_holiday_is_allowed() -> None:
    assert check_schedule([lesson(date(2025, 10, 1))]).violations == []


def test_a_year_nobody_knows_counts_weekends_and_warns_once() -> None:
    check = check_schedule([subject(date(2031, 3, 5)), subject(date(2031, 3, 6))])
    assert check.violations == []
    [warning] = check.warnings
    assert "2031" in warning
    assert "SHUANGJIAN_EXTRA_HOLIDAYS" in warning
    assert rules([subject(date(2031, 3, 8))]) == [(0, "SUBJECT_ON_REST_DAY")]
    rest, warning_again = is_rest_day(date(2031, 3, 5), POLICY)
    assert not rest
    assert warning_again == warning


def test_configured_days_make_a_year_known_and_override_the_package() -> None:
    configured = SchedulePolicy(
        extra_holidays=frozenset({date(2031, 3, 5), WEDNESDAY}),
        extra_workdays=frozenset({date(2031, 3, 8), date(2025, 1, 28)}),
    )
    check = check_schedule([subject(date(2031, 3, 5))], configured)
    assert [v.rule for v in check.violations] == ["SUBJECT_ON_REST_DAY"]
    assert check.warnings == []
    assert not fired("SUBJECT_ON_REST_DAY", subject(date(2031, 3, 8)), configured)
    assert fired("SUBJECT_ON_REST_DAY", subject(WEDNESDAY), configured)
    assert not fired("SUBJECT_ON_REST_DAY", subject(date(2025, 1, 28)), configured)
    assert check_schedule([subject(date(2031, 3, 15))], configured).warnings == []


def test_non_subject_lessons_in_an_unknown_year_need_no_warning() -> None:
    assert check_schedule([lesson(date(2031, 3, 8))]).warnings == []


def test_working_days_after_counts_make_up_days_and_skips_holidays() -> None:
    # The package agrees: Saturday 2025-01-25 is a rest day, Sunday 2025-01-26 a working day.
    assert working_days_after(date(2025, 1, 24), 1, POLICY) == date(2025, 1, 26)
    assert working_days_after(date(2025, 1, 27), 1, POLICY) == date(2025, 2, 5)
    assert working_days_after(date(2025, 1, 24), 0, POLICY) == date(2025, 1, 24)
    assert working_days_after(date(2025, 3, 7), 5, POLICY) == date(2025, 3, 14)
    with pytest.raises(ValueError, match="n must be"):
        working_days_after(WEDNESDAY, -1, POLICY)


def test_a_day_cannot_be_both_extra_holiday_and_extra_workday() -> None:
    with pytest.raises(ValueError, match="2031-03-05"):
        SchedulePolicy(
            extra_holidays=frozenset({date(2031, 3, 5)}),
            extra_workdays=frozenset({date(2031, 3, 5)}),
        )


# --- SUBJECT_IN_SCHOOL_BREAK ----------------------------------------------------------------


def test_subject_training_in_the_summer_break_violates() -> None:
    assert rules([subject(date(2025, 8, 5))]) == [(0, "SUBJECT_IN_SCHOOL_BREAK")]
    assert rules([subject(date(2025, 7, 14))]) == []
    assert rules([lesson(date(2025, 8, 5))]) == []


def test_winter_break_runs_from_a_week_before_to_three_weeks_after_spring_festival() -> None:
    assert fired("SUBJECT_IN_SCHOOL_BREAK", subject(date(2025, 1, 22)))
    assert fired("SUBJECT_IN_SCHOOL_BREAK", subject(date(2025, 2, 19)))
    assert not fired("SUBJECT_IN_SCHOOL_BREAK", subject(date(2025, 1, 21)))
    assert not fired("SUBJECT_IN_SCHOOL_BREAK", subject(date(2025, 2, 20)))


def test_province_breaks_replace_the_national_defaults() -> None:
    anhui = SchedulePolicy(province_breaks=ANHUI_SUMMER)
    assert rules([subject(date(2025, 8, 5), region="340103")], anhui) == []
    assert rules([subject(date(2025, 7, 10), region="340103")], anhui) == [
        (0, "SUBJECT_IN_SCHOOL_BREAK")
    ]
    assert rules([subject(date(2025, 8, 5), region="110101")], anhui) == [
        (0, "SUBJECT_IN_SCHOOL_BREAK")
    ]
    assert rules([subject(date(2025, 7, 10), region="110101")], anhui) == []
    assert rules([subject(date(2025, 8, 5))], anhui) == [(0, "SUBJECT_IN_SCHOOL_BREAK")]


def test_break_and_rest_day_are_separate_violations() -> None:
    assert rules([subject(date(2025, 8, 9))]) == [
        (0, "SUBJECT_ON_REST_DAY"),
        (0, "SUBJECT_IN_SCHOOL_BREAK"),
    ]


def test_default_breaks_cover_2021_to_2030() -> None:
    assert default_breaks(range(2021, 2031)) == DEFAULT_BREAKS
    assert POLICY.national_breaks == DEFAULT_BREAKS
    assert len(DEFAULT_BREAKS) == 20
    assert SchoolBreak("winter 2023", date(2023, 1, 15), date(2023, 2, 12)) in DEFAULT_BREAKS
    assert SchoolBreak("summer 2030", date(2030, 7, 15), date(2030, 8, 31)) in DEFAULT_BREAKS
    with pytest.raises(ValueError, match="2031"):
        default_breaks(range(2030, 2032))


def test_province_keys_must_be_two_digit_prefixes() -> None:
    with pytest.raises(ValueError, match="340"):
        SchedulePolicy(province_breaks={"340": ANHUI_SUMMER["34"]})


# --- online limits --------------------------------------------------------------------------


def test_online_lesson_of_30_minutes_is_fine_31_is_too_long() -> None:
    assert rules([online("09:00", "09:30")]) == []
    assert rules([online("09:00", "09:31")]) == [(0, "ONLINE_LESSON_TOO_LONG")]
    assert rules([lesson(start="09:00", end="10:30")]) == []


def test_online_gap_of_10_minutes_is_fine_9_is_too_short() -> None:
    assert rules([online("09:00", "09:30"), online("09:40", "10:00")]) == []
    assert rules([online("09:00", "09:30"), online("09:39", "10:00")]) == [
        (1, "ONLINE_GAP_TOO_SHORT")
    ]


def test_gap_is_reported_on_the_later_lesson_whatever_the_input_order() -> None:
    check = check_schedule([online("09:39", "10:00"), online("09:00", "09:30")])
    assert [(v.index, v.rule) for v in check.violations] == [(0, "ONLINE_GAP_TOO_SHORT")]
    assert "9 minutes after lessons[1] ends at 09:30" in check.violations[0].message


def test_overlapping_online_lessons_violate_even_behind_a_long_one() -> None:
    found = rules([online("09:00", "12:00"), online("09:10", "09:30"), online("10:00", "10:20")])
    assert [item for item in found if item[1] == "ONLINE_GAP_TOO_SHORT"] == [
        (1, "ONLINE_GAP_TOO_SHORT"),
        (2, "ONLINE_GAP_TOO_SHORT"),
    ]


def test_gaps_count_only_online_lessons_of_the_same_date() -> None:
    assert rules([online("09:00", "09:30"), online("09:31", "10:00", day=date(2025, 3, 6))]) == []
    assert rules([online("09:00", "09:30"), lesson(start="09:31", end="10:00")]) == []
    assert rules([lesson(start="09:00", end="09:30"), online("09:31", "10:00")]) == []


def test_online_ending_at_21_00_is_fine_21_01_is_too_late() -> None:
    assert rules([online("20:30", "21:00")]) == []
    assert rules([online("20:31", "21:01")]) == [(0, "ONLINE_ENDS_TOO_LATE")]
    assert rules([subject(WEDNESDAY, start="20:40", end="21:10", mode="ONLINE")]) == [
        (0, "ONLINE_ENDS_TOO_LATE")
    ]


def test_offline_non_subject_ending_at_20_30_is_fine_20_31_is_too_late() -> None:
    assert rules([lesson(start="20:00", end="20:30")]) == []
    assert rules([lesson(start="20:01", end="20:31")]) == [(0, "OFFLINE_ENDS_TOO_LATE")]
    assert rules([subject(WEDNESDAY, start="20:15", end="20:45")]) == []
    assert rules([online("20:15", "20:45")]) == []


def test_online_training_of_preschool_children_violates() -> None:
    assert rules([online("09:00", "09:30", preschool=True)]) == [(0, "ONLINE_PRESCHOOL")]
    assert rules([lesson(preschool=True)]) == []
    assert rules([online("09:00", "09:30")]) == []


# --- several rules, ordering, messages ------------------------------------------------------


def test_a_lesson_breaking_several_rules_gets_one_violation_per_rule_in_rules_order() -> None:
    bad = subject(SATURDAY, start="20:50", end="21:30", mode="ONLINE", preschool=True)
    assert rules([bad]) == [
        (0, "SUBJECT_ON_REST_DAY"),
        (0, "ONLINE_LESSON_TOO_LONG"),
        (0, "ONLINE_ENDS_TOO_LATE"),
        (0, "ONLINE_PRESCHOOL"),
    ]


def test_violations_are_sorted_by_index_then_rule_order() -> None:
    found = rules(
        [
            lesson(),
            online("09:20", "10:00", preschool=True),
            online("09:00", "09:25"),
            subject(SATURDAY, start="20:10", end="20:40"),
        ]
    )
    assert found == [
        (1, "ONLINE_LESSON_TOO_LONG"),
        (1, "ONLINE_GAP_TOO_SHORT"),
        (1, "ONLINE_PRESCHOOL"),
        (3, "SUBJECT_ON_REST_DAY"),
    ]


def test_messages_name_the_date_the_times_and_the_limit() -> None:
    by_rule = {
        v.rule: v.message
        for v in check_schedule(
            [
                online("20:50", "21:30", preschool=True),
                lesson(date(2025, 3, 6), start="20:00", end="20:45"),
            ]
        ).violations
    }
    assert by_rule["ONLINE_LESSON_TOO_LONG"] == (
        "online lesson 20:50 to 21:30 on 2025-03-05 lasts 40 minutes; at most 30 are allowed"
    )
    assert by_rule["ONLINE_ENDS_TOO_LATE"] == (
        "online lesson 20:50 to 21:30 on 2025-03-05 ends after 21:00"
    )
    assert by_rule["OFFLINE_ENDS_TOO_LATE"] == (
        "offline NON_SUBJECT lesson 20:00 to 20:45 on 2025-03-06 ends after 20:30"
    )
    assert "2025-03-05" in by_rule["ONLINE_PRESCHOOL"]


def test_the_limits_come_from_the_policy() -> None:
    strict = SchedulePolicy(
        online_max_minutes=20,
        online_min_gap_minutes=15,
        online_latest_end="20:00",
        offline_latest_end="19:00",
    )
    assert rules([online("18:00", "18:30"), online("18:40", "18:55")], strict) == [
        (0, "ONLINE_LESSON_TOO_LONG"),
        (1, "ONLINE_GAP_TOO_SHORT"),
    ]
    assert rules([online("19:45", "20:05")], strict) == [(0, "ONLINE_ENDS_TOO_LATE")]
    assert rules([lesson(start="18:30", end="19:01")], strict) == [(0, "OFFLINE_ENDS_TOO_LATE")]


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        ("9:00", "10:00", "lessons[1].start"),
        ("24:00", "10:00", "lessons[1].start"),
        ("12:60", "13:00", "lessons[1].start"),
        ("０９:００", "10:00", "lessons[1].start"),
        ("09:00\n", "10:00", "lessons[1].start"),
        ("23:00", "24:00", "lessons[1].end"),
        ("10:00", "10:00", "lessons[1].end"),
        ("10:00", "09:00", "lessons[1].end"),
    ],
)
def test_malformed_times_raise_bad_input_naming_the_lesson(
    start: str, end: str, field: str
) -> None:
    with pytest.raises(BadInput) as caught:
        check_schedule([lesson(), lesson(start=start, end=end)])
    assert caught.value.field == field


def test_end_before_start_says_so() -> None:
    with pytest.raises(BadInput, match="end 09:00 is not after start 10:00"):
        check_schedule([lesson(start="10:00", end="09:00")])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"mode": "HYBRID"}, "lessons[0].mode"),
        ({"category": "SUBJECTS"}, "lessons[0].category"),
        ({"region": "3401"}, "lessons[0].region"),
    ],
)
def test_values_outside_the_allowed_ones_raise_bad_input(
    overrides: dict[str, str], field: str
) -> None:
    with pytest.raises(BadInput) as caught:
        check_schedule([lesson(**overrides)])  # type: ignore[arg-type]
    assert caught.value.field == field


def test_every_lesson_is_validated_before_any_rule_runs() -> None:
    with pytest.raises(BadInput) as caught:
        check_schedule([subject(SATURDAY), lesson(), lesson(start="25:00")])
    assert caught.value.field == "lessons[2].start"


def test_too_many_lessons_raise_bad_input() -> None:
    assert check_schedule([lesson()] * 500).violations == []
    with pytest.raises(BadInput) as caught:
        check_schedule([lesson()] * 501)
    assert caught.value.field == "lessons"
    with pytest.raises(BadInput):
        check_schedule([lesson()] * 3, SchedulePolicy(max_lessons=2))
