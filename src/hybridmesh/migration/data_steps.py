"""The data steps of a ``database_decomposition`` migration plan: what the plan runner asks
of a replication, and how it tells whether a data step's gate holds.

A plan moves a table's ownership in the guide's order: replicate, backfill, verify
(reconciliation clean), start reverse sync, switch writes (a route or a flag, gated on
traffic like any strangler-fig step), confirm (a person), retire. The runner writes what it
asks (:class:`~hybridmesh.migration.plans.SetReplication`) into the replication's stored
record in the step's own transaction; the process running the replication
(``hybridmesh replicate start`` or ``replicate run``) follows it within half a second.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hybridmesh.data.capture import drop_consumer, uninstall_capture
from hybridmesh.data.config import ReplicationSpec
from hybridmesh.data.control import DataControl
from hybridmesh.data.runner import opened
from hybridmesh.migration.plans import DataGate, RetireReplication, SetReplication
from hybridmesh.store import Store, Transaction
from hybridmesh.store.urls import parse_database_url


class DataStepError(Exception):
    """A data action that cannot be carried out (no such replication, say)."""


@dataclass(frozen=True)
class DataVerdict:
    """Whether a data gate holds now, why not, and the figures it looked at."""

    ok: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


#: Runs a reconciliation of a replication (repairing first when asked); returns the
#: inconsistency rate found before any repair and the differences left.
Reconcile = Callable[[Store, ReplicationSpec, bool], Awaitable[tuple[float, int, int]]]


async def default_reconcile(
    store: Store, spec: ReplicationSpec, repair: bool
) -> tuple[float, int, int]:
    """The reconciliation of :mod:`hybridmesh.data.reconcile`: the rate before repair, the
    rows compared, and the differences left."""
    from hybridmesh.data.reconcile import reconcile

    report = await reconcile(spec, store=store, repair=repair)
    left = report.remaining if repair else report.inconsistent
    return report.inconsistency_rate, report.source_rows, left


async def execute_in(tx: Transaction, action: SetReplication) -> dict[str, Any]:
    """Record what ``action`` asks of its replication, in the plan step's transaction."""
    row = await tx.fetch_one(
        "SELECT kind FROM data_replications WHERE name = ?", action.replication
    )
    if row is None or row["kind"] != "replication":
        raise DataStepError(
            f"no replication {action.replication!r}: define it with `hybridmesh replicate apply`"
        )
    now = time.time()
    if action.desired is not None:
        await tx.execute(
            "UPDATE data_replications SET desired = ?, updated_at = ? WHERE name = ?",
            action.desired,
            now,
            action.replication,
        )
    if action.reverse is not None:
        await tx.execute(
            "UPDATE data_replications SET reverse = ?, updated_at = ? WHERE name = ?",
            int(action.reverse),
            now,
            action.replication,
        )
    return action.model_dump(mode="json")


async def retire(store: Store, action: RetireReplication) -> dict[str, Any]:
    """Stop the replication both ways, forget its positions in both change logs, and take
    change capture off the tables no other replication or bridge still reads (an event
    bridge on the same legacy table keeps its triggers). Run before the step's
    transaction; doing it again is harmless."""
    control = DataControl(store)
    record = await control.get(action.replication)
    spec = record.spec
    if not isinstance(spec, ReplicationSpec):
        raise DataStepError(f"{action.replication!r} is an event bridge, not a replication")
    await control.set_desired(action.replication, "stopped")
    await control.set_reverse(action.replication, False)
    still_read = await _tables_still_read(control, action.replication)
    reverse = f"{spec.name}-reverse"
    async with opened(spec.source.url, spec.target.url) as (source, target):
        for db, tables, consumer in (
            (source, [t.source for t in spec.tables], spec.name),
            (target, [t.target or t.source for t in spec.tables], reverse),
        ):
            await drop_consumer(db, consumer)
            keep = still_read.get(db.url, set())
            await uninstall_capture(db, [t for t in tables if t not in keep])
    return action.model_dump(mode="json")


async def _tables_still_read(control: DataControl, retiring: str) -> dict[str, set[str]]:
    """By database URL, the tables the other stored replications and bridges that are not
    stopped capture."""
    read: dict[str, set[str]] = {}
    for other in await control.list():
        if other.name == retiring or other.desired == "stopped":
            continue
        spec = other.spec
        url = parse_database_url(spec.source.url).url  # as the opened database names it
        if isinstance(spec, ReplicationSpec):
            read.setdefault(url, set()).update(t.source for t in spec.tables)
        else:
            read.setdefault(url, set()).update(spec.tables)
    return read


async def evaluate(
    store: Store, gate: DataGate, reconcile: Reconcile = default_reconcile
) -> DataVerdict:
    """Whether ``gate`` holds now."""
    control = DataControl(store)
    record = await control.get(gate.replication)
    status = record.status or {}
    alive = record.running_now()
    if not alive:
        return DataVerdict(
            False,
            f"no process runs replication {gate.replication!r} (start `hybridmesh replicate "
            "run` or `replicate start`)",
        )
    lag = int(status.get("lag_changes", 0))
    figures = {"lag_changes": lag, "phase": status.get("phase")}
    if gate.condition == "running":
        return DataVerdict(True, "running", figures)
    if gate.condition == "backfilled":
        if status.get("phase") != "streaming":
            done = sum(int(t["rows_copied"]) for t in status.get("tables", []))
            total = sum(int(t["rows_total"]) for t in status.get("tables", []))
            return DataVerdict(False, f"backfill at {done} of {total} rows", figures)
        if lag > gate.max_lag_changes:
            return DataVerdict(False, f"{lag} changes behind", figures)
        return DataVerdict(True, "backfilled", figures)
    if gate.condition == "reverse_running":
        reverse = status.get("reverse")
        if not isinstance(reverse, dict):
            return DataVerdict(False, "reverse sync has not started yet", figures)
        behind = int(reverse.get("lag_changes", 0))
        figures["reverse_lag_changes"] = behind
        if behind > gate.max_lag_changes:
            return DataVerdict(False, f"reverse sync {behind} changes behind", figures)
        return DataVerdict(True, "reverse sync running", figures)
    spec = record.spec
    assert isinstance(spec, ReplicationSpec)
    rate, compared, left = await reconcile(store, spec, gate.repair)
    figures.update({"inconsistency_before_repair": rate, "rows": compared, "remaining": left})
    remaining_rate = left / max(compared, 1)
    if remaining_rate > gate.max_inconsistency:
        return DataVerdict(
            False, f"{left} rows differ ({remaining_rate:.4%} of {compared})", figures
        )
    return DataVerdict(True, f"reconciled: {left} rows differ of {compared}", figures)


__all__ = [
    "DataStepError",
    "DataVerdict",
    "Reconcile",
    "default_reconcile",
    "evaluate",
    "execute_in",
    "retire",
]
