"""The call rollup: a compact, durable count of the hybrid client's calls, for SLOs.

Prometheus counters live in one process's memory; ``hybridmesh slo report`` runs in
another. So each process also adds what its hybrid client did to the store's
``call_rollup`` table (migration 18): per minute and pair of services, the calls, those
that failed, those the target refused as the caller's mistake, and the latency of calls
answered over a synchronous pattern in the fixed buckets of :data:`ROLLUP_BUCKETS` (the
Prometheus histogram's, 0.1 s among them), with their sum.

:meth:`CallRollup.observe` runs on every call and only adds to memory. A background task
writes what was counted every :data:`FLUSH_SECONDS`: one upsert per minute and pair, adding
to the row, so replicas share rows and a row is written a few times a minute at most, never
once per call. Rows older than the retention are deleted now and then.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hybridmesh.observability.logs import get_logger
from hybridmesh.observability.metrics import CALL_DURATION_BUCKETS
from hybridmesh.observability.periodic import PeriodicWriter
from hybridmesh.store import Store

log = get_logger("hybridmesh.observability.rollup")

#: Upper bounds, in seconds, of the latency buckets; column ``lat_NN`` counts the calls
#: above bound ``NN - 1`` and at most bound ``NN``, and the last column (``lat_16``) those
#: above the largest bound. The table's columns depend on these: never change them.
ROLLUP_BUCKETS: tuple[float, ...] = CALL_DURATION_BUCKETS
#: The latency columns of ``call_rollup``, in bucket order.
LATENCY_COLUMNS: tuple[str, ...] = tuple(f"lat_{i:02d}" for i in range(len(ROLLUP_BUCKETS) + 1))
#: Seconds between writes.
FLUSH_SECONDS = 5.0
#: Days of rows kept: the longest SLO window (30 days) and some.
RETENTION_DAYS = 35
#: Seconds between deletes of rows past the retention.
PRUNE_SECONDS = 600.0
#: Minute-and-pair cells held when the store cannot take them; the oldest go first past it.
MAX_PENDING_CELLS = 50_000


@dataclass(slots=True)
class RollupCell:
    """One minute of one pair's calls, as counted since the last write."""

    source_architecture: str
    target_architecture: str
    calls: int = 0
    failures: int = 0
    client_errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * len(LATENCY_COLUMNS))
    latency_sum: float = 0.0

    def add(self, other: RollupCell) -> None:
        self.calls += other.calls
        self.failures += other.failures
        self.client_errors += other.client_errors
        for index, count in enumerate(other.latency):
            self.latency[index] += count
        self.latency_sum += other.latency_sum


#: A cell's key: (the minute's first epoch second, source service, target service).
CellKey = tuple[int, str, str]


class CallRollup:
    """One process's counting of calls per minute and pair, added to ``call_rollup`` in
    the background.

    :meth:`start` begins the writer task; :meth:`close` stops it and writes what is left.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        flush_seconds: float = FLUSH_SECONDS,
        retention_days: int = RETENTION_DAYS,
        max_pending_cells: int = MAX_PENDING_CELLS,
    ) -> None:
        self.store = store
        self.clock = clock
        self.retention_days = retention_days
        self.max_pending_cells = max_pending_cells
        self._cells: dict[CellKey, RollupCell] = {}
        self._lock = asyncio.Lock()
        self._writer = PeriodicWriter(
            "call rollup",
            write=self.flush,
            prune=self.prune,
            flush_seconds=flush_seconds,
            prune_seconds=PRUNE_SECONDS,
        )
        self.dropped_cells = 0

    def observe(
        self,
        source: str,
        target: str,
        source_architecture: str,
        target_architecture: str,
        outcome: str,
        seconds: float | None,
    ) -> None:
        """Count one call that ended with ``outcome`` (see
        :data:`~hybridmesh.observability.metrics.COMMUNICATION_OUTCOMES`); ``seconds`` is
        its duration when it was answered over a synchronous pattern, else None."""
        key = (int(self.clock()) // 60 * 60, source, target)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = RollupCell(source_architecture, target_architecture)
        cell.calls += 1
        if outcome == "failure":
            cell.failures += 1
        elif outcome == "client_error":
            cell.client_errors += 1
        if seconds is not None:
            cell.latency[bisect_left(ROLLUP_BUCKETS, seconds)] += 1
            cell.latency_sum += seconds

    async def flush(self) -> int:
        """Add everything counted so far to the store; return the rows written. When the
        store refuses them, the counts are kept for the next flush (past
        ``max_pending_cells``, the oldest minutes are dropped, and counted in
        :attr:`dropped_cells`)."""
        async with self._lock:
            cells, self._cells = self._cells, {}
            if not cells:
                return 0
            rows = [_row(key, cell) for key, cell in sorted(cells.items())]
            try:
                async with self.store.transaction() as tx:
                    await tx.executemany(_UPSERT, rows)
            except BaseException:
                self._keep(cells)
                raise
            return len(rows)

    def _keep(self, cells: dict[CellKey, RollupCell]) -> None:
        """Put back counts a failed write did not store, merged with any counted since."""
        for key, cell in self._cells.items():
            if key in cells:
                cells[key].add(cell)
            else:
                cells[key] = cell
        excess = len(cells) - self.max_pending_cells
        if excess > 0:
            for key in sorted(cells)[:excess]:
                del cells[key]
            self.dropped_cells += excess
            log.warning("call rollup: the store is behind; %d minute cells dropped", excess)
        self._cells = cells

    async def prune(self) -> int:
        """Delete rows older than the retention (every process's)."""
        cutoff = int(self.clock()) - self.retention_days * 86_400
        return await self.store.execute("DELETE FROM call_rollup WHERE minute < ?", cutoff)

    def start(self) -> None:
        """Start writing in the background (inside a running event loop)."""
        self._writer.start()

    async def close(self) -> None:
        """Stop the writer and write what is left (a failure is logged, not raised)."""
        await self._writer.close()


def _row(key: CellKey, cell: RollupCell) -> tuple[Any, ...]:
    minute, source, target = key
    return (
        minute,
        source,
        target,
        cell.source_architecture,
        cell.target_architecture,
        cell.calls,
        cell.failures,
        cell.client_errors,
        *cell.latency,
        cell.latency_sum,
    )


_COLUMNS = (
    "minute",
    "source",
    "target",
    "source_architecture",
    "target_architecture",
    "calls",
    "failures",
    "client_errors",
    *LATENCY_COLUMNS,
    "latency_sum",
)
_ADDED = ("calls", "failures", "client_errors", *LATENCY_COLUMNS, "latency_sum")
_UPSERT = (
    f"INSERT INTO call_rollup ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)}) "
    "ON CONFLICT (minute, source, target) DO UPDATE SET "
    "source_architecture = excluded.source_architecture, "
    "target_architecture = excluded.target_architecture, "
    + ", ".join(f"{c} = call_rollup.{c} + excluded.{c}" for c in _ADDED)
)


__all__ = [
    "FLUSH_SECONDS",
    "LATENCY_COLUMNS",
    "RETENTION_DAYS",
    "ROLLUP_BUCKETS",
    "CallRollup",
    "RollupCell",
]
