"""The last good answer to each query, kept to serve as a fallback when the target fails."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A cached answer and how old it is."""

    data: Any
    status: int
    stored_at: float
    age: float


class ResponseCache:
    """A bounded LRU map from a query's key to its last successful answer.

    Entries older than ``max_age`` seconds are not served. The cache is a fallback, never a
    shortcut: a query always goes to its target first.
    """

    def __init__(
        self, *, max_entries: int = 10_000, max_age: float = 300.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self._clock = clock
        self._entries: OrderedDict[tuple[Any, ...], tuple[Any, int, float]] = OrderedDict()

    def put(self, key: tuple[Any, ...], data: Any, status: int) -> None:
        entries = self._entries
        entries[key] = (data, status, self._clock.monotonic())
        entries.move_to_end(key)
        if len(entries) > self.max_entries:
            entries.popitem(last=False)

    def get(self, key: tuple[Any, ...]) -> CachedAnswer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        data, status, stored_at = entry
        age = self._clock.monotonic() - stored_at
        if age > self.max_age:
            del self._entries[key]
            return None
        return CachedAnswer(data, status, stored_at, age)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()


__all__ = ["CachedAnswer", "ResponseCache"]
