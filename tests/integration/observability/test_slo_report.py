"""The SLO report from what the store holds: the call rollup, ended executions and
reconciliation runs, on SQLite and PostgreSQL; and the rollup a real hybrid client writes,
read back by ``hybridmesh slo report`` from another store handle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import web
from tests.cli_in_process import run_cli, run_cli_parts
from tests.integration.client.helpers import Scripted, registry_for
from tests.integration.loopback import serve

from hybridmesh.client import CommunicationRequest, HybridClient
from hybridmesh.core.clock import FakeClock
from hybridmesh.core.errors import StoreError, TransportError
from hybridmesh.core.serialization import loads
from hybridmesh.core.settings import Settings
from hybridmesh.data.reconcile_records import ReconcileHistory
from hybridmesh.data.reconcile_report import ReconcileReport, TableReport
from hybridmesh.observability import MeshMetrics
from hybridmesh.observability.rollup import CallRollup
from hybridmesh.observability.slo import SloReport, slo_report
from hybridmesh.runtime import Runtime
from hybridmesh.store import Store, open_ready_store

#: The report's "now": on a minute boundary, so windows start on one too.
NOW = 1_800_000_000.0
MS, MM = "microservice", "modular-monolith"


class Wall:
    """A settable wall clock for the rollup."""

    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


async def record_calls(store: Store, at: float, calls: list[tuple[str, str, str, float | None]]):
    """Count ``calls`` (source, target, outcome, seconds) in the minute of ``at``, and write
    them."""
    rollup = CallRollup(store, clock=Wall(at))
    for source, target, outcome, seconds in calls:
        arch = {"orders": MS, "users": MS, "inventory": MM}
        rollup.observe(source, target, arch[source], arch[target], outcome, seconds)
    await rollup.flush()


async def add_execution(store: Store, id: str, name: str, status: str, ended_at: float) -> None:
    await store.execute(
        "INSERT INTO orch_executions (id, kind, name, version, status, input, state, "
        "created_at, updated_at, ended_at) VALUES (?, 'workflow', ?, 1, ?, '{}', '{}', ?, ?, ?)",
        id,
        name,
        status,
        ended_at - 5,
        ended_at,
        ended_at,
    )


async def add_reconcile_run(
    store: Store, run_id: str, replication: str, finished_at: float, **counts: int
) -> None:
    at = datetime.fromtimestamp(finished_at, UTC)
    report = ReconcileReport(
        replication, run_id, "source", False, at, at, [TableReport("a", "b", "sql", **counts)]
    )
    history = ReconcileHistory(store)
    await history.started(report)
    await history.finished(report)


async def test_report_over_a_window(store: Store) -> None:
    # Two minutes of calls: 1,000 to users (3 failed, 2 refused as the caller's mistake),
    # 10 to inventory (all good); 100 of them answered over REST with known latencies.
    ok = ("orders", "users", "success", None)
    await record_calls(
        store,
        NOW - 600,
        [ok] * 595
        + [("orders", "users", "failure", None)] * 3
        + [("orders", "users", "client_error", None)] * 2
        + [("orders", "users", "success", 0.02)] * 60
        + [("orders", "users", "fallback", 0.08)] * 30,
    )
    await record_calls(
        store,
        NOW - 120,
        [ok] * 300
        + [("orders", "users", "success", 0.2)] * 10
        + [("orders", "inventory", "success", None)] * 10,
    )
    for index in range(7):
        await add_execution(store, f"c{index}", "onboarding", "completed", NOW - 100 - index)
    await add_execution(store, "f", "onboarding", "failed", NOW - 50)
    await add_execution(store, "p", "onboarding", "compensated", NOW - 40)
    await add_execution(store, "x", "onboarding", "cancelled", NOW - 30)
    # Two runs of one replication: only the later one counts; a failed run never does.
    await add_reconcile_run(store, "r1", "orders-sync", NOW - 900, source_rows=100, missing=50)
    await add_reconcile_run(
        store, "r2", "orders-sync", NOW - 300, source_rows=1000, missing=1, extra=1, different=1
    )

    report = await slo_report(store, "1h", now=NOW)

    reliability = report.get("integration-reliability")
    assert (reliability.overall.good, reliability.overall.total) == (1005, 1008)
    assert reliability.overall.excluded == 2
    assert reliability.overall.burn_rate == pytest.approx((3 / 1008) / 0.001)
    assert reliability.overall.status == "exhausted"
    pairs = {(m.labels["source"], m.labels["target"]): m for m in reliability.subjects}
    assert (pairs["orders", "users"].good, pairs["orders", "users"].total) == (995, 998)
    assert pairs["orders", "inventory"].labels["target_architecture"] == MM
    assert pairs["orders", "inventory"].status == "ok"

    latency = report.get("sync-latency")
    # 100 calls over REST: 90 within 100 ms, 10 above: 10 % bad against a 5 % budget.
    assert (latency.overall.good, latency.overall.total) == (90, 100)
    assert latency.overall.burn_rate == pytest.approx(2.0)
    assert latency.overall.error_budget_remaining == 0.0
    # p95: rank 95 is the 5th of the 10 in (0.1, 0.25]: 0.1 + 0.15 * 5 / 10.
    assert latency.overall.p95_seconds == pytest.approx(0.175)
    assert [m.labels["target"] for m in latency.subjects] == ["users"]

    workflows = report.get("workflow-completion")
    # Cancelled by request counts neither way; failed and compensated are bad.
    assert (workflows.overall.good, workflows.overall.total) == (7, 9)
    assert workflows.overall.excluded == 1
    assert workflows.subjects[0].labels == {"kind": "workflow", "name": "onboarding"}

    data = report.get("data-consistency")
    # The latest run: 3 of 1,001 rows (the source's 1,000 and 1 only in the target) differ.
    assert (data.overall.good, data.overall.total) == (998, 1001)
    assert data.overall.sli == pytest.approx(998 / 1001)
    assert data.overall.status == "ok"


async def test_window_boundaries(store: Store) -> None:
    # A minute counts when it starts after the window's start and not after now.
    await record_calls(store, NOW - 3600, [("orders", "users", "success", None)] * 1)
    await record_calls(store, NOW - 3540, [("orders", "users", "success", None)] * 2)
    await record_calls(store, NOW, [("orders", "users", "success", None)] * 4)
    await record_calls(store, NOW + 60, [("orders", "users", "success", None)] * 8)
    await record_calls(store, NOW - 86_400 + 60, [("orders", "users", "failure", None)] * 16)
    await add_execution(store, "edge", "billing", "failed", NOW - 3600)
    await add_execution(store, "in", "billing", "completed", NOW - 3599.5)
    await add_execution(store, "later", "billing", "failed", NOW + 1)

    hour = await slo_report(store, "1h", now=NOW)
    assert hour.get("integration-reliability").overall.total == 6
    assert (
        hour.get("workflow-completion").overall.good,
        hour.get("workflow-completion").overall.total,
    ) == (1, 1)

    day = await slo_report(store, "24h", now=NOW)
    assert day.get("integration-reliability").overall.total == 1 + 2 + 4 + 16
    assert day.get("workflow-completion").overall.total == 2


async def test_nothing_recorded_is_no_data(store: Store) -> None:
    report = await slo_report(store, "30d", now=NOW)
    assert report.window_seconds == 30 * 86_400
    assert [r.overall.status for r in report.slos] == ["no_data"] * 4
    assert report.get("sync-latency").overall.p95_seconds is None
    with pytest.raises(ValueError, match="unknown window '7d'"):
        await slo_report(store, "7d", now=NOW)


async def test_rollups_of_several_processes_add_up(store: Store) -> None:
    first, second = CallRollup(store, clock=Wall(NOW - 30)), CallRollup(store, clock=Wall(NOW - 20))
    for rollup in (first, second):
        rollup.observe("orders", "users", MS, MS, "success", 0.01)
        rollup.observe("orders", "users", MS, MS, "failure", None)
        await rollup.flush()
    first.observe("orders", "users", MS, MS, "success", 0.3)
    await first.flush()
    assert await first.flush() == 0  # nothing new: no write
    rows = await store.fetch_all("SELECT calls, failures FROM call_rollup")
    assert [(int(r["calls"]), int(r["failures"])) for r in rows] == [(5, 2)]
    report = await slo_report(store, "1h", now=NOW)
    assert (report.get("sync-latency").overall.good, report.get("sync-latency").overall.total) == (
        2,
        3,
    )


async def test_rollup_keeps_counts_the_store_refused(sqlite_url: str) -> None:
    store = await open_ready_store(sqlite_url)
    rollup = CallRollup(store, clock=Wall(NOW))
    rollup.observe("orders", "users", MS, MS, "success", None)
    await store.execute("ALTER TABLE call_rollup RENAME TO call_rollup_away")
    with pytest.raises(StoreError):
        await rollup.flush()
    rollup.observe("orders", "users", MS, MS, "failure", None)
    await store.execute("ALTER TABLE call_rollup_away RENAME TO call_rollup")
    assert await rollup.flush() == 1
    row = await store.fetch_one("SELECT calls, failures FROM call_rollup")
    assert row is not None and (row["calls"], row["failures"]) == (2, 1)
    await store.close()


async def test_rollup_prunes_rows_past_retention(store: Store) -> None:
    await record_calls(store, NOW - 3 * 86_400, [("orders", "users", "success", None)])
    await record_calls(store, NOW - 86_400 + 60, [("orders", "users", "success", None)])
    assert await CallRollup(store, clock=Wall(NOW), retention_days=2).prune() == 1
    assert (await slo_report(store, "30d", now=NOW)).get(
        "integration-reliability"
    ).overall.total == 1


# -- a real client, a real service, the command line ---------------------------------------------


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Scripted, str]]:
    scripted = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", scripted.handle)
    async with serve(app) as url:
        yield scripted, url


async def test_client_calls_show_in_slo_report_from_the_cli(
    upstream: tuple[Scripted, str], sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    scripted, url = upstream
    store = await open_ready_store(sqlite_url)
    rollup = CallRollup(store)
    metrics = MeshMetrics()
    async with HybridClient(
        registry_for(url), clock=FakeClock(), metrics=metrics, rollup=rollup
    ) as client:
        await client.communicate("orders", "users", CommunicationRequest(endpoint="/users/1"))
        scripted.fail(1, 503)
        with pytest.raises(TransportError):
            await client.communicate(
                "orders", "users", CommunicationRequest(endpoint="/users/2", retries=0)
            )
        scripted.fail(1, 404)
        with pytest.raises(TransportError):
            await client.communicate("orders", "users", CommunicationRequest(endpoint="/nope"))
    await rollup.close()
    await store.close()
    # Prometheus counts the same calls, once each, with both architectures.
    pair = {
        "source": "orders",
        "target": "users",
        "source_architecture": MS,
        "target_architecture": MS,
    }
    for outcome in ("success", "failure", "client_error"):
        assert metrics.sample("hybridmesh_communications_total", **pair, outcome=outcome) == 1
    assert metrics.sample("hybridmesh_communication_duration_seconds_count", **pair) == 1

    code, out = await run_cli(capsys, sqlite_url, "slo", "report", "--window", "1h", "--json")
    assert code == 0, out
    report = loads(out)
    assert report["window"] == "1h"
    slos = {slo["name"]: slo for slo in report["slos"]}
    reliability = slos["integration-reliability"]["overall"]
    assert (reliability["good"], reliability["total"], reliability["excluded"]) == (1, 2, 1)
    assert reliability["status"] == "exhausted"
    [pair] = slos["integration-reliability"]["subjects"]
    assert (pair["source"], pair["target"], pair["source_architecture"]) == ("orders", "users", MS)
    latency = slos["sync-latency"]["overall"]
    assert latency["total"] == 1  # only the answered call has a latency

    code, out = await run_cli(capsys, sqlite_url, "slo", "report", "--window", "1h")
    assert code == 0
    assert "integration-reliability" in out and "orders → users" in out and "exhausted" in out


async def test_a_bad_window_exits_2(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = await run_cli_parts(capsys, sqlite_url, "slo", "report", "--window", "7d")
    assert code == 2
    assert "'7d' is not one of '1h', '24h', '30d'" in err


async def test_a_runtime_counts_its_clients_calls(
    upstream: tuple[Scripted, str], sqlite_url: str
) -> None:
    _, url = upstream
    runtime = await Runtime.open(
        Settings(database_url=sqlite_url), events=False, registry=registry_for(url)
    )
    async with runtime:
        await runtime.client.communicate("orders", "inventory", CommunicationRequest(endpoint="/x"))
    async with await open_ready_store(sqlite_url, create=False) as store:
        report: SloReport = await slo_report(store, "1h")
    assert report.get("integration-reliability").overall.good == 1
