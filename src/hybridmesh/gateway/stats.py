"""Stats windows: what each route's backends did in the last seconds, across replicas.

Every replica counts, per route and backend and per second of wall-clock time, the requests
it answered, the errors among them (a status of 500 or more: the backend's 5xx and the
gateway's own 502/503/504 when the backend could not be reached, was ejected or did not
answer in time) and a :class:`LatencyHistogram` of their durations. Once a second it writes
the seconds that are over to the store's ``gw_windows`` table (one row per replica, route,
backend and second; in the background, in one transaction, never on a request's path) and
deletes rows older than :data:`RETENTION_SECONDS`.

A mirror's copies are counted as backend ``mirror:<candidate>`` (see
:mod:`hybridmesh.gateway.mirror`), and their rows also hold how many copies were compared
with the primary's answer and how many of those differed (``compared``, ``mismatches``):
the mismatch rate of a parallel run, from the store, every replica together.

:func:`window_stats` (also :meth:`GatewayState.window_stats
<hybridmesh.gateway.state.GatewayState.window_stats>`) merges every replica's rows of the
last N seconds into one :class:`BackendWindow` per backend: requests, errors, error rate and
the 50th, 95th and 99th percentile latencies. Histograms of different replicas and seconds
add up bucket by bucket because every replica uses the same fixed buckets
(:data:`BUCKET_BOUNDS`), so a percentile over a window is estimated from all of its
requests, not averaged from the replicas' percentiles::

    stats = await window_stats(store, "orders", 60)
    for name, backend in stats.backends.items():
        print(name, backend.requests, backend.error_rate, backend.p99_ms)

Seconds are whole Unix seconds; a window of N seconds covers the N seconds before the
current one (the current second is still being counted). A replica writes a second within
about a second of its end, so the newest second of a window may still be missing a
replica's share.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import re
import socket
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hybridmesh.core.ids import new_id
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.observability import get_logger
from hybridmesh.observability.periodic import PeriodicWriter
from hybridmesh.store import Store

log = get_logger("hybridmesh.gateway.stats")

#: Buckets per factor of ten: each bucket's upper bound is 10**(1/20), about 12 %, above
#: the one before, so an estimated percentile is within about 6 % of the true one.
BUCKETS_PER_DECADE = 20
#: The smallest bucket's upper bound, in seconds (0.1 ms).
SMALLEST_BOUND = 0.0001
#: The upper bounds of the latency buckets, in seconds, from 0.1 ms to a little over 60 s
#: (117 buckets; a last, open bucket takes anything longer). Never change these without a
#: new histogram version: replicas and stored rows must agree.
BUCKET_BOUNDS: tuple[float, ...] = tuple(
    SMALLEST_BOUND * 10 ** (index / BUCKETS_PER_DECADE) for index in range(117)
)
#: The version of the latency JSON (``{"v": 1, "counts": {...}, "sum": seconds}``).
HISTOGRAM_VERSION = 1
#: How long rows are kept in ``gw_windows``.
RETENTION_SECONDS = 3600
#: The longest window :func:`window_stats` merges.
MAX_WINDOW_SECONDS = RETENTION_SECONDS
#: Seconds between writes of finished seconds.
FLUSH_SECONDS = 1.0
#: Seconds between deletes of rows past :data:`RETENTION_SECONDS`.
PRUNE_SECONDS = 60.0
#: Rows a replica holds when the store cannot take them; the oldest go first past it.
MAX_PENDING_ROWS = 100_000


class LatencyHistogram:
    """Counts of durations in the fixed buckets of :data:`BUCKET_BOUNDS`, and their sum.

    Bucket ``i`` holds durations above ``BUCKET_BOUNDS[i - 1]`` and at most
    ``BUCKET_BOUNDS[i]`` (bucket 0 everything up to 0.1 ms, the last one everything beyond
    the largest bound). Histograms merge by adding their counts.
    """

    __slots__ = ("counts", "sum", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self.sum = 0.0

    def add(self, seconds: float, count: int = 1) -> None:
        index = bisect_left(BUCKET_BOUNDS, seconds)
        self.counts[index] = self.counts.get(index, 0) + count
        self.total += count
        self.sum += seconds * count

    def merge(self, other: LatencyHistogram) -> None:
        for index, count in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + count
        self.total += other.total
        self.sum += other.sum

    def quantile(self, q: float) -> float | None:
        """The estimated ``q`` quantile (0 < q <= 1) in seconds; None when empty.

        The bucket holding the ``q * total``-th duration is found, and the estimate is
        interpolated within it on a log scale (durations spread evenly in log space within
        a bucket); past the largest bound it is that bound.
        """
        if self.total == 0:
            return None
        rank = q * self.total
        seen = 0
        for index in sorted(self.counts):
            count = self.counts[index]
            if seen + count >= rank:
                fraction = min(max((rank - seen) / count, 0.0), 1.0)
                return _within(index, fraction)
            seen += count
        return _within(max(self.counts), 1.0)

    def percentile_ms(self, percent: float) -> float | None:
        """The estimated ``percent`` percentile in milliseconds; None when empty."""
        seconds = self.quantile(percent / 100)
        return None if seconds is None else seconds * 1000

    def to_json(self) -> dict[str, Any]:
        return {
            "v": HISTOGRAM_VERSION,
            "counts": {str(index): count for index, count in sorted(self.counts.items())},
            "sum": self.sum,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencyHistogram:
        histogram = cls()
        if data.get("v") != HISTOGRAM_VERSION:
            raise ValueError(f"unknown latency histogram version {data.get('v')!r}")
        for key, count in data.get("counts", {}).items():
            index, count = int(key), int(count)
            if not 0 <= index <= len(BUCKET_BOUNDS) or count < 0:
                raise ValueError(f"latency bucket {key!r}: {count!r} is out of range")
            histogram.counts[index] = histogram.counts.get(index, 0) + count
            histogram.total += count
        histogram.sum = float(data.get("sum", 0.0))
        return histogram


def _within(index: int, fraction: float) -> float:
    if index >= len(BUCKET_BOUNDS):
        return BUCKET_BOUNDS[-1]
    upper = BUCKET_BOUNDS[index]
    if index == 0:
        return upper * fraction
    lower = BUCKET_BOUNDS[index - 1]
    return float(lower * (upper / lower) ** fraction)


# -- reading windows -------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendWindow:
    """One backend of a route over a window, all replicas together."""

    backend: str
    requests: int
    #: Answers with a status of 500 or more (the gateway's 502/503/504 included).
    errors: int
    latency: LatencyHistogram = field(repr=False, compare=False)
    #: A mirror's copies compared with the primary's answer, and those that differed
    #: (0 for a backend that is not a mirror).
    compared: int = 0
    mismatches: int = 0

    @property
    def error_rate(self) -> float:
        """``errors / requests``; 0.0 when there was no request."""
        return self.errors / self.requests if self.requests else 0.0

    @property
    def mismatch_rate(self) -> float:
        """``mismatches / compared``; 0.0 when nothing was compared."""
        return self.mismatches / self.compared if self.compared else 0.0

    def percentile_ms(self, percent: float) -> float | None:
        """The estimated ``percent`` percentile latency in milliseconds (None: no request)."""
        return self.latency.percentile_ms(percent)

    @property
    def p50_ms(self) -> float | None:
        return self.percentile_ms(50)

    @property
    def p95_ms(self) -> float | None:
        return self.percentile_ms(95)

    @property
    def p99_ms(self) -> float | None:
        return self.percentile_ms(99)

    @property
    def mean_ms(self) -> float | None:
        if not self.latency.total:
            return None
        return self.latency.sum / self.latency.total * 1000

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "backend": self.backend,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "p50_ms": rounded(self.p50_ms),
            "p95_ms": rounded(self.p95_ms),
            "p99_ms": rounded(self.p99_ms),
            "mean_ms": rounded(self.mean_ms),
            "compared": self.compared,
            "mismatches": self.mismatches,
        }


@dataclass(frozen=True)
class WindowStats:
    """A route over the seconds ``since`` (included) to ``until`` (excluded)."""

    route: str
    window_seconds: int
    since: int
    until: int
    #: How many replicas wrote rows for the route in the window.
    replicas: int
    #: By backend name; ``-`` holds requests the gateway answered before choosing a
    #: backend (refused by a policy).
    backends: dict[str, BackendWindow]

    @property
    def requests(self) -> int:
        return sum(b.requests for b in self.backends.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "window_seconds": self.window_seconds,
            "since": self.since,
            "until": self.until,
            "replicas": self.replicas,
            "requests": self.requests,
            "backends": [self.backends[name].to_dict() for name in sorted(self.backends)],
        }


async def window_stats(
    store: Store,
    route: str,
    window_seconds: int,
    *,
    now: float | None = None,
) -> WindowStats:
    """Every replica's counts for ``route`` over the last ``window_seconds`` seconds
    (1 to :data:`MAX_WINDOW_SECONDS`), merged per backend.

    The window is the ``window_seconds`` whole seconds before the current one (``now``,
    Unix seconds, defaults to the wall clock). A backend with no request in the window is
    absent.
    """
    if not 1 <= window_seconds <= MAX_WINDOW_SECONDS:
        raise ValueError(f"a window is 1 to {MAX_WINDOW_SECONDS} seconds")
    until = int(time.time() if now is None else now)
    since = until - int(window_seconds)
    rows = await store.fetch_all(
        "SELECT replica, backend, requests, errors, compared, mismatches, latency "
        "FROM gw_windows "
        "WHERE route = ? AND second >= ? AND second < ?",
        route,
        since,
        until,
    )
    merged: dict[str, tuple[int, int, int, int, LatencyHistogram]] = {}
    replicas: set[str] = set()
    for row in rows:
        replicas.add(row["replica"])
        requests, errors, compared, mismatches, histogram = merged.get(
            row["backend"], (0, 0, 0, 0, LatencyHistogram())
        )
        try:
            histogram.merge(LatencyHistogram.from_json(loads(row["latency"])))
        except (ValueError, TypeError, AttributeError) as error:
            log.warning(
                "gateway stats: a row of replica %s is unreadable: %s", row["replica"], error
            )
        merged[row["backend"]] = (
            requests + int(row["requests"]),
            errors + int(row["errors"]),
            compared + int(row["compared"]),
            mismatches + int(row["mismatches"]),
            histogram,
        )
    return WindowStats(
        route,
        int(window_seconds),
        since,
        until,
        len(replicas),
        {
            name: BackendWindow(name, requests, errors, histogram, compared, mismatches)
            for name, (requests, errors, compared, mismatches, histogram) in merged.items()
        },
    )


async def backend_series(
    store: Store, route: str, backend: str, since: int, until: int, step: int
) -> list[BackendWindow]:
    """``backend`` of ``route`` from second ``since`` (included) to ``until`` (excluded)
    in slices of ``step`` seconds, every replica together: one :class:`BackendWindow` per
    slice, oldest first (slice ``i`` starts at ``since + i * step``; one without a request
    counts 0). One read, whatever the number of slices: a chart of a metric over time."""
    step = max(1, int(step))
    rows = await store.fetch_all(
        "SELECT second, requests, errors, compared, mismatches, latency FROM gw_windows "
        "WHERE route = ? AND backend = ? AND second >= ? AND second < ?",
        route,
        backend,
        since,
        until,
    )
    slices = max(0, -(-(until - since) // step))
    requests, errors = [0] * slices, [0] * slices
    compared, mismatches = [0] * slices, [0] * slices
    latency = [LatencyHistogram() for _ in range(slices)]
    for row in rows:
        index = (int(row["second"]) - since) // step
        requests[index] += int(row["requests"])
        errors[index] += int(row["errors"])
        compared[index] += int(row["compared"])
        mismatches[index] += int(row["mismatches"])
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            latency[index].merge(LatencyHistogram.from_json(loads(row["latency"])))
    return [
        BackendWindow(backend, requests[i], errors[i], latency[i], compared[i], mismatches[i])
        for i in range(slices)
    ]


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds of a duration written ``90``, ``30s``, ``5m``, ``1h`` or ``250ms``;
    :class:`ValueError` for anything else (or a value that is not finite and above 0)."""
    found = _DURATION.fullmatch(text)
    if found is None:
        raise ValueError(f"{text[:40]!r} is not a duration (such as 30s, 5m or 1h)")
    seconds = float(found.group(1)) * _UNITS[(found.group(2) or "s").lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{text[:40]!r}: a duration must be above 0")
    return seconds


# -- recording -------------------------------------------------------------------------------


class _Cell:
    __slots__ = ("compared", "errors", "latency", "mismatches", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.compared = 0
        self.mismatches = 0
        self.latency = LatencyHistogram()


def default_replica_id() -> str:
    """``host:pid:random``: unique per process, recognisable in the table."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{new_id()[:6]}"


class WindowRecorder:
    """One replica's counting of requests per route, backend and second, written to
    ``gw_windows`` in the background.

    :meth:`observe` runs on every request and only adds to memory; :meth:`start` begins
    the task that writes finished seconds every :data:`FLUSH_SECONDS` and prunes old rows;
    :meth:`close` writes everything counted, the current second included.
    """

    def __init__(
        self,
        store: Store,
        *,
        replica: str | None = None,
        clock: Callable[[], float] = time.time,
        flush_seconds: float = FLUSH_SECONDS,
        retention_seconds: int = RETENTION_SECONDS,
        max_pending_rows: int = MAX_PENDING_ROWS,
    ) -> None:
        self.store = store
        self.replica = replica or default_replica_id()
        self.clock = clock
        self.retention_seconds = retention_seconds
        self.max_pending_rows = max_pending_rows
        self._second = int(clock())
        self._current: dict[tuple[str, str], _Cell] = {}
        self._finished: dict[int, dict[tuple[str, str], _Cell]] = {}
        self._pending: list[tuple[Any, ...]] = []
        self._lock = asyncio.Lock()
        self._writer = PeriodicWriter(
            "gateway stats",
            write=self.flush,
            prune=self.prune,
            last_write=functools.partial(self.flush, everything=True),
            flush_seconds=flush_seconds,
            prune_seconds=PRUNE_SECONDS,
        )
        self.dropped_rows = 0

    def observe(self, route: str, backend: str, status: int, seconds: float) -> None:
        """Count one answered request (``route`` ``-``: no route took it, not counted)."""
        if route == "-":
            return
        second = int(self.clock())  # not _cell(): a call less on every request
        if second > self._second:
            self._roll(second)
        cell = self._current.get((route, backend))
        if cell is None:
            cell = self._current[(route, backend)] = _Cell()
        cell.requests += 1
        if status >= 500:
            cell.errors += 1
        cell.latency.add(seconds)

    def compared(self, route: str, backend: str, mismatched: bool) -> None:
        """Count one mirrored copy compared with the primary's answer (``backend`` is the
        mirror's, ``mirror:<candidate>``), and whether they differed."""
        cell = self._cell(route, backend)
        cell.compared += 1
        if mismatched:
            cell.mismatches += 1

    def _cell(self, route: str, backend: str) -> _Cell:
        second = int(self.clock())
        if second > self._second:
            self._roll(second)
        cell = self._current.get((route, backend))
        if cell is None:
            cell = self._current[(route, backend)] = _Cell()
        return cell

    def _roll(self, second: int) -> None:
        """Close the current second (a clock that went back keeps counting into it)."""
        if self._current:
            self._finished[self._second] = self._current
            self._current = {}
        self._second = second

    def _take(self, *, everything: bool) -> list[tuple[Any, ...]]:
        second = int(self.clock())
        if second > self._second:
            self._roll(second)
        if everything and self._current:
            self._finished[self._second] = self._current
            self._current = {}
        # The second under way goes too, as counted so far (and again, whole, once it is
        # over: rows are upserted): a gate reading the windows sees a failure within a
        # flush of it, not a second and a flush later.
        seconds = sorted(self._finished.items())
        if self._current:
            seconds.append((self._second, self._current))
        rows = [
            (
                self.replica,
                route,
                backend,
                at,
                cell.requests,
                cell.errors,
                cell.compared,
                cell.mismatches,
                dumps(cell.latency.to_json()),
            )
            for at, cells in seconds
            for (route, backend), cell in cells.items()
        ]
        self._finished.clear()
        return rows

    async def flush(self, *, everything: bool = False) -> int:
        """Write the finished seconds and the current one as counted so far (with
        ``everything``, the current one is closed: nothing more is counted into it);
        returns the rows written. Rows the store refuses are kept for the next flush (the oldest
        dropped past ``max_pending_rows``)."""
        async with self._lock:
            self._pending.extend(self._take(everything=everything))
            if len(self._pending) > self.max_pending_rows:
                excess = len(self._pending) - self.max_pending_rows
                self.dropped_rows += excess
                del self._pending[:excess]
                log.warning("gateway stats: the store is behind; %d rows dropped", excess)
            if not self._pending:
                return 0
            rows = self._pending
            async with self.store.transaction() as tx:
                await tx.executemany(_UPSERT, rows)
            self._pending = []
            return len(rows)

    async def prune(self) -> int:
        """Delete rows (of every replica) older than the retention."""
        cutoff = int(self.clock()) - self.retention_seconds
        return await self.store.execute("DELETE FROM gw_windows WHERE second < ?", cutoff)

    def start(self) -> None:
        """Start writing in the background (inside a running event loop)."""
        self._writer.start()

    async def close(self) -> None:
        """Stop the writer and write what is left (a failure is logged, not raised)."""
        await self._writer.close()


_UPSERT = (
    "INSERT INTO gw_windows (replica, route, backend, second, requests, errors, compared, "
    "mismatches, latency) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (route, second, replica, backend) DO UPDATE SET "
    "requests = excluded.requests, errors = excluded.errors, compared = excluded.compared, "
    "mismatches = excluded.mismatches, latency = excluded.latency"
)


def merge_histograms(histograms: Iterable[LatencyHistogram]) -> LatencyHistogram:
    """One histogram holding every duration of ``histograms``."""
    merged = LatencyHistogram()
    for histogram in histograms:
        merged.merge(histogram)
    return merged


__all__ = [
    "BUCKET_BOUNDS",
    "MAX_WINDOW_SECONDS",
    "RETENTION_SECONDS",
    "BackendWindow",
    "LatencyHistogram",
    "WindowRecorder",
    "WindowStats",
    "backend_series",
    "default_replica_id",
    "merge_histograms",
    "parse_duration",
    "window_stats",
]
