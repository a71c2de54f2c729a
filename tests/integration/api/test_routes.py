"""Health, metrics, problem details for unknown routes, and X-Request-ID on every response."""

from __future__ import annotations

from typing import Any

import aiohttp
from tests.integration.api.helpers import Served

from hybridmesh.events.envelope import STRUCTURED_CONTENT_TYPE, CloudEvent


async def test_healthz_is_ok_while_the_bus_runs(served: Served) -> None:
    async with served.http.get(served.url + "/healthz") as response:
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "ok"
    assert body["checks"]["bus"] == {"status": "ok", "backend": "memory"}
    assert body["checks"]["websocket"] == {"status": "ok", "clients": 0}


async def test_healthz_is_503_when_the_bus_is_not_running(served: Served) -> None:
    await served.bus.close()
    async with served.http.get(served.url + "/healthz") as response:
        assert response.status == 503
        body = await response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["bus"]["status"] == "stopped"


async def test_metrics_exposes_published_events(served: Served) -> None:
    event = CloudEvent.create("user.registered", "/users", {"user_id": "1"})
    async with served.http.post(
        served.url + "/events",
        data=event.to_json(),
        headers={"Content-Type": STRUCTURED_CONTENT_TYPE},
    ) as response:
        assert response.status == 202
    async with served.http.get(served.url + "/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    assert 'hybridmesh_events_published_total{type="user.registered"} 1.0' in text
    assert "hybridmesh_ws_clients 0.0" in text


async def test_an_unknown_route_is_a_404_problem(served: Served) -> None:
    async with served.http.get(served.url + "/nowhere") as response:
        assert response.status == 404
        assert response.content_type == "application/problem+json"
        problem = await response.json(content_type=None)
    assert problem == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "nothing is served at /nowhere",
    }


async def test_a_wrong_method_is_a_405_problem_with_allow(served: Served) -> None:
    async with served.http.get(served.url + "/events") as response:
        assert response.status == 405
        assert response.content_type == "application/problem+json"
        assert response.headers["Allow"] == "POST"
        problem = await response.json(content_type=None)
    assert problem["status"] == 405


async def test_the_websocket_endpoint_refuses_plain_http_with_426(served: Served) -> None:
    async with served.http.get(served.url + "/ws/events?token=42") as response:
        assert response.status == 426
        assert response.content_type == "application/problem+json"


async def test_x_request_id_is_echoed(served: Served) -> None:
    for path in ("/healthz", "/nowhere"):
        headers = {"X-Request-ID": "req-123"}
        async with served.http.get(served.url + path, headers=headers) as response:
            assert response.headers["X-Request-ID"] == "req-123"


async def test_x_request_id_is_made_when_missing_or_malformed(served: Served) -> None:
    async with served.http.get(served.url + "/healthz") as response:
        made = response.headers["X-Request-ID"]
    assert len(made) == 32
    bad = {"X-Request-ID": "has spaces in it"}
    async with served.http.get(served.url + "/healthz", headers=bad) as response:
        assert response.headers["X-Request-ID"] not in ("has spaces in it", made)


async def test_the_websocket_upgrade_carries_x_request_id(served: Served) -> None:
    seen: list[str] = []

    async def on_request_end(_: Any, __: Any, params: aiohttp.TraceRequestEndParams) -> None:
        seen.append(params.response.headers.get("X-Request-ID", ""))

    tracing = aiohttp.TraceConfig()
    tracing.on_request_end.append(on_request_end)
    async with aiohttp.ClientSession(trace_configs=[tracing]) as http:
        ws = await http.ws_connect(served.ws_url + "?token=42", headers={"X-Request-ID": "ws-1"})
        await ws.close()
    assert seen == ["ws-1"]


async def test_livez_is_ok_even_when_the_bus_is_not_running_and_readyz_is_not(
    served: Served,
) -> None:
    async with served.http.get(served.url + "/readyz") as response:
        assert response.status == 200
    await served.bus.close()
    async with served.http.get(served.url + "/livez") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})
    async with served.http.get(served.url + "/readyz") as response:
        assert response.status == 503
        assert (await response.json())["checks"]["bus"]["status"] == "stopped"
