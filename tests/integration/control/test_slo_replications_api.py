"""``/api/v1/slo`` and ``/api/v1/replications``: the same JSON as ``hybridmesh slo report
--json`` and ``hybridmesh replicate list|status --json``, from what the store holds."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from tests.cli_in_process import run_cli_parts
from tests.integration.control.conftest import Plane
from tests.integration.observability.test_slo_report import (
    add_execution,
    add_reconcile_run,
    record_calls,
)

from hybridmesh.control.routes.replications import ReplicationList, ReplicationOut
from hybridmesh.control.routes.slo import SloReportOut
from hybridmesh.data.config import load_data
from hybridmesh.data.control import DataControl


def without_clock(report: dict[str, Any]) -> dict[str, Any]:
    """The report less its ``since`` and ``until``, which say when it was made."""
    return {k: v for k, v in report.items() if k not in ("since", "until")}


async def test_the_slo_report_is_the_clis(
    plane: Plane, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = plane.runtime.store
    now = time.time()
    await record_calls(
        store,
        now - 120,
        [("orders", "users", "success", 0.02)] * 97 + [("orders", "users", "failure", None)] * 3,
    )
    await add_execution(store, "e-1", "checkout", "completed", now - 60)
    await add_execution(store, "e-2", "checkout", "failed", now - 30)
    await add_reconcile_run(store, "r-1", "erp-customers", now - 10, source_rows=100)

    for window in ("1h", "24h", "30d"):
        status, answered = await plane.call("GET", f"/api/v1/slo?window={window}", role="read")
        assert status == 200
        SloReportOut.model_validate(answered)
        code, out, _ = await run_cli_parts(
            capsys, database_url, "slo", "report", "--window", window, "--json"
        )
        assert code == 0
        assert without_clock(answered) == without_clock(json.loads(out)), window

    status, answered = await plane.call("GET", "/api/v1/slo", role="read")
    reliability = answered["slos"][0]
    assert (answered["window"], reliability["name"]) == ("24h", "integration-reliability")
    assert (reliability["overall"]["good"], reliability["overall"]["total"]) == (97, 100)
    assert reliability["overall"]["status"] == "exhausted"


async def test_the_slo_report_refuses_an_unknown_window_and_needs_a_token(plane: Plane) -> None:
    status, problem = await plane.call("GET", "/api/v1/slo?window=7d", role="read")
    assert status == 400
    assert problem["errors"][0]["field"] == "window"
    status, _ = await plane.call("GET", "/api/v1/slo", role=None)
    assert status == 401


def legacy_file(tmp_path: Path) -> Path:
    legacy = tmp_path / "legacy.db"
    with sqlite3.connect(legacy) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    db.close()
    path = tmp_path / "replications.yaml"
    path.write_text(
        f"""\
replications:
  - name: erp-customers
    source: {{url: "sqlite:///{legacy}", system: legacy-erp}}
    target: {{url: "sqlite:///{tmp_path / "service.db"}"}}
    tables:
      - source: customers
        target: users
  - name: erp-orders
    source: {{url: "sqlite:///{legacy}", system: legacy-erp}}
    target: {{url: "sqlite:///{tmp_path / "orders.db"}"}}
    tables:
      - source: customers
        target: orders
"""
    )
    return path


async def test_replications_are_the_clis_with_their_latest_reconciliation(
    plane: Plane, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = plane.runtime.store
    control = DataControl(store)
    await control.apply(load_data(legacy_file(tmp_path)))
    await control.set_desired("erp-customers", "running")
    assert await control.claim("erp-customers", "worker-1")
    reported = {"phase": "streaming", "position": 40, "head": 42, "lag_changes": 2}
    assert await control.report("erp-customers", reported, "worker-1")
    now = time.time()
    await add_reconcile_run(store, "r-old", "erp-customers", now - 100, source_rows=10)
    await add_reconcile_run(
        store, "r-new", "erp-customers", now - 10, source_rows=50, missing=2, different=1
    )

    status, listed = await plane.call("GET", "/api/v1/replications", role="read")
    assert status == 200
    ReplicationList.model_validate(listed)
    code, out, _ = await run_cli_parts(capsys, database_url, "replicate", "list", "--json")
    assert code == 0
    assert listed == json.loads(out)
    assert [r["name"] for r in listed] == ["erp-customers", "erp-orders"]

    status, shown = await plane.call("GET", "/api/v1/replications/erp-customers", role="read")
    assert status == 200
    ReplicationOut.model_validate(shown)
    code, out, _ = await run_cli_parts(
        capsys, database_url, "replicate", "status", "erp-customers", "--json"
    )
    assert code == 0
    assert shown == json.loads(out)
    assert (shown["desired"], shown["running"], shown["status"]) == ("running", True, reported)
    last = shown["last_reconciliation"]
    assert (last["id"], last["source_rows"], last["missing"], last["different"]) == (
        "r-new",
        50,
        2,
        1,
    )
    assert listed[1]["last_reconciliation"] is None  # erp-orders was never reconciled


async def test_an_unknown_replication_is_404_and_a_token_is_needed(plane: Plane) -> None:
    status, problem = await plane.call("GET", "/api/v1/replications/nowhere", role="read")
    assert status == 404
    assert "nowhere" in problem["detail"]
    for path in ("/api/v1/replications", "/api/v1/replications/nowhere"):
        status, _ = await plane.call("GET", path, role=None)
        assert status == 401
