"""JSON in and out, one way everywhere (compact, UTF-8, datetimes as ISO 8601)."""

from __future__ import annotations

import json
from datetime import date, datetime
from enum import Enum
from typing import Any


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
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_default)


def dumpb(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    return dumps(value).encode()


def loads(text: str | bytes) -> Any:
    """Parse JSON text or bytes."""
    return json.loads(text)


__all__ = ["dumpb", "dumps", "loads"]
