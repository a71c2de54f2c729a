"""Migration plans over HTTP: list and show as the CLI's --json, the history of shifts and
gate figures over time, and a person's controls changing the plan in the store."""

from __future__ import annotations

import json
import time

import pytest
from tests.cli_in_process import run_cli_parts
from tests.integration.control.conftest import Plane
from tests.integration.control.migration_rig import Runner, apply_routes, store_plan

from hybridmesh.control.routes.migrations import PlanDetail, PlanList, PlanOut
from hybridmesh.gateway.state import GatewayState
from hybridmesh.migration.state import MigrationState, Status


async def awaiting_approval(plane: Plane) -> tuple[str, Runner]:
    """A plan that has prepared the route and moved 10 %, its 50 % step awaiting approval
    (the 10 % step's window passed on healthy traffic)."""
    store = plane.runtime.store
    await apply_routes(store)
    name = await store_plan(store)
    runner = Runner(store, time.time())
    await runner.tick(name, 3)  # prepare, then 10 %: monitoring
    await runner.traffic("delivery", runner.now + 5, ok=20)
    runner.now += 700  # past the window: it is judged whole, and passes
    record = await runner.tick(name, 3)
    assert record.status is Status.WAITING_APPROVAL, record.reason
    return name, runner


async def test_list_and_show_answer_what_the_cli_prints(
    plane: Plane, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name, _ = await awaiting_approval(plane)
    for path, args in (
        ("/api/v1/migrations", ("migrate", "list", "--json")),
        (f"/api/v1/migrations/{name}", ("migrate", "show", name, "--json")),
    ):
        status, answered = await plane.call("GET", path, role="read")
        code, out, _ = await run_cli_parts(capsys, database_url, *args)
        assert (status, code) == (200, 0)
        assert answered == json.loads(out), path
    status, plans = await plane.call("GET", "/api/v1/migrations", role="read")
    assert [p.status for p in PlanList.model_validate(plans).root] == ["waiting_approval"]


async def test_show_tells_the_shifts_and_each_gates_figures_over_time(plane: Plane) -> None:
    name, _ = await awaiting_approval(plane)
    status, shown = await plane.call("GET", f"/api/v1/migrations/{name}", role="read")
    assert status == 200
    detail = PlanDetail.model_validate(shown)
    assert (detail.status, detail.step_name) == (Status.WAITING_APPROVAL, "content-delivery 50%")
    assert detail.weights == {"monolith": 90.0, "delivery": 10.0}
    assert [(s.backend, s.percent) for s in detail.traffic] == [
        ("delivery", 0.0),
        ("delivery", 10.0),
    ]
    (verdict,) = detail.evaluations
    assert (verdict.step_name, verdict.verdict, verdict.requests) == (
        "content-delivery 10%",
        "pass",
        20,
    )
    ten = next(g for g in detail.gates if g.name == "content-delivery 10%")
    assert ten.thresholds["max_error_rate"] == 0.01 and ten.ended_at is not None
    assert sum(p.requests for p in ten.series) == 20
    assert {p.seconds for p in ten.series} == {10}
    fifty = next(g for g in detail.gates if g.name == "content-delivery 50%")
    assert (fifty.started_at, fifty.series) == (None, [])
    assert detail.audit[-1].action == "migration.gate.awaiting_approval"


async def test_approving_lets_the_runner_move_traffic(
    plane: Plane, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    name, runner = await awaiting_approval(plane)
    status, approved = await plane.call(
        "POST", f"/api/v1/migrations/{name}/approve", role="operate", json={"reason": "looks good"}
    )
    assert status == 200, approved
    PlanOut.model_validate(approved)
    assert (approved["status"], approved["approved_step"]) == ("running", approved["step"])
    code, out, _ = await run_cli_parts(capsys, database_url, "migrate", "status", name, "--json")
    assert code == 0 and json.loads(out)["status"] == "running"
    entry = (await MigrationState(plane.runtime.store).audit(name))[-1]
    assert (entry.actor, entry.action, entry.reason) == (
        "operate",
        "migration.approve",
        "looks good",
    )

    await runner.tick(name)
    route = (await GatewayState(plane.runtime.store).route("content-delivery")).route
    assert route.backend("delivery").weight == 50.0
    status, shown = await plane.call("GET", f"/api/v1/migrations/{name}", role="read")
    assert [s["percent"] for s in shown["traffic"]] == [0.0, 10.0, 50.0]


async def test_pause_resume_and_abort_follow_the_plans_status(plane: Plane) -> None:
    name, _ = await awaiting_approval(plane)
    base = f"/api/v1/migrations/{name}"
    status, problem = await plane.call("POST", f"{base}/resume", role="operate")
    assert status == 409, problem
    assert "waiting_approval" in problem["detail"]
    assert (await plane.call("POST", f"{base}/pause", role="operate"))[1]["status"] == "paused"
    assert (await plane.call("POST", f"{base}/resume", role="operate"))[1]["status"] == "running"
    status, aborted = await plane.call("POST", f"{base}/abort", role="operate")
    assert (status, aborted["status"]) == (200, "aborting")
    assert (await MigrationState(plane.runtime.store).get(name)).status is Status.ABORTING
    status, problem = await plane.call("POST", f"{base}/approve", role="operate")
    assert status == 409 and problem["title"] == "Conflict"


async def test_refusals_are_401_403_404_and_400(plane: Plane) -> None:
    name, _ = await awaiting_approval(plane)
    base = f"/api/v1/migrations/{name}"
    assert (await plane.call("GET", "/api/v1/migrations", role=None))[0] == 401
    status, _ = await plane.call("POST", f"{base}/approve", role="read")
    assert status == 403
    assert (await MigrationState(plane.runtime.store).get(name)).status is Status.WAITING_APPROVAL
    assert (await plane.call("GET", "/api/v1/migrations/nothing-here", role="read"))[0] == 404
    assert (await plane.call("POST", "/api/v1/migrations/nothing/pause", role="operate"))[0] == 404
    status, problem = await plane.call(
        "POST", f"{base}/approve", role="operate", json={"by": "someone"}
    )
    assert (status, problem["errors"][0]["field"]) == (400, "by")
