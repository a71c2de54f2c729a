"""CronSchedule: parsing, the dom/dow rule, and exact next firing times."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hybridmesh.core.cron import CronSchedule
from hybridmesh.core.errors import ValidationError


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def next_after(expr: str, when: datetime) -> datetime:
    return CronSchedule.parse(expr).next_after(when)


@pytest.mark.parametrize(
    ("expr", "when", "expected"),
    [
        # every minute, strictly after
        ("* * * * *", at(2026, 1, 1, 10, 0), at(2026, 1, 1, 10, 1)),
        ("* * * * *", at(2026, 1, 1, 10, 0, 59, 999_999), at(2026, 1, 1, 10, 1)),
        ("0 * * * *", at(2026, 1, 1, 10, 0), at(2026, 1, 1, 11, 0)),
        # steps
        ("*/15 * * * *", at(2026, 1, 1, 10, 7, 30), at(2026, 1, 1, 10, 15)),
        ("*/15 * * * *", at(2026, 1, 1, 10, 45), at(2026, 1, 1, 11, 0)),
        ("1-10/3 * * * *", at(2026, 1, 1, 10, 7), at(2026, 1, 1, 10, 10)),
        ("1-10/3 * * * *", at(2026, 1, 1, 10, 10), at(2026, 1, 1, 11, 1)),
        ("5/20 * * * *", at(2026, 1, 1, 10, 26), at(2026, 1, 1, 10, 45)),
        ("0 */6 * * *", at(2026, 1, 1, 19, 0), at(2026, 1, 2, 0, 0)),
        # lists
        ("0,30 8,20 * * *", at(2026, 1, 1, 8, 30), at(2026, 1, 1, 20, 0)),
        # month ends and year ends
        ("30 23 31 * *", at(2026, 4, 1), at(2026, 5, 31, 23, 30)),
        ("0 0 31 * *", at(2026, 1, 31), at(2026, 3, 31)),
        ("0 0 30 * *", at(2026, 1, 30), at(2026, 3, 30)),
        ("59 23 31 12 *", at(2026, 12, 31, 23, 59), at(2027, 12, 31, 23, 59)),
        ("0 0 1 1 *", at(2026, 12, 31, 23, 59, 59), at(2027, 1, 1)),
        # leap years and Feb 29
        ("0 12 29 2 *", at(2024, 2, 29, 12, 0), at(2028, 2, 29, 12, 0)),
        ("0 12 29 2 *", at(2025, 3, 1), at(2028, 2, 29, 12, 0)),
        ("0 0 29 2 *", at(2097, 1, 1), at(2104, 2, 29)),  # 2100 is not a leap year
        ("0 0 28-29 2 *", at(2100, 2, 28), at(2101, 2, 28)),
        ("0 0 * 2 *", at(2024, 2, 28, 0, 0), at(2024, 2, 29)),
        ("0 0 * 2 *", at(2026, 2, 28, 0, 0), at(2027, 2, 1)),
        # names, any case
        ("0 8 * jun-aug sat,sun", at(2026, 1, 1), at(2026, 6, 6, 8, 0)),
        ("0 9 * * MON", at(2026, 1, 1), at(2026, 1, 5, 9, 0)),
        ("0 0 1 Dec *", at(2026, 1, 1), at(2026, 12, 1)),
        # Sunday as 0, 7 and a range ending on Sunday (2026-01-01 is a Thursday)
        ("0 0 * * 0", at(2026, 1, 1), at(2026, 1, 4)),
        ("0 0 * * 7", at(2026, 1, 1), at(2026, 1, 4)),
        ("0 0 * * fri-sun", at(2026, 1, 2), at(2026, 1, 3)),
        ("0 0 * * 5-7", at(2026, 1, 3), at(2026, 1, 4)),
        ("0 0 * * 5-7", at(2026, 1, 4), at(2026, 1, 9)),
        # both day fields restricted: either matches (Friday or the 13th)
        ("0 9 13 * fri", at(2026, 1, 1), at(2026, 1, 2, 9, 0)),
        ("0 9 13 * fri", at(2026, 1, 9, 9, 0), at(2026, 1, 13, 9, 0)),
        ("0 0 29 2 sun", at(2026, 1, 1), at(2026, 2, 1)),
        # a day field starting with '*' is unrestricted: then both must match
        ("0 0 */10 * mon", at(2026, 1, 1), at(2026, 5, 11)),
        ("0 0 29 2 */7", at(2026, 1, 1), at(2032, 2, 29)),
        # macros
        ("@hourly", at(2026, 1, 1, 10, 30), at(2026, 1, 1, 11, 0)),
        ("@daily", at(2026, 1, 1, 10, 30), at(2026, 1, 2)),
        ("@midnight", at(2026, 1, 1, 10, 30), at(2026, 1, 2)),
        ("@weekly", at(2026, 1, 1), at(2026, 1, 4)),
        ("@monthly", at(2025, 1, 31, 23, 59), at(2025, 2, 1)),
        ("@yearly", at(2026, 6, 1), at(2027, 1, 1)),
        ("@annually", at(2026, 6, 1), at(2027, 1, 1)),
    ],
)
def test_next_after_returns_the_first_matching_minute(
    expr: str, when: datetime, expected: datetime
) -> None:
    assert next_after(expr, when) == expected


def test_naive_input_is_utc_and_output_is_aware_utc() -> None:
    result = next_after("0 0 * * *", datetime(2026, 1, 1, 10, 0))
    assert result == at(2026, 1, 2)
    assert result.tzinfo is UTC


def test_aware_input_in_another_zone_is_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    # 01:30 at +02:00 is 23:30 UTC the day before
    result = next_after("0 0 * * *", datetime(2026, 1, 1, 1, 30, tzinfo=plus_two))
    assert result == at(2026, 1, 1)
    assert result.tzinfo is UTC


def _weekday(t: datetime) -> int:
    return (t.weekday() + 1) % 7  # cron numbering: Sunday = 0


# Each expression with a plain Python reading of it, written without any cron parser, so the
# minute-by-minute scan checks the library's answers against an independent oracle.
_ORACLES: dict[str, Callable[[datetime], bool]] = {
    "*/7 3-5 * * *": lambda t: t.minute % 7 == 0 and 3 <= t.hour <= 5,
    "0 0 13 * fri": lambda t: (t.minute, t.hour) == (0, 0) and (t.day == 13 or _weekday(t) == 5),
    "30 12 */10 * *": lambda t: (t.minute, t.hour) == (30, 12) and t.day in (1, 11, 21, 31),
    "15 6 1,15 * *": lambda t: (t.minute, t.hour) == (15, 6) and t.day in (1, 15),
    "0 */5 * * 0": lambda t: t.minute == 0 and t.hour % 5 == 0 and _weekday(t) == 0,
    "0 0 * * fri-sun": lambda t: (t.minute, t.hour) == (0, 0) and _weekday(t) in (5, 6, 0),
}


@pytest.mark.parametrize("expr", sorted(_ORACLES))
def test_next_after_agrees_with_a_minute_by_minute_search(expr: str) -> None:
    oracle = _ORACLES[expr]
    schedule = CronSchedule.parse(expr)
    t = at(2026, 1, 1)
    for _ in range(20):
        expected = t.replace(second=0) + timedelta(minutes=1)
        while not oracle(expected):
            expected += timedelta(minutes=1)
        assert schedule.matches(expected)
        assert not schedule.matches(expected - timedelta(minutes=1))
        t = schedule.next_after(t)
        assert t == expected


def test_equivalent_spellings_fire_at_the_same_times() -> None:
    a = CronSchedule.parse("0 0 * jan-mar sun,mon")
    b = CronSchedule.parse("0 0 * 1,2,3 7,1")
    ta = tb = at(2026, 1, 1)
    for _ in range(40):
        ta, tb = a.next_after(ta), b.next_after(tb)
        assert ta == tb
        assert ta.month in (1, 2, 3)
        assert _weekday(ta) in (0, 1)


def test_str_returns_the_expression() -> None:
    assert str(CronSchedule.parse("*/15 9-17 * * mon-fri")) == "*/15 9-17 * * mon-fri"
    assert str(CronSchedule.parse("@daily")) == "@daily"


def test_schedule_is_frozen() -> None:
    schedule = CronSchedule.parse("* * * * *")
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.expression = "0 * * * *"  # type: ignore[misc]


def test_a_rare_schedule_is_found_without_a_minute_by_minute_walk() -> None:
    schedule = CronSchedule.parse("59 23 29 2 *")
    t = at(2001, 1, 1)
    for expected_year in (2004, 2008, 2012):
        t = schedule.next_after(t)
        assert t == at(expected_year, 2, 29, 23, 59)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("x y z", "cron 'x y z': expected 5 fields"),
        ("* * * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 6"),
        ("", "expected 5 fields"),
        ("60 * * * *", "field 'minute': '60' is not valid (takes numbers 0-59)"),
        ("0 24 * * *", "cron '0 24 * * *': field 'hour': '24' is not valid (takes numbers 0-23)"),
        ("0 x * * *", "field 'hour': 'x' is not valid"),
        ("0 0 0 * *", "field 'day-of-month': '0' is not valid (takes numbers 1-31"),
        ("0 0 32 * *", "field 'day-of-month': '32' is not valid"),
        ("0 0 * 13 *", "field 'month': '13' is not valid (takes numbers 1-12 or names jan-dec)"),
        ("0 0 * foo *", "field 'month': 'foo' is not valid"),
        ("0 0 * * 8", "field 'day-of-week': '8' is not valid (takes numbers 0-7"),
        ("0 0 * * mon-xyz", "field 'day-of-week': 'mon-xyz' is not valid"),
        ("*/0 * * * *", "field 'minute': '*/0' is not valid"),
        ("*/x * * * *", "field 'minute': '*/x' is not valid"),
        ("10-5 * * * *", "field 'minute': '10-5' is not valid"),
        ("1,,2 * * * *", "field 'minute': '1,,2' is not valid"),
        (
            "0 0 30 feb *",
            "field 'day-of-month': '30' is not valid"
            " (takes numbers 1-31, L or LW, in a month that has that day)",
        ),
        ("0 0 31 4,6,9,11 *", "field 'day-of-month': '31' is not valid"),
        ("0 0 * * * 0", "expected 5 fields (minute hour day-of-month month day-of-week), got 6"),
        ("@fortnightly", "unknown macro '@fortnightly'"),
    ],
)
def test_bad_expressions_raise_validation_errors_naming_the_field(expr: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CronSchedule.parse(expr)
    assert message in str(caught.value)


def test_feb_30_is_fine_when_the_weekday_can_match_instead() -> None:
    # Both restricted: either matches, so the Mondays of February still fire.
    assert next_after("0 0 30 2 mon", at(2026, 1, 1)) == at(2026, 2, 2)


def test_something_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(ValidationError, match="a cron expression is a string"):
        CronSchedule.parse(None)  # type: ignore[arg-type]
