"""Every write through the API leaves one audit row, whatever its outcome; reads leave none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.cli_in_process import run_cli_parts
from tests.integration.control.conftest import OpenPlane, Plane
from tests.integration.control.test_executions_api import load_sagas, registry

SERVICE = "name: orders\narchitecture: microservice\nversion: v1\nbase_url: http://o\n"


async def test_one_audit_row_per_write_with_who_what_and_outcome(
    plane: Plane, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await plane.call("GET", "/api/v1/services", role="read")  # a read: not audited
    await plane.call(
        "POST",
        "/api/v1/registry/apply",
        role="operate",
        data=SERVICE,
        headers={"X-Request-ID": "apply-1"},
    )
    await plane.call("POST", "/api/v1/executions/ghost/cancel", role="admin", json={})
    await plane.call("POST", "/api/v1/executions", role="read", json={"kind": "saga", "name": "x"})
    await plane.call("POST", "/api/v1/executions", role=None, json={"kind": "saga", "name": "x"})

    status, trail = await plane.call("GET", "/api/v1/audit", role="admin")
    assert status == 200
    rows = [
        (
            e["token_name"],
            e["role"],
            e["method"],
            e["path"],
            e["operation"],
            e["target"],
            e["status"],
        )
        for e in reversed(trail)
    ]
    assert rows == [
        ("operate", "operate", "POST", "/api/v1/registry/apply", "apply_registry", None, 200),
        (
            "admin",
            "admin",
            "POST",
            "/api/v1/executions/ghost/cancel",
            "cancel_execution",
            "ghost",
            404,
        ),
        ("read", "read", "POST", "/api/v1/executions", "start_execution", None, 403),
    ]  # no row for the request without a token: there is no one to name
    assert trail[-1]["request_id"] == "apply-1"
    assert all(e["at"] and e["id"] for e in trail)

    code, out, _ = await run_cli_parts(capsys, database_url, "audit", "list", "--json")
    assert (code, json.loads(out)) == (0, trail)
    code, out, _ = await run_cli_parts(
        capsys, database_url, "audit", "list", "--json", "--limit", "1"
    )
    assert json.loads(out) == trail[:1]


async def test_a_started_execution_is_audited_with_its_id(
    open_plane: OpenPlane, tmp_path: Path
) -> None:
    async with open_plane(registry=registry()) as plane:
        await load_sagas(plane, tmp_path, "parked")
        status, started = await plane.call(
            "POST", "/api/v1/executions", role="operate", json={"kind": "saga", "name": "parked"}
        )
        assert status == 202
        _, trail = await plane.call("GET", "/api/v1/audit?limit=1", role="admin")
    assert (trail[0]["operation"], trail[0]["target"], trail[0]["status"]) == (
        "start_execution",
        started["id"],
        202,
    )
