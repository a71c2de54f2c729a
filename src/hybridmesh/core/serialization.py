"""JSON in and out, one way everywhere (compact, UTF-8, datetimes as ISO 8601).

orjson does the work: events and answers are encoded and decoded on every hot path, where it
is several times faster than the standard library.
"""

from __future__ import annotations

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
    """Parse JSON text or bytes; raises ``ValueError`` when it is not JSON."""
    return orjson.loads(text)


#: The whole numbers JSON holds here: 64 bits, signed or not (what orjson writes).
JSON_INT_MIN, JSON_INT_MAX = -(2**63), 2**64 - 1


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
        return "must be a whole number within 64 bits"
    if isinstance(value, float):
        return None if math.isfinite(value) else "must be a finite number"
    return f"is not a JSON value (a {type(value).__name__})"


__all__ = [
    "JSON_INT_MAX",
    "JSON_INT_MIN",
    "dumpb",
    "dumps",
    "json_problems",
    "loads",
    "walk",
]
