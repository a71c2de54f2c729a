"""Callables the replication tests name in their definitions (``module:attribute``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def initials(row: Mapping[str, Any]) -> str:
    return "".join(part[:1] for part in str(row.get("name") or "").split()).upper()
