"""Fault injection: a service fails or slows down on demand, and recovers when told."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import aiohttp
import pytest
from tests.waiting import eventually

from tanqory.apps import RunningService, _faults


async def _set_fault(http: aiohttp.ClientSession, url: str, **fault: Any) -> dict[str, Any]:
    async with http.post(f"{url}/_admin/faults", json=fault) as resp:
        assert resp.status == 200, await resp.text()
        result: dict[str, Any] = await resp.json()
        return result


async def test_error_mode_fails_count_requests_with_retry_after(
    http: aiohttp.ClientSession, erp: RunningService
) -> None:
    await _set_fault(http, erp.url, mode="error", status=503, count=2, retry_after=7)
    for _ in range(2):
        async with http.get(f"{erp.url}/erp/customers/C-1") as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "7"
            assert resp.content_type == "application/problem+json"
            problem = await resp.json(content_type=None)
            assert problem["status"] == 503
            assert "injected" in problem["detail"]
    async with http.get(f"{erp.url}/erp/customers/C-1") as resp:
        assert resp.status == 200
    async with http.get(f"{erp.url}/_admin/faults") as resp:
        assert (await resp.json())["mode"] == "off"


async def test_error_mode_until_off_and_only_on_matching_paths(
    http: aiohttp.ClientSession, erp: RunningService
) -> None:
    await _set_fault(http, erp.url, mode="error", status=500, paths=["/erp/orders"])
    async with http.get(f"{erp.url}/_admin/faults") as resp:
        shown = await resp.json()
    assert shown["mode"] == "error"
    assert shown["paths"] == ["/erp/orders"]
    for _ in range(3):
        async with http.get(f"{erp.url}/erp/orders/SO-000001") as resp:
            assert resp.status == 500
            assert "Retry-After" not in resp.headers
    async with http.get(f"{erp.url}/erp/customers/C-1") as resp:
        assert resp.status == 200
    async with http.get(f"{erp.url}/healthz") as resp:
        assert resp.status == 200
    await _set_fault(http, erp.url, mode="off")
    async with http.get(f"{erp.url}/erp/orders/SO-000001") as resp:
        assert resp.status == 404


async def test_faults_never_block_admin_or_health(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    await _set_fault(http, users.url, mode="error")
    async with http.get(f"{users.url}/healthz") as resp:
        assert resp.status == 200
    async with http.get(f"{users.url}/_admin/requests") as resp:
        assert resp.status == 200
    async with http.get(f"{users.url}/users") as resp:
        assert resp.status == 503


async def test_latency_mode_delays_then_answers(
    http: aiohttp.ClientSession, stock: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The injected delay waits for the test to end it, so it is seen without timing.
    delays: list[float] = []
    over = asyncio.Event()

    async def delay(seconds: float) -> None:
        delays.append(seconds)
        await over.wait()

    monkeypatch.setattr(_faults, "asyncio", types.SimpleNamespace(sleep=delay))
    await _set_fault(http, stock.url, mode="latency", delay=0.3, count=1)

    async def get() -> int:
        async with http.get(f"{stock.url}/inventory/SKU-1") as resp:
            return resp.status

    delayed = asyncio.create_task(get())
    await eventually(lambda: bool(delays), what="the first request delayed")
    assert await get() == 200  # the fault's one turn is used: the next is not delayed
    assert delays == [0.3] and not delayed.done()
    over.set()
    assert await delayed == 200


async def test_invalid_fault_is_a_422_naming_the_field(
    http: aiohttp.ClientSession, users: RunningService
) -> None:
    async with http.post(f"{users.url}/_admin/faults", json={"mode": "explode"}) as resp:
        assert resp.status == 422
        problem = await resp.json(content_type=None)
    assert problem["errors"][0]["field"] == "mode"
    assert "mode" in problem["detail"]
