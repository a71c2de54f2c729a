"""The integration guide's success metrics as service level objectives, measured from the
store.

=========================  =========  =========================================================
SLO                        objective  SLI: good events / valid events, and where they come from
=========================  =========  =========================================================
integration-reliability    99.9 %     calls the hybrid client answered (first pattern, a
                                      fallback or a cached answer) / its calls, less those the
                                      target refused as the caller's mistake (a 4xx other than
                                      408 and 429); from the call rollup (``call_rollup``)
sync-latency               95 %       calls answered over a synchronous pattern (REST,
                                      GraphQL) within 100 ms / such calls: the guide's "p95
                                      under 100 ms" as a ratio, with a budget; from the call
                                      rollup's latency buckets (the p95 itself is reported too)
workflow-completion        99.5 %     executions that completed / executions that reached a
                                      terminal status, less those cancelled (by request: not
                                      the platform's failure); failed, compensated and
                                      compensation_failed are bad; from ``orch_executions``
data-consistency           99 %       rows that agree / rows compared, in each replication's
                                      latest finished reconciliation run of the window (the
                                      guide's "inconsistency under 1 %"); from
                                      ``data_reconcile_runs``
=========================  =========  =========================================================

For each SLO and window (1 h, 24 h, 30 d), overall and per subject (a pair of services, a
saga or workflow, a replication), a :class:`Measurement` gives:

- ``sli``: good / total (None without events);
- ``error_rate``: 1 - sli;
- ``burn_rate``: error_rate / (1 - objective): 1 spends the budget exactly as fast as the
  objective allows, 14.4 spends a 30-day budget in about two days;
- ``error_budget_remaining``: the fraction of the window's budget (``(1 - objective) *
  total`` bad events) not yet spent, 1 - burn_rate, never below 0;
- ``status``: ``no_data`` (no event), ``exhausted`` (burn rate 1 or more: the window's
  budget is spent), ``burning`` (half of it or more is spent) or ``ok``.

Windows end at ``now``: a minute of the rollup counts when it starts after the window's
start; an execution when it ended, a reconciliation run when it finished, after the
window's start and not after ``now``. The rollup is written every few seconds, so the
newest seconds may be missing.

:func:`slo_report` is the API (``hybridmesh slo report``, and any HTTP endpoint, return its
:meth:`SloReport.to_json`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hybridmesh.observability.rollup import LATENCY_COLUMNS, ROLLUP_BUCKETS
from hybridmesh.store import Store

#: The windows a report covers, by name, in seconds.
WINDOWS: dict[str, int] = {"1h": 3600, "24h": 86_400, "30d": 30 * 86_400}
#: The latency the sync-latency SLO counts a call good within, in seconds (a bucket bound).
LATENCY_THRESHOLD_SECONDS = 0.1
#: The share of a window's budget spent from which an SLO is ``burning``.
BURNING_SPENT = 0.5
#: Execution statuses that count against workflow completion; ``cancelled`` counts neither
#: way, and ``completed`` is the good one.
BAD_EXECUTION_STATUSES: tuple[str, ...] = ("failed", "compensated", "compensation_failed")
#: Reconciliation run statuses whose counts are measured (``failed`` and ``running`` runs
#: compared nothing to the end).
MEASURED_RUN_STATUSES: tuple[str, ...] = ("consistent", "repaired", "inconsistent")


def error_budget(objective: float) -> float:
    """The share of events allowed to be bad, ``1 - objective``, rounded so that 99.9 %
    gives exactly 0.001 (in floating point it is 0.0010000000000000009, and a window that
    spent its whole budget would read as not quite spent)."""
    return round(1 - objective, 9)


@dataclass(frozen=True)
class SloDefinition:
    """One objective: its name, target ratio of good events, and what it measures."""

    name: str
    objective: float
    sli: str
    source: str
    #: The label names of a measurement's subject (a pair of services, a definition, ...).
    subject: tuple[str, ...]


RELIABILITY = SloDefinition(
    "integration-reliability",
    0.999,
    "calls answered (first pattern, fallback or cached answer) / calls, less client errors",
    "call_rollup",
    ("source", "target", "source_architecture", "target_architecture"),
)
LATENCY = SloDefinition(
    "sync-latency",
    0.95,
    "calls answered over REST or GraphQL within 100 ms / calls answered over them "
    "(p95 under 100 ms)",
    "call_rollup",
    ("source", "target", "source_architecture", "target_architecture"),
)
WORKFLOW_COMPLETION = SloDefinition(
    "workflow-completion",
    0.995,
    "executions completed / executions ended (failed, compensated or compensation_failed "
    "are bad; cancelled ones are left out)",
    "orch_executions",
    ("kind", "name"),
)
DATA_CONSISTENCY = SloDefinition(
    "data-consistency",
    0.99,
    "rows that agree / rows compared, in each replication's latest reconciliation run "
    "(inconsistency under 1 %)",
    "data_reconcile_runs",
    ("replication",),
)
#: Every SLO, in report order.
SLOS: tuple[SloDefinition, ...] = (RELIABILITY, LATENCY, WORKFLOW_COMPLETION, DATA_CONSISTENCY)


@dataclass(frozen=True)
class Measurement:
    """One SLO over one window, for one subject or overall."""

    good: int
    total: int
    objective: float
    #: Events counted neither good nor bad (client errors, cancelled executions).
    excluded: int = 0
    #: The subject's labels (empty overall).
    labels: Mapping[str, str] = field(default_factory=dict)
    #: sync-latency only: the estimated 95th percentile, in seconds.
    p95_seconds: float | None = None

    @property
    def bad(self) -> int:
        return self.total - self.good

    @property
    def sli(self) -> float | None:
        return self.good / self.total if self.total else None

    @property
    def error_rate(self) -> float | None:
        return self.bad / self.total if self.total else None

    @property
    def burn_rate(self) -> float | None:
        rate = self.error_rate
        return None if rate is None else rate / error_budget(self.objective)

    @property
    def error_budget_remaining(self) -> float | None:
        burn = self.burn_rate
        return None if burn is None else max(0.0, 1 - burn)

    @property
    def status(self) -> str:
        burn = self.burn_rate
        if burn is None:
            return "no_data"
        if burn >= 1:
            return "exhausted"
        if burn >= BURNING_SPENT:
            return "burning"
        return "ok"

    def to_json(self, *, with_p95: bool = False) -> dict[str, Any]:
        """The subject's labels and every figure; ``with_p95`` adds ``p95_seconds``."""
        data: dict[str, Any] = dict(self.labels)
        data.update(
            good=self.good,
            bad=self.bad,
            total=self.total,
            excluded=self.excluded,
            objective=self.objective,
            sli=self.sli,
            error_rate=self.error_rate,
            burn_rate=self.burn_rate,
            error_budget_remaining=self.error_budget_remaining,
            status=self.status,
        )
        if with_p95:
            data["p95_seconds"] = self.p95_seconds
        return data


