"""Cron schedules: the standard five-field expressions, evaluated in UTC.

``CronSchedule.parse("*/15 9-17 * * mon-fri")`` reads an expression once;
``schedule.next_after(when)`` answers the first matching minute strictly after ``when``.

Parsing and evaluation are the ``cronsim`` library's; this module is the project's face for
it. It adds the ``@hourly`` .. ``@annually`` macros, refuses anything but five fields (the
library would also take a seconds field), accepts a weekday range ending on Sunday
(``fri-sun``), works in UTC only, and turns the library's errors into
:class:`~hybridmesh.core.errors.ValidationError` naming the expression and the field.

Syntax, field by field (minute, hour, day-of-month, month, day-of-week): ``*``, single values,
lists (``1,15``), ranges (``1-10``), steps (``*/15``, ``1-10/2``, ``5/20`` meaning
``5-59/20``); month names ``jan``..``dec`` and weekday names ``sun``..``sat`` in any case;
day-of-week ``0`` and ``7`` are both Sunday. The library also reads ``L`` (last day of the
month or last weekday of a kind), ``LW`` and ``mon#2`` (the second Monday).

Day-of-month and day-of-week follow the usual (Vixie) cron rule: when both are restricted,
a day matches if *either* matches. A field that starts with ``*`` (``*`` or ``*/2``) counts as
unrestricted, and then a day must match both: ``0 0 */10 * mon`` fires on Mondays that are
the 1st, 11th, 21st or 31st.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cronsim import CronSim, CronSimError

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

_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")

# What each field takes, said in the error when the library refuses the field.
_FIELD_HINTS = {
    "minute": "numbers 0-59",
    "hour": "numbers 0-23",
    "day-of-month": "numbers 1-31, L or LW, in a month that has that day",
    "month": "numbers 1-12 or names jan-dec",
    "day-of-week": "numbers 0-7 (0 and 7 are Sunday), names sun-sat, L or #",
}

# The library reads a range start-to-end in number order, where Sunday is 0; cron users write
# "fri-sun" meaning Friday to Sunday, so a range ending on Sunday is spelled with 7.
_RANGE_TO_SUNDAY = re.compile(r"-sun\b", re.IGNORECASE)

# The library gives up after 50 years without a match; a schedule that passed parse() matches
# well within that (Feb 29 on a given weekday recurs within 28 years, or 40 across 2100).
_FIRST_FIRE_PROBE = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression. Build it with :meth:`parse`; ``str()`` gives the expression.

    Every time is UTC: aware datetimes are converted, naive ones are taken to be UTC.
    """

    expression: str
    # The five fields as handed to the library: macros expanded, Sunday-ending ranges as 7.
    fields: str = field(repr=False)

    @classmethod
    def parse(cls, expr: str) -> CronSchedule:
        """Parse a five-field expression or a macro.

        Raises :class:`ValidationError` naming the expression and the field at fault, also
        for a schedule that can never match (``0 0 30 feb *``).
        """
        if not isinstance(expr, str):
            raise _error(repr(expr), None, "a cron expression is a string")
        text = expr.strip()
        if text.startswith("@"):
            if text.lower() not in _MACROS:
                known = ", ".join(sorted(_MACROS))
                raise _error(expr, None, f"unknown macro {text!r} (known: {known})")
            text_fields = _MACROS[text.lower()]
        else:
            text_fields = text
        parts = text_fields.split()
        if len(parts) != len(_FIELD_NAMES):
            raise _error(
                expr,
                None,
                f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}",
            )
        library_parts = [*parts[:4], _RANGE_TO_SUNDAY.sub("-7", parts[4])]
        schedule = cls(expression=text, fields=" ".join(library_parts))
        try:
            next(schedule._iterate_after(_FIRST_FIRE_PROBE))
        except CronSimError as exc:
            raise _library_error(expr, parts, exc) from None
        except StopIteration:
            raise _error(expr, None, "the schedule would never fire") from None
        return schedule

    def __str__(self) -> str:
        return self.expression

    def matches(self, when: datetime) -> bool:
        """Whether the minute containing ``when`` (UTC) is one this schedule fires on."""
        minute = _as_utc(when).replace(second=0, microsecond=0)
        return self.next_after(minute - timedelta(seconds=1)) == minute

    def next_after(self, when: datetime) -> datetime:
        """The first matching minute strictly after ``when``, as an aware UTC datetime."""
        try:
            return next(self._iterate_after(_as_utc(when)))
        except StopIteration:
            # Unreachable for schedules that passed parse(); said plainly if it happens.
            raise _error(self.expression, None, "no matching time within 50 years") from None

    def _iterate_after(self, when: datetime) -> CronSim:
        return CronSim(self.fields, when)


def _library_error(expr: str, parts: list[str], exc: CronSimError) -> ValidationError:
    # The library says "Bad <field>" for a field it refuses.
    reason = str(exc)
    for index, name in enumerate(_FIELD_NAMES):
        if reason == f"Bad {name}":
            return _error(expr, name, f"{parts[index]!r} is not valid (takes {_FIELD_HINTS[name]})")
    return _error(expr, None, reason)


def _as_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _error(expr: str, field_name: str | None, message: str) -> ValidationError:
    where = f"field {field_name!r}: " if field_name else ""
    return ValidationError([Problem(f"cron {expr!r}: {where}{message}")])


__all__ = ["CronSchedule"]
