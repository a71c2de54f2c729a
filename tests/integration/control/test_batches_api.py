"""Batch records and runs over HTTP, as `batch list|runs --json` prints them, and a failed
record requeued; with the errors of each operation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.cli_in_process import run_cli_parts
from tests.integration.control.conftest import Plane

from hybridmesh.control.routes.batches import BatchRecordList, BatchRunList


async def cli_json(capsys: pytest.CaptureFixture[str], database_url: str, *args: str) -> Any:
    code, out, err = await run_cli_parts(capsys, database_url, "batch", *args, "--json")
    assert code == 0, err
    return json.loads(out)


async def delivered(plane: Plane) -> tuple[str, str]:
    """Two records of erp/orders written in one run, one acknowledged and one failed by
    the legacy side's result file: their ids."""
    batch = plane.runtime.batch
    ok = (await batch.enqueue("erp", "orders", {"order": "O-1"})).id
    bad = (await batch.enqueue("erp", "orders", {"order": "O-2"})).id
    await batch.flush()
    inbox = batch.exchange_dir / "erp" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "acks.csv").write_text(f"record_id,status,error\n{ok},ok,\n{bad},failed,no stock\n")
    await batch.collect_results()
    return ok, bad


async def test_records_and_runs_as_the_cli_prints_them_and_a_requeue(
    plane: Plane, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ok, bad = await delivered(plane)
    waiting = (await plane.runtime.batch.enqueue("crm", "contacts", {"name": "Ada"})).id

    status, records = await plane.call("GET", "/api/v1/batch/records", role="read")
    assert status == 200
    BatchRecordList.model_validate(records)
    assert [r["id"] for r in records] == [waiting, bad, ok]
    assert records == await cli_json(capsys, database_url, "list")
    status, failed = await plane.call(
        "GET", "/api/v1/batch/records?status=failed&target=erp", role="read"
    )
    assert [(r["id"], r["error"]) for r in failed] == [(bad, "no stock")]
    assert failed == await cli_json(
        capsys, database_url, "list", "--status", "failed", "--target", "erp"
    )

    status, runs = await plane.call("GET", "/api/v1/batch/runs", role="read")
    assert status == 200
    BatchRunList.model_validate(runs)
    [run] = runs
    assert (run["records"], run["status"]) == (2, "partially_failed")
    assert runs == await cli_json(capsys, database_url, "runs")

    status, requeued = await plane.call(
        "POST", f"/api/v1/batch/records/{bad}/requeue", role="operate"
    )
    assert status == 200, requeued
    assert (requeued["status"], requeued["error"]) == ("queued", None)
    queued = await cli_json(capsys, database_url, "list", "--status", "queued")
    assert [r["id"] for r in queued] == [waiting, bad]

    status, problem = await plane.call(
        "POST", f"/api/v1/batch/records/{ok}/requeue", role="operate"
    )
    assert (status, problem["status"]) == (409, 409)
    assert "acknowledged" in problem["detail"]


async def test_errors_of_each_operation(plane: Plane) -> None:
    record = (await plane.runtime.batch.enqueue("erp", "orders", {"order": "O-9"})).id
    requeue = f"/api/v1/batch/records/{record}/requeue"
    for method, path in (
        ("GET", "/api/v1/batch/records"),
        ("GET", "/api/v1/batch/runs"),
        ("POST", requeue),
    ):
        status, _ = await plane.call(method, path, role=None)
        assert status == 401, path
    status, problem = await plane.call("POST", requeue, role="read")
    assert (status, problem["status"]) == (403, 403)
    status, problem = await plane.call("POST", "/api/v1/batch/records/nope/requeue", role="operate")
    assert (status, problem["status"]) == (404, 404)
    for path, field_name in (
        ("/api/v1/batch/records?status=lost", "status"),
        ("/api/v1/batch/records?limit=0", "limit"),
        ("/api/v1/batch/runs?target=erp", "target"),
    ):
        status, problem = await plane.call("GET", path, role="read")
        assert status == 400, path
        assert [e["field"] for e in problem["errors"]] == [field_name], path
