"""JSON in and out, one way everywhere (compact, UTF-8, datetimes as ISO 8601).

orjson does the work: events and answers are encoded and decoded on every hot path, where it
is several times faster than the standard library.
"""

from __future__ import annotations

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


__all__ = ["dumpb", "dumps", "loads"]
