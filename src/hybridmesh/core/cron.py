"""Cron schedules: the standard five-field expressions, evaluated in UTC.

``CronSchedule.parse("*/15 9-17 * * mon-fri")`` reads an expression once;
``schedule.next_after(when)`` answers the first matching minute strictly after ``when``.

Supported syntax, field by field (minute, hour, day-of-month, month, day-of-week):

- ``*``, single values, lists (``1,15``), ranges (``1-10``) and steps (``*/15``, ``1-10/2``,
  ``5/20`` meaning ``5-59/20``);
- month names ``jan``..``dec`` and weekday names ``sun``..``sat`` (any case); day-of-week
  ``0`` and ``7`` are both Sunday, and a range may end on Sunday (``fri-sun``, ``5-7``);
- the macros ``@hourly``, ``@daily``, ``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``
  and ``@annually``.

Day-of-month and day-of-week follow the usual (Vixie) cron rule: when both are restricted,
a day matches if *either* matches. A field that starts with ``*`` (``*`` or ``*/2``) counts as
unrestricted, and then a day must match both: ``0 0 */10 * mon`` fires on Mondays that are
the 1st, 11th, 21st or 31st.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hybridmesh.core.errors import Problem, ValidationError

_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_WEEKDAY_NAMES = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day-of-month", 1, 31, {}),
    _Field("month", 1, 12, _MONTH_NAMES),
    _Field("day-of-week", 0, 7, _WEEKDAY_NAMES),
)

# The Gregorian calendar repeats every 400 years, so a schedule that matches at all matches
# within that; real schedules need at most a few decades (Feb 29 on a given weekday).
_SEARCH_YEARS = 400


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression. Build it with :meth:`parse`; ``str()`` gives the expression.

    Every time is UTC: aware datetimes are converted, naive ones are taken to be UTC.
    """

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday … 6 = Saturday (7 is folded into 0)
    day_of_month_restricted: bool
    day_of_week_restricted: bool

    @classmethod
    def parse(cls, expr: str) -> CronSchedule:
        """Parse a five-field expression or a macro.

        Raises :class:`ValidationError` naming the expression and the field at fault, also
        for a schedule that can never match (``0 0 30 feb *``).
        """
        if not isinstance(expr, str):
            raise _error(repr(expr), None, "a cron expression is a string")
        text = expr.strip()
        fields_text = _MACROS.get(text.lower(), text)
        if text.startswith("@") and text.lower() not in _MACROS:
            known = ", ".join(sorted(_MACROS))
            raise _error(expr, None, f"unknown macro {text!r} (known: {known})")
        parts = fields_text.split()
        if len(parts) != len(_FIELDS):
            raise _error(
                expr,
                None,
                f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}",
            )
        values = [_parse_field(expr, spec, part) for spec, part in zip(_FIELDS, parts, strict=True)]
        minutes, hours, doms, months, dows = values
        dows = frozenset(d % 7 for d in dows)
        schedule = cls(
            expression=text,
            minutes=minutes,
            hours=hours,
            days_of_month=doms,
            months=months,
            days_of_week=dows,
            day_of_month_restricted=not parts[2].startswith("*"),
            day_of_week_restricted=not parts[4].startswith("*"),
        )
        schedule._check_satisfiable()
        return schedule

    def __str__(self) -> str:
        return self.expression

    def matches(self, when: datetime) -> bool:
        """Whether the minute containing ``when`` (UTC) is one this schedule fires on."""
        when = _as_utc(when)
        return (
            when.minute in self.minutes
            and when.hour in self.hours
            and when.month in self.months
            and self._day_matches(when.year, when.month, when.day)
        )

    def next_after(self, when: datetime) -> datetime:
        """The first matching minute strictly after ``when``, as an aware UTC datetime.

        Skips whole months, days and hours that cannot match, so the search is a few dozen
        steps even for once-a-year (or once-every-four-years) schedules.
        """
        t = _as_utc(when).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit_year = t.year + _SEARCH_YEARS
        while t.year <= limit_year:
            if t.month not in self.months:
                t = _first_of_next_month(t)
                continue
            if not self._day_matches(t.year, t.month, t.day):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            later = [m for m in self.minutes if m >= t.minute]
            if later:
                return t.replace(minute=min(later))
            t = t.replace(minute=0) + timedelta(hours=1)
        # Unreachable for schedules that passed parse(); kept so a bug cannot loop forever.
        raise _error(self.expression, None, f"no matching time within {_SEARCH_YEARS} years")

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        dom_ok = day in self.days_of_month
        # calendar.weekday: Monday = 0; cron: Sunday = 0.
        dow_ok = (calendar.weekday(year, month, day) + 1) % 7 in self.days_of_week
        if self.day_of_month_restricted and self.day_of_week_restricted:
            return dom_ok or dow_ok
        return dom_ok and dow_ok

    def _check_satisfiable(self) -> None:
        if self.day_of_month_restricted and self.day_of_week_restricted:
            return  # either may match, and every month has every weekday
        # Feb counts 29 days: a Feb 29 schedule fires in leap years.
        longest = {m: calendar.monthrange(2000, m)[1] for m in range(1, 13)}
        if not any(d <= longest[m] for m in self.months for d in self.days_of_month):
            raise _error(
                self.expression,
                "day-of-month",
                "no listed day exists in any listed month; the schedule would never fire",
            )


def _parse_field(expr: str, spec: _Field, text: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _error(expr, spec.name, f"empty list item in {text!r}")
        values.update(_parse_item(expr, spec, item))
    return frozenset(values)


def _parse_item(expr: str, spec: _Field, item: str) -> range:
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise _error(
                expr, spec.name, f"step {step_text!r} in {item!r} is not a whole number > 0"
            )
        step = int(step_text)
    if base == "*":
        return range(spec.low, spec.high + 1, step)
    first_text, dash, last_text = base.partition("-")
    first = _parse_value(expr, spec, first_text)
    if dash:
        last = _parse_value(expr, spec, last_text)
        if spec.name == "day-of-week" and last == 0 and first > 0:
            last = 7  # "fri-sun": Sunday closes the week
    else:
        # "5/20" means "from 5 to the end, every 20"; a bare "5" is just 5.
        last = spec.high if slash else first
    if first > last:
        raise _error(expr, spec.name, f"range {base!r} runs backwards")
    return range(first, last + 1, step)


def _parse_value(expr: str, spec: _Field, text: str) -> int:
    lowered = text.lower()
    if lowered in spec.names:
        return spec.names[lowered]
    if not text.isdigit():
        hint = f" or a name ({', '.join(spec.names)})" if spec.names else ""
        raise _error(expr, spec.name, f"{text!r} is not a number{hint}")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise _error(expr, spec.name, f"{value} is out of range {spec.low}-{spec.high}")
    return value


def _first_of_next_month(t: datetime) -> datetime:
    if t.month == 12:
        return t.replace(year=t.year + 1, month=1, day=1, hour=0, minute=0)
    return t.replace(month=t.month + 1, day=1, hour=0, minute=0)


def _as_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _error(expr: str, field: str | None, message: str) -> ValidationError:
    where = f"field {field!r}: " if field else ""
    return ValidationError([Problem(f"cron {expr!r}: {where}{message}")])


__all__ = ["CronSchedule"]