@dataclass(frozen=True)
class SloResult:
    """One SLO over a window: overall, and per subject."""

    slo: SloDefinition
    overall: Measurement
    subjects: tuple[Measurement, ...]

    def to_json(self) -> dict[str, Any]:
        p95 = self.slo is LATENCY
        return {
            "name": self.slo.name,
            "objective": self.slo.objective,
            "sli_description": self.slo.sli,
            "source": self.slo.source,
            "overall": self.overall.to_json(with_p95=p95),
            "subjects": [m.to_json(with_p95=p95) for m in self.subjects],
        }


@dataclass(frozen=True)
class SloReport:
    """Every SLO over one window ending at ``until`` (epoch seconds)."""

    window: str
    since: float
    until: float
    slos: tuple[SloResult, ...]

    @property
    def window_seconds(self) -> int:
        return WINDOWS[self.window]

    def get(self, name: str) -> SloResult:
        """The result of SLO ``name``; ``KeyError`` when there is no such SLO."""
        for result in self.slos:
            if result.slo.name == name:
                return result
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "window_seconds": self.window_seconds,
            "since": self.since,
            "until": self.until,
            "slos": [result.to_json() for result in self.slos],
        }


# -- the report ------------------------------------------------------------------------------


async def slo_report(store: Store, window: str = "24h", now: float | None = None) -> SloReport:
    """Every SLO over ``window`` (a key of :data:`WINDOWS`) ending at ``now`` (epoch
    seconds, default the current time), read from ``store``.

    Raises ``ValueError`` for an unknown window.
    """
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}; expected one of {', '.join(WINDOWS)}")
    until = time.time() if now is None else float(now)
    since = until - WINDOWS[window]
    return SloReport(window, since, until, await slo_results(store, since, until))


