"""The gateway's routes over HTTP: list, show, stats and mismatches as the CLI's --json, and
setting a backend's weight."""

from __future__ import annotations

import json
import time

import pytest
from tests.cli_in_process import run_cli_parts
from tests.integration.control.conftest import Plane
from tests.integration.control.migration_rig import apply_routes

from hybridmesh.control.routes.gateway import RouteDetail, RouteStats
from hybridmesh.gateway.state import GatewayState
from hybridmesh.gateway.stats import WindowRecorder


async def record_traffic(plane: Plane) -> None:
    """Five seconds ago: 40 answers from the monolith (4 of them 503), 10 from delivery."""
    recorder = WindowRecorder(plane.runtime.store, replica="r1", clock=lambda: time.time() - 5)
    for n in range(40):
        recorder.observe("content-delivery", "monolith", 503 if n < 4 else 200, 0.010 + n / 1000)
    for _ in range(10):
        recorder.observe("content-delivery", "delivery", 200, 0.2)
    await recorder.close()


async def test_reads_answer_what_the_cli_prints(
    plane: Plane, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await apply_routes(plane.runtime.store)
    await record_traffic(plane)
    for path, args in (
        ("/api/v1/routes", ("routes", "list", "--json")),
        ("/api/v1/routes/content-delivery", ("routes", "show", "content-delivery", "--json")),
        (
            "/api/v1/routes/content-delivery/stats?window=5m",
            ("routes", "stats", "content-delivery", "--window", "5m", "--json"),
        ),
        (
            "/api/v1/routes/content-delivery/mismatches",
            ("routes", "mismatches", "content-delivery", "--json"),
        ),
    ):
        status, answered = await plane.call("GET", path, role="read")
        code, out, _ = await run_cli_parts(capsys, database_url, *args)
        assert (status, code) == (200, 0)
        assert answered == json.loads(out), path
    status, shown = await plane.call("GET", "/api/v1/routes/content-delivery", role="read")
    assert [(b.name, b.weight) for b in RouteDetail.model_validate(shown).backends] == [
        ("monolith", 100.0),
        ("delivery", 0.0),
    ]


async def test_stats_give_each_backends_rate_errors_and_p95(plane: Plane) -> None:
    await apply_routes(plane.runtime.store)
    await record_traffic(plane)
    status, answered = await plane.call(
        "GET", "/api/v1/routes/content-delivery/stats?window=30s", role="read"
    )
    assert status == 200
    stats = RouteStats.model_validate(answered)
    by_name = {b.backend: b for b in stats.backends}
    assert (by_name["monolith"].requests, by_name["monolith"].errors) == (40, 4)
    assert by_name["monolith"].error_rate == 0.1
    assert (
        by_name["delivery"].p95_ms is not None and 180 < by_name["delivery"].p95_ms < 230
    )  # buckets of 12 %


async def test_setting_a_weight_moves_traffic_in_the_store(plane: Plane) -> None:
    await apply_routes(plane.runtime.store)
    status, answered = await plane.call(
        "POST",
        "/api/v1/routes/content-delivery/weights",
        role="operate",
        json={"backend": "delivery", "percent": 25},
    )
    assert (status, answered) == (
        200,
        {"route": "content-delivery", "weights": {"monolith": 75.0, "delivery": 25.0}},
    )
    route = (await GatewayState(plane.runtime.store).route("content-delivery")).route
    assert route.backend("delivery").weight == 25.0
    (entry,) = await plane.runtime.store.fetch_all("SELECT operation, target FROM api_audit")
    assert (entry["operation"], entry["target"]) == ("set_route_weight", "content-delivery")


async def test_refusals_are_401_403_404_and_400(plane: Plane) -> None:
    await apply_routes(plane.runtime.store)
    weights = "/api/v1/routes/content-delivery/weights"
    assert (await plane.call("GET", "/api/v1/routes", role=None))[0] == 401
    body = {"backend": "delivery", "percent": 50}
    assert (await plane.call("POST", weights, role="read", json=body))[0] == 403
    assert (await plane.call("GET", "/api/v1/routes/nothing", role="read"))[0] == 404
    assert (await plane.call("GET", "/api/v1/routes/nothing/stats", role="read"))[0] == 404
    status, problem = await plane.call(
        "GET", "/api/v1/routes/content-delivery/stats?window=2h", role="read"
    )
    assert (status, problem["errors"][0]["field"]) == (400, "window")
    status, problem = await plane.call(
        "POST", weights, role="operate", json={"backend": "delivery", "percent": 150}
    )
    assert status == 400, problem
    route = (await GatewayState(plane.runtime.store).route("content-delivery")).route
    assert route.backend("delivery").weight == 0.0
