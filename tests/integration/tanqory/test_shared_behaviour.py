"""What every service does at its edges: problems, request ids, the request log, health."""

from __future__ import annotations

import aiohttp

from tanqory.apps import RunningService


async def test_healthz_names_the_service(
    http: aiohttp.ClientSession, any_service: RunningService
) -> None:
    async with http.get(f"{any_service.url}/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok", "service": any_service.name}


async def test_unknown_route_is_a_404_problem(
    http: aiohttp.ClientSession, any_service: RunningService
) -> None:
    async with http.get(f"{any_service.url}/no/such/thing") as resp:
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"
        problem = await resp.json(content_type=None)
    assert problem["status"] == 404
    assert problem["title"] == "Not Found"
    assert "/no/such/thing" in problem["detail"]
    assert problem["type"] == "about:blank"


async def test_wrong_method_is_a_405_problem_with_allow(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    async with http.put(f"{users.url}/users") as resp:
        assert resp.status == 405
        assert resp.content_type == "application/problem+json"
        assert "GET" in resp.headers["Allow"]


async def test_malformed_json_is_a_400_problem(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    async with http.post(f"{users.url}/users", data=b"{not json") as resp:
        assert resp.status == 400
        assert resp.content_type == "application/problem+json"


async def test_request_id_is_echoed_or_generated(
    http: aiohttp.ClientSession, any_service: RunningService
) -> None:
    async with http.get(f"{any_service.url}/healthz", headers={"X-Request-ID": "req-42"}) as resp:
        assert resp.headers["X-Request-ID"] == "req-42"
    async with http.get(f"{any_service.url}/healthz") as resp:
        assert resp.headers["X-Request-ID"]
    async with http.get(f"{any_service.url}/missing", headers={"X-Request-ID": "req-43"}) as resp:
        assert resp.status == 404
        assert resp.headers["X-Request-ID"] == "req-43"


async def test_admin_requests_shows_the_headers_that_arrived(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    sent = {
        "X-Request-ID": "req-1",
        "X-Source-Service": "order-processing",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "Idempotency-Key": "key-1",
    }
    async with http.post(
        f"{users.url}/users", json={"email": "ada@example.com", "name": "Ada"}, headers=sent
    ) as resp:
        assert resp.status == 201
    async with http.get(f"{users.url}/users") as resp:
        assert resp.status == 200
    async with http.get(f"{users.url}/_admin/requests") as resp:
        log = await resp.json()
    assert [(e["method"], e["path"]) for e in log] == [("POST", "/users"), ("GET", "/users")]
    for name, value in sent.items():
        assert log[0]["headers"][name] == value


async def test_admin_requests_keeps_the_last_hundred(
    http: aiohttp.ClientSession, stock: RunningService
) -> None:
    for i in range(105):
        async with http.get(f"{stock.url}/healthz", headers={"X-Request-ID": f"r{i}"}):
            pass
    async with http.get(f"{stock.url}/_admin/requests") as resp:
        log = await resp.json()
    assert len(log) == 100
    assert log[0]["headers"]["X-Request-ID"] == "r5"
    assert log[-1]["headers"]["X-Request-ID"] == "r104"
    async with http.delete(f"{stock.url}/_admin/requests") as resp:
        assert resp.status == 204
    async with http.get(f"{stock.url}/_admin/requests") as resp:
        assert await resp.json() == []
