"""Reading the SQL log without a consumer group: a place kept in memory, nothing written.

A :class:`SqlLogReader` (``SqlEventBackend.open_reader``) reads the log in seq order from a
place of its own. It writes nothing to the database, so a reader that ends in any way,
killed included, leaves nothing behind. Each look reads a range from the first seq past its
place, up to the backend's ``scan_span`` seqs and at most up to the newest committed seq,
with the pattern tested in SQL, and moves its place to the end of what it read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from hybridmesh.core.ids import new_id
from hybridmesh.events.backend import Delivery
from hybridmesh.events.backends import _sql_queries as q
from hybridmesh.events.backends._sql_batches import delivery_of
from hybridmesh.events.backends._sql_log import LogRecorder
from hybridmesh.events.subjects import matches
from hybridmesh.store import Store

T = TypeVar("T")


@dataclass(slots=True, frozen=True)
class Found(Generic[T]):
    """What one look found, and whether it passed over events it does not want (then the
    looker is not idle) and stopped short of the newest (then it looks on at once)."""

    items: list[T]
    passed_over: bool = False
    cut_short: bool = False


class Host(Protocol):
    """What a reader needs of its backend (``SqlEventBackend``): to look until something
    comes, waking and pausing as group fetches do, and to forget the reader."""

    async def _read_log(
        self, reader: SqlLogReader, max_events: int, wait: float
    ) -> list[Delivery]: ...

    def _forget(self, reader: SqlLogReader) -> None: ...


class SqlLogReader:
    """An :class:`~hybridmesh.events.backend.EventReader` of the SQL log."""

    def __init__(self, backend: Host, pattern: str, position: int) -> None:
        self.pattern = pattern
        self.position = position  # every seq up to this one has been read
        self.key = f"reader:{new_id()}"  # its idle pauses, beside the groups'
        self._backend: Host | None = backend

    async def read(self, max_events: int, wait: float) -> list[Delivery]:
        if self._backend is None or max_events < 1:
            return []
        return await self._backend._read_log(self, max_events, wait)

    async def look(
        self, store: Store, recorder: LogRecorder, max_events: int, span: int
    ) -> Found[Delivery]:
        """One look: the events wanted in the next range, and the place moved past it."""
        bounds = await store.fetch_one(q.READ_BOUNDS, self.position)
        if bounds is None or bounds["first"] is None:
            return Found([])
        newest = int(bounds["newest"])
        upto = min(int(bounds["first"]) + span - 1, newest)
        narrowing, narrowing_args = q.type_filter(self.pattern, recorder.wildcard_match)
        rows = await store.fetch_all(
            q.read_log_sql(narrowing), self.position, upto, *narrowing_args, max_events
        )
        full = len(rows) >= max_events
        read_upto = int(rows[-1]["seq"]) if full else upto
        found = [
            delivery_of(row["body"], int(row["seq"]), 1)
            for row in rows
            if matches(self.pattern, row["type"])
        ]
        passed_over = read_upto > self.position and not found
        self.position = max(self.position, read_upto)
        return Found(found, passed_over, full or upto < newest)

    async def close(self) -> None:
        if self._backend is not None:
            self._backend._forget(self)
            self._backend = None


__all__ = ["Found", "SqlLogReader"]
