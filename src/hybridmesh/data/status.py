"""Where each replication and bridge stands, with its latest reconciliation run: what
``hybridmesh replicate list|status --json`` print and ``/api/v1/replications`` answers.

A record's own fields are :meth:`DataRecord.to_dict`'s (asked-for state, whether a process
runs it, its last reported status: phase, position, lag, per-table backfill). To them,
``last_reconciliation`` adds the newest recorded reconciliation run of a replication (its
status and counts, as ``reconcile history NAME --json`` lists each), or null when none ran
(and always for a bridge, which has no target to compare).
"""

from __future__ import annotations

import time
from typing import Any

from hybridmesh.data.control import DataControl, DataRecord
from hybridmesh.data.reconcile_records import ReconcileHistory
from hybridmesh.store import Store


async def replication_status(store: Store, name: str, now: float | None = None) -> dict[str, Any]:
    """Replication or bridge ``name``; :class:`~hybridmesh.core.errors.NotFoundError` when
    there is none."""
    record = await DataControl(store).get(name)
    return await _with_last_run(store, record, time.time() if now is None else now)


async def replication_statuses(store: Store, now: float | None = None) -> list[dict[str, Any]]:
    """Every stored replication and bridge, by name."""
    now = time.time() if now is None else now
    return [await _with_last_run(store, r, now) for r in await DataControl(store).list()]


async def _with_last_run(store: Store, record: DataRecord, now: float) -> dict[str, Any]:
    last = None
    if record.kind == "replication":
        runs = await ReconcileHistory(store).runs(record.name, 1)
        last = runs[0].to_dict() if runs else None
    return {**record.to_dict(now), "last_reconciliation": last}


__all__ = ["replication_status", "replication_statuses"]
