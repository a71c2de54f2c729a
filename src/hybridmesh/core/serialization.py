"""JSON in and out, one way everywhere (compact, UTF-8, datetimes as ISO 8601).

orjson does the work: events and answers are encoded and decoded on every hot path, where it
is several times faster than the standard library.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> str:
    """Compact JSON text."""
    return orjson.dumps(value, default=_default, option=_OPTIONS).decode()


def dumpb(value: Any, *, utc_z: bool = False) -> bytes:
    """Compact JSON as UTF-8 bytes. With ``utc_z``, aware datetimes in UTC are written
    RFC 3339 style with ``Z`` (and are encoded natively, which is faster)."""
    option = _OPTIONS | orjson.OPT_UTC_Z if utc_z else _OPTIONS
    return orjson.dumps(value, default=_default, option=option)


def loads(text: str | bytes) -> Any:
    """Parse JSON text or bytes; raises ``ValueError`` when it is not JSON.

    For JSON this library wrote itself, which holds no whole number beyond 64 bits (orjson
    cannot write one). JSON from outside goes through :func:`loads_input`: orjson reads
    such a number as a float, losing its last digits without a word."""
    return orjson.loads(text)


#: The whole numbers JSON holds here: 64 bits, signed or not (what orjson writes).
JSON_INT_MIN, JSON_INT_MAX = -(2**63), 2**64 - 1

#: What is wrong with a whole number outside :data:`JSON_INT_MIN`..:data:`JSON_INT_MAX`.
WIDE_INT_PROBLEM = f"must be a whole number within 64 bits ({JSON_INT_MIN} to {JSON_INT_MAX})"


class JSONNumberError(ValueError):
    """JSON text holding a whole number beyond 64 bits. ``problems`` lists each one's
    place (``payload.n``, ``[1].data.n``; empty for the whole text) with what is wrong."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{at}: {what}" if at else what for at, what in problems))


def loads_input(text: str | bytes, at: str = "") -> Any:
    """Parse JSON that came from outside (a file, an option, a request, a message) as
    :func:`loads` does, but raise :class:`JSONNumberError` for a whole number beyond 64
    bits, naming its place below ``at``, rather than read it as a float with digits lost:
    it could not be stored or sent on as the number it is. Other errors are ``ValueError``.

    Costs a pass over the bytes on top of the parse; only text with a run of 19 digits
    (the shortest such number) is looked at closer.
    """
    value = orjson.loads(text)
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if _NINETEEN_DIGITS in raw.translate(_DIGITS_AS_ZERO):
        wide = _wide_ints(raw, at)
        if wide:
            raise JSONNumberError(wide)
    return value


# Every digit as "0", every other byte as itself: a number's digits become one run of "0".
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= i <= 0x39 else i for i in range(256))
_NINETEEN_DIGITS = b"0" * 19
# Enough digits to be beyond 64 bits whatever they are; such a number is not converted.
_TOO_MANY_DIGITS = 21


#: Stands for a whole number written with more than :data:`_TOO_MANY_DIGITS` digits.
_TOO_WIDE = object()


def _exact_int(digits: str) -> object:
    return _TOO_WIDE if len(digits.lstrip("-")) > _TOO_MANY_DIGITS else int(digits)


def _wide_ints(raw: bytes, at: str) -> list[tuple[str, str]]:
    """The places in ``raw`` (valid JSON) of whole numbers beyond 64 bits: the standard
    library's parser reads whole numbers exactly (it is slower, and only used here)."""
    try:
        exact = json.loads(raw, parse_int=_exact_int)
    except RecursionError:  # deeper than its parser goes: say so without the place
        return [(at, WIDE_INT_PROBLEM)]
    return [
        (where, WIDE_INT_PROBLEM)
        for where, item, is_key in walk(at, exact)
        if not is_key
        and (item is _TOO_WIDE or (type(item) is int and not JSON_INT_MIN <= item <= JSON_INT_MAX))
    ]


def walk(at: str, value: Any) -> Iterator[tuple[str, Any, bool]]:
    """Every value and key inside ``value``, each with its place (``payload.items[0]``,
    keys after a dot) and whether it is a key; iteratively, so depth costs no stack."""
    pending: list[tuple[str, Any]] = [(at, value)]
    while pending:
        where, item = pending.pop()
        yield where, item, False
        if isinstance(item, Mapping):
            for key, inner in reversed(list(item.items())):
                inside = f"{where}.{key}" if where else str(key)
                yield inside, key, True
                pending.append((inside, inner))
        elif isinstance(item, list | tuple):
            pending.extend((f"{where}[{i}]", inner) for i, inner in reversed(list(enumerate(item))))


def json_problems(value: Any, at: str = "") -> list[tuple[str, str]]:
    """Each place inside ``value`` that JSON cannot carry as it is, with what is wrong
    there: a key that is not a string, an infinity or NaN (written as null), a whole
    number beyond 64 bits, text with a lone surrogate, a value of another type (a set,
    bytes). Dates are fine: they are written as ISO 8601 text. Empty: ``value`` goes to
    JSON and back unchanged but for its dates and tuples."""
    found: list[tuple[str, str]] = []
    for where, item, is_key in walk(at, value):
        problem = _key_problem(item) if is_key else _value_problem(item)
        if problem is not None:
            found.append((where, problem))
    return found


def _key_problem(key: Any) -> str | None:
    if not isinstance(key, str):
        return f"a key must be a string, not {key!r}: quote it"
    return _value_problem(key)


def _value_problem(value: Any) -> str | None:
    if value is None or isinstance(value, bool | Mapping | list | tuple | date):
        return None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid text: it holds a lone surrogate (an escape like \\ud800)"
        return None
    if isinstance(value, int):
        if JSON_INT_MIN <= value <= JSON_INT_MAX:
            return None
        return WIDE_INT_PROBLEM
    if isinstance(value, float):
        return None if math.isfinite(value) else "must be a finite number"
    return f"is not a JSON value (a {type(value).__name__})"


__all__ = [
    "JSON_INT_MAX",
    "JSON_INT_MIN",
    "WIDE_INT_PROBLEM",
    "JSONNumberError",
    "dumpb",
    "dumps",
    "json_problems",
    "loads",
    "loads_input",
    "walk",
]
