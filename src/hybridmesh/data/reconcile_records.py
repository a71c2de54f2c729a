"""What reconciliation leaves behind: its runs and repairs in the hybridmesh store, and
its gauges in the process's Prometheus registry.

Tables (migration 15): ``data_reconcile_runs``, one row per run (its counts and
inconsistency rate before any repair, rows repaired, differences remaining, status and
JSON report), and ``data_reconcile_repairs``, one row per row a repair wrote (the side
and table, the key, the action and the row before and after, as JSON).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry, Gauge

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.data.reconcile_report import ReconcileReport, Repair, jsonable
from hybridmesh.observability.metrics import MeshMetrics
from hybridmesh.store import Store


@dataclass(frozen=True)
class RunRecord:
    """One recorded reconciliation run. Counts are before any repair; ``status`` is
    ``running``, ``consistent``, ``repaired``, ``inconsistent`` or ``failed``."""

    id: str
    replication: str
    status: str
    truth: str
    repair: bool
    started_at: float
    finished_at: float | None
    source_rows: int
    missing: int
    extra: int
    different: int
    rate: float
    repaired: int
    remaining: int | None
    error: str | None
    report: dict[str, Any] | None

    def to_dict(self, *, with_report: bool = False) -> dict[str, Any]:
        data = {
            "id": self.id,
            "replication": self.replication,
            "status": self.status,
            "truth": self.truth,
            "repair": self.repair,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "source_rows": self.source_rows,
            "missing": self.missing,
            "extra": self.extra,
            "different": self.different,
            "inconsistency_rate": self.rate,
            "repaired": self.repaired,
            "remaining": self.remaining,
            "error": self.error,
        }
        if with_report:
            data["report"] = self.report
        return data


@dataclass(frozen=True)
class RepairRecord:
    """One row a repair wrote."""

    run_id: str
    seq: int
    replication: str
    side: str
    table: str
    key: dict[str, Any]
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "replication": self.replication,
            "side": self.side,
            "table": self.table,
            "key": self.key,
            "action": self.action,
            "before": self.before,
            "after": self.after,
            "at": self.at,
        }


_RUN_COLUMNS = (
    "id, replication, status, truth, repair, started_at, finished_at, source_rows, missing, "
    "extra, different, rate, repaired, remaining, error"
)


class ReconcileHistory:
    """The runs and repairs of reconciliations, in the hybridmesh store."""

    def __init__(self, store: Store, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.clock = clock

    async def started(self, report: ReconcileReport) -> None:
        """Record that run ``report`` has started."""
        await self.store.execute(
            "INSERT INTO data_reconcile_runs (id, replication, status, truth, repair, "
            "started_at) VALUES (?, ?, 'running', ?, ?, ?)",
            report.run_id,
            report.replication,
            report.truth,
            int(report.repair),
            report.started_at.timestamp(),
        )

    async def finished(self, report: ReconcileReport) -> None:
        """Record run ``report``'s outcome."""
        tables = report.tables
        await self.store.execute(
            "UPDATE data_reconcile_runs SET status = ?, finished_at = ?, source_rows = ?, "
            "missing = ?, extra = ?, different = ?, rate = ?, repaired = ?, remaining = ?, "
            "report = ? WHERE id = ?",
            report.status,
            report.finished_at.timestamp(),
            report.source_rows,
            sum(t.missing for t in tables),
            sum(t.extra for t in tables),
            sum(t.different for t in tables),
            report.inconsistency_rate,
            report.repaired,
            report.remaining,
            dumps(report.to_dict()),
            report.run_id,
        )

    async def failed(self, run_id: str, error: BaseException) -> None:
        """Record that run ``run_id`` failed with ``error``."""
        await self.store.execute(
            "UPDATE data_reconcile_runs SET status = 'failed', finished_at = ?, error = ? "
            "WHERE id = ?",
            self.clock.now().timestamp(),
            f"{type(error).__name__}: {error}",
            run_id,
        )

    async def repaired(self, report: ReconcileReport, repairs: Sequence[Repair]) -> None:
        """Record the rows a repair of run ``report`` wrote."""
        at = self.clock.now().timestamp()
        async with self.store.transaction() as tx:
            last = await tx.fetch_value(
                "SELECT COALESCE(MAX(seq), 0) FROM data_reconcile_repairs WHERE run_id = ?",
                report.run_id,
            )
            rows = [
                (
                    report.run_id,
                    int(last) + index,
                    report.replication,
                    r.side,
                    r.table,
                    dumps(jsonable(r.key)),
                    r.action,
                    None if r.before is None else dumps(jsonable(r.before)),
                    None if r.after is None else dumps(jsonable(r.after)),
                    at,
                )
                for index, r in enumerate(repairs, 1)
            ]
            await tx.executemany(
                "INSERT INTO data_reconcile_repairs (run_id, seq, replication, side, "
                "table_name, row_key, action, row_before, row_after, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    async def runs(self, replication: str, limit: int = 20) -> list[RunRecord]:
        """The last ``limit`` runs of ``replication``, newest first."""
        rows = await self.store.fetch_all(
            f"SELECT {_RUN_COLUMNS}, report FROM data_reconcile_runs WHERE replication = ? "
            "ORDER BY started_at DESC, id DESC LIMIT ?",
            replication,
            limit,
        )
        return [_run(row) for row in rows]

    async def repairs(
        self, replication: str, *, run_id: str | None = None, limit: int = 100
    ) -> list[RepairRecord]:
        """The last ``limit`` rows repaired for ``replication`` (in run ``run_id``), newest
        first."""
        where, args = "replication = ?", [replication]
        if run_id is not None:
            where += " AND run_id = ?"
            args.append(run_id)
        rows = await self.store.fetch_all(
            "SELECT run_id, seq, replication, side, table_name, row_key, action, row_before, "
            f"row_after, at FROM data_reconcile_repairs WHERE {where} "
            "ORDER BY at DESC, run_id DESC, seq DESC LIMIT ?",
            *args,
            limit,
        )
        return [
            RepairRecord(
                run_id=row["run_id"],
                seq=int(row["seq"]),
                replication=row["replication"],
                side=row["side"],
                table=row["table_name"],
                key=loads(row["row_key"]),
                action=row["action"],
                before=None if row["row_before"] is None else loads(row["row_before"]),
                after=None if row["row_after"] is None else loads(row["row_after"]),
                at=float(row["at"]),
            )
            for row in rows
        ]


def _run(row: dict[str, Any]) -> RunRecord:
    return RunRecord(
        id=row["id"],
        replication=row["replication"],
        status=row["status"],
        truth=row["truth"],
        repair=bool(row["repair"]),
        started_at=float(row["started_at"]),
        finished_at=None if row["finished_at"] is None else float(row["finished_at"]),
        source_rows=int(row["source_rows"]),
        missing=int(row["missing"]),
        extra=int(row["extra"]),
        different=int(row["different"]),
        rate=float(row["rate"]),
        repaired=int(row["repaired"]),
        remaining=None if row["remaining"] is None else int(row["remaining"]),
        error=row["error"],
        report=None if row["report"] is None else loads(row["report"]),
    )


class ReconcileMetrics:
    """Reconciliation's gauges, per replication and table, set after each run:

    - ``hybridmesh_reconcile_inconsistency_rate{replication,table}``: differing rows over
      the source's rows, before any repair.
    - ``hybridmesh_reconcile_repaired_rows{replication,table}``: rows the run's repair
      wrote (0 when it did not repair).
    - ``hybridmesh_reconcile_remaining_rows{replication,table}``: differences left after
      the run (all of them when it did not repair).
    - ``hybridmesh_reconcile_last_run_timestamp_seconds{replication}``: when the last run
      finished.

    :meth:`default` registers them in the process's registry, the one ``/metrics`` serves
    (:meth:`MeshMetrics.default`).
    """

    _default: ClassVar[ReconcileMetrics | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = ["replication", "table"]
        self._rate = Gauge(
            "hybridmesh_reconcile_inconsistency_rate",
            "Rows that differ between a replication's source and target, over the source's "
            "rows, before repair.",
            labels,
            registry=self.registry,
        )
        self._repaired = Gauge(
            "hybridmesh_reconcile_repaired_rows",
            "Rows the last reconciliation repaired.",
            labels,
            registry=self.registry,
        )
        self._remaining = Gauge(
            "hybridmesh_reconcile_remaining_rows",
            "Rows that still differ after the last reconciliation.",
            labels,
            registry=self.registry,
        )
        self._last = Gauge(
            "hybridmesh_reconcile_last_run_timestamp_seconds",
            "When the last reconciliation of a replication finished (Unix time).",
            ["replication"],
            registry=self.registry,
        )

    @classmethod
    def default(cls) -> ReconcileMetrics:
        """The process-wide instance, in :meth:`MeshMetrics.default`'s registry."""
        if cls._default is None:
            with cls._default_lock:
                if cls._default is None:
                    cls._default = cls(MeshMetrics.default().registry)
        return cls._default

    def observe(self, report: ReconcileReport) -> None:
        """Set the gauges from a finished run."""
        for table in report.tables:
            labels = (report.replication, table.target)
            self._rate.labels(*labels).set(table.inconsistency_rate)
            self._repaired.labels(*labels).set(table.repaired)
            remaining = table.inconsistent if table.remaining is None else table.remaining
            self._remaining.labels(*labels).set(remaining)
        self._last.labels(report.replication).set(report.finished_at.timestamp())

    def sample(self, name: str, /, **labels: str) -> float | None:
        """The current value of sample ``name`` with exactly ``labels``, or None."""
        value: float | None = self.registry.get_sample_value(name, labels)
        return value


__all__ = ["ReconcileHistory", "ReconcileMetrics", "RepairRecord", "RunRecord"]