async def slo_results(store: Store, since: float, until: float) -> tuple[SloResult, ...]:
    """Every SLO over any span, from ``since`` to ``until`` (epoch seconds): what a chaos
    experiment's hypothesis measures over the experiment's own few minutes, which none
    of the report's windows fits."""
    calls = await _rollup_rows(store, since, until)
    return (
        _reliability(calls),
        _latency(calls),
        await _workflow_completion(store, since, until),
        await _data_consistency(store, since, until),
    )


async def _rollup_rows(store: Store, since: float, until: float) -> list[dict[str, Any]]:
    """The window's rollup, summed per pair of services."""
    sums = ", ".join(f"SUM({c}) AS {c}" for c in ("calls", "failures", "client_errors"))
    latency = ", ".join(f"SUM({c}) AS {c}" for c in LATENCY_COLUMNS)
    return await store.fetch_all(
        f"SELECT source, target, MAX(source_architecture) AS source_architecture, "
        f"MAX(target_architecture) AS target_architecture, {sums}, {latency} "
        "FROM call_rollup WHERE minute > ? AND minute <= ? "
        "GROUP BY source, target ORDER BY source, target",
        # Whole seconds: ``minute`` is an integer column (and minute > 12.5 iff minute > 12).
        math.floor(since),
        math.floor(until),
    )


def _pair(row: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(row[name]) for name in RELIABILITY.subject}


def _reliability(rows: Sequence[Mapping[str, Any]]) -> SloResult:
    subjects = []
    for row in rows:
        valid = int(row["calls"]) - int(row["client_errors"])
        subjects.append(
            Measurement(
                valid - int(row["failures"]),
                valid,
                RELIABILITY.objective,
                excluded=int(row["client_errors"]),
                labels=_pair(row),
            )
        )
    return SloResult(RELIABILITY, _overall(RELIABILITY, subjects), tuple(subjects))


def _latency(rows: Sequence[Mapping[str, Any]]) -> SloResult:
    good_buckets = ROLLUP_BUCKETS.index(LATENCY_THRESHOLD_SECONDS) + 1
    subjects = []
    overall_counts = [0] * len(LATENCY_COLUMNS)
    for row in rows:
        counts = [int(row[c]) for c in LATENCY_COLUMNS]
        if not any(counts):
            continue
        overall_counts = [a + b for a, b in zip(overall_counts, counts, strict=True)]
        subjects.append(
            Measurement(
                sum(counts[:good_buckets]),
                sum(counts),
                LATENCY.objective,
                labels=_pair(row),
                p95_seconds=histogram_quantile(0.95, ROLLUP_BUCKETS, counts),
            )
        )
    overall = Measurement(
        sum(overall_counts[:good_buckets]),
        sum(overall_counts),
        LATENCY.objective,
        p95_seconds=histogram_quantile(0.95, ROLLUP_BUCKETS, overall_counts),
    )
    return SloResult(LATENCY, overall, tuple(subjects))


