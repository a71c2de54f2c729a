"""A scheduled reconciliation runs every ``reconcile.every`` seconds until stopped,
repairs what it finds, sets its gauges and survives a failed run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.integration.data.reconcile_rig import create, opened
from tests.waiting import eventually

from hybridmesh.core.errors import ConfigurationError
from hybridmesh.data.config import ReplicationSpec
from hybridmesh.data.reconcile import ReconcileReport, ReconcileSchedule, TableReport
from hybridmesh.data.reconcile_records import ReconcileHistory, ReconcileMetrics
from hybridmesh.observability.metrics import MeshMetrics
from hybridmesh.store import open_store

COLUMNS = "id INTEGER PRIMARY KEY, name TEXT"


def _spec(tmp_path: Path, **reconcile: object) -> ReplicationSpec:
    return ReplicationSpec.model_validate(
        {
            "name": "erp-items",
            "source": {"url": f"sqlite:///{tmp_path / 'legacy.db'}"},
            "target": {"url": f"sqlite:///{tmp_path / 'service.db'}"},
            "tables": [{"source": "items"}],
            "reconcile": reconcile,
        }
    )


async def test_every_run_is_recorded_and_repairs_what_it_finds(tmp_path: Path) -> None:
    spec = _spec(tmp_path, every="1s", repair=True)
    async with opened((spec.source.url, spec.target.url)) as (source, target):
        await create(source, "items", COLUMNS, [(i, f"item {i}") for i in range(1, 101)])
        await create(target, "items", COLUMNS, [(i, f"item {i}") for i in range(1, 96)])
    store = await open_store(f"sqlite:///{tmp_path / 'mesh.db'}")
    await store.upgrade()
    reports: list[ReconcileReport] = []

    async def keep(report: ReconcileReport) -> None:
        reports.append(report)

    metrics = ReconcileMetrics()
    schedule = ReconcileSchedule(spec, store=store, every=0.05, metrics=metrics, on_report=keep)
    stop = asyncio.Event()
    task = asyncio.create_task(schedule.run(stop))
    try:
        await eventually(lambda: len(reports) >= 3, what="three scheduled runs")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    runs = await ReconcileHistory(store).runs("erp-items")
    await store.close()

    assert schedule.every == 0.05
    assert reports[0].status == "repaired"
    assert (reports[0].tables[0].missing, reports[0].tables[0].repaired) == (5, 5)
    assert [r.status for r in reports[1:]] == ["consistent"] * (len(reports) - 1)
    assert [r.status for r in reversed(runs)] == [r.status for r in reports]
    labels = {"replication": "erp-items", "table": "items"}
    assert metrics.sample("hybridmesh_reconcile_inconsistency_rate", **labels) == 0.0
    assert metrics.sample("hybridmesh_reconcile_remaining_rows", **labels) == 0.0


async def test_a_failed_run_does_not_stop_the_schedule(tmp_path: Path) -> None:
    spec = _spec(tmp_path, every="1s")
    schedule = ReconcileSchedule(spec, every=0.01, metrics=ReconcileMetrics())
    stop = asyncio.Event()
    task = asyncio.create_task(schedule.run(stop))
    try:
        # No table yet on either side: each run fails, and the next one comes.
        await eventually(lambda: schedule.failures >= 2, what="two failed runs")
        async with opened((spec.source.url, spec.target.url)) as (source, target):
            await create(source, "items", COLUMNS, [(1, "one")])
            await create(target, "items", COLUMNS, [(1, "one")])
        await eventually(lambda: schedule.last is not None, what="a run that succeeds")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert schedule.last is not None and schedule.last.status == "consistent"


def test_without_an_interval_there_is_no_schedule(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="every"):
        ReconcileSchedule(_spec(tmp_path))


def test_the_default_gauges_are_served_with_the_process_metrics() -> None:
    """``/metrics`` serves :meth:`MeshMetrics.default`'s registry: the default gauges are
    registered there."""
    now = datetime.now(UTC)
    table = TableReport("customers", "users", "sql/range", source_rows=200, missing=3)
    report = ReconcileReport("gauged", "run", "source", False, now, now, [table])
    ReconcileMetrics.default().observe(report)
    rendered = MeshMetrics.default().render().decode()
    assert (
        'hybridmesh_reconcile_inconsistency_rate{replication="gauged",table="users"} 0.015'
        in rendered
    )
    assert 'hybridmesh_reconcile_remaining_rows{replication="gauged",table="users"} 3.0' in rendered