async def _workflow_completion(store: Store, since: float, until: float) -> SloResult:
    rows = await store.fetch_all(
        "SELECT kind, name, status, COUNT(*) AS n FROM orch_executions "
        "WHERE ended_at > ? AND ended_at <= ? "
        "AND status IN ('completed', 'cancelled', 'failed', 'compensated', "
        "'compensation_failed') "
        "GROUP BY kind, name, status ORDER BY kind, name",
        since,
        until,
    )
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for row in rows:
        counts.setdefault((row["kind"], row["name"]), {})[row["status"]] = int(row["n"])
    subjects = []
    for (kind, name), by_status in counts.items():
        good = by_status.get("completed", 0)
        bad = sum(by_status.get(status, 0) for status in BAD_EXECUTION_STATUSES)
        subjects.append(
            Measurement(
                good,
                good + bad,
                WORKFLOW_COMPLETION.objective,
                excluded=by_status.get("cancelled", 0),
                labels={"kind": kind, "name": name},
            )
        )
    return SloResult(WORKFLOW_COMPLETION, _overall(WORKFLOW_COMPLETION, subjects), tuple(subjects))


async def _data_consistency(store: Store, since: float, until: float) -> SloResult:
    statuses = ", ".join(f"'{s}'" for s in MEASURED_RUN_STATUSES)
    rows = await store.fetch_all(
        "SELECT replication, source_rows, missing, extra, different, finished_at, id "
        f"FROM data_reconcile_runs WHERE status IN ({statuses}) "
        "AND finished_at > ? AND finished_at <= ? ORDER BY replication, finished_at, id",
        since,
        until,
    )
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:  # in order of finishing: the last one of each replication stays
        latest[row["replication"]] = row
    subjects = []
    for replication, row in latest.items():
        # Rows seen on either side: the source's, and those only in the target.
        compared = int(row["source_rows"]) + int(row["extra"])
        mismatched = int(row["missing"]) + int(row["extra"]) + int(row["different"])
        subjects.append(
            Measurement(
                compared - mismatched,
                compared,
                DATA_CONSISTENCY.objective,
                labels={"replication": replication},
            )
        )
    return SloResult(DATA_CONSISTENCY, _overall(DATA_CONSISTENCY, subjects), tuple(subjects))


def _overall(slo: SloDefinition, subjects: Iterable[Measurement]) -> Measurement:
    good = total = excluded = 0
    for m in subjects:
        good += m.good
        total += m.total
        excluded += m.excluded
    return Measurement(good, total, slo.objective, excluded=excluded)


# -- percentiles -----------------------------------------------------------------------------


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """The ``q`` quantile (0 <= q <= 1) of a histogram, estimated as Prometheus'
    ``histogram_quantile`` does; None when it holds nothing.

    ``counts[i]`` is the number of values above ``bounds[i - 1]`` and at most ``bounds[i]``
    (not cumulative); ``counts`` has one more entry than ``bounds``, for the values beyond
    the last bound. The bucket holding the rank ``q * total`` is found and the value
    interpolated linearly within it, from 0 for the first bucket; a rank in the last, open
    bucket gives the largest bound.
    """
    if len(counts) != len(bounds) + 1:
        raise ValueError("counts needs one entry per bound and one for the values beyond")
    total = sum(counts)
    if total == 0 or math.isnan(q):
        return None
    rank = min(max(q, 0.0), 1.0) * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index == len(bounds):
                return bounds[-1]
            lower = bounds[index - 1] if index else 0.0
            upper = bounds[index]
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return bounds[-1]  # not reached: the last bucket with a count ends at the total


__all__ = [
    "BAD_EXECUTION_STATUSES",
    "DATA_CONSISTENCY",
    "LATENCY",
    "LATENCY_THRESHOLD_SECONDS",
    "RELIABILITY",
    "SLOS",
    "WINDOWS",
    "WORKFLOW_COMPLETION",
    "Measurement",
    "SloDefinition",
    "SloReport",
    "SloResult",
    "error_budget",
    "histogram_quantile",
    "slo_report",
    "slo_results",
]
