"""inventory-management: seeded stock, checks, all-or-nothing reservations, releases."""

from __future__ import annotations

from typing import Any

import aiohttp

from tanqory.apps import RunningService


async def _available(http: aiohttp.ClientSession, stock: RunningService) -> dict[str, int]:
    async with http.get(f"{stock.url}/inventory") as resp:
        return {item["sku"]: item["available"] for item in await resp.json()}


async def _post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_fresh_database_is_seeded(http: aiohttp.ClientSession, stock: RunningService) -> None:
    assert await _available(http, stock) == {
        "SKU-1": 100,
        "SKU-2": 50,
        "SKU-3": 25,
        "SKU-4": 10,
        "SKU-5": 0,
    }
    async with http.get(f"{stock.url}/inventory/SKU-4") as resp:
        item = await resp.json()
    assert item["sku"] == "SKU-4"
    assert item["name"]
    assert (item["available"], item["reserved"]) == (10, 0)
    async with http.get(f"{stock.url}/inventory/SKU-404") as resp:
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"


async def test_check_reports_each_item(http: aiohttp.ClientSession, stock: RunningService) -> None:
    status, answer = await _post(
        http,
        f"{stock.url}/inventory/check",
        {"items": [{"sku": "SKU-1", "quantity": 2}, {"sku": "SKU-5", "quantity": 1}]},
    )
    assert status == 200
    assert answer == {
        "available": False,
        "items": [
            {"sku": "SKU-1", "requested": 2, "available": 100, "ok": True},
            {"sku": "SKU-5", "requested": 1, "available": 0, "ok": False},
        ],
    }
    status, answer = await _post(
        http, f"{stock.url}/inventory/check", {"items": [{"sku": "SKU-2", "quantity": 50}]}
    )
    assert answer["available"] is True


async def test_check_validates_items(http: aiohttp.ClientSession, stock: RunningService) -> None:
    status, problem = await _post(
        http, f"{stock.url}/inventory/check", {"items": [{"sku": "SKU-1", "quantity": 0}]}
    )
    assert status == 422
    assert problem["errors"] == [
        {"field": "items[0].quantity", "message": "must be an integer greater than zero"}
    ]


async def test_reserve_then_release_is_idempotent(
    http: aiohttp.ClientSession, stock: RunningService
) -> None:
    status, reservation = await _post(
        http,
        f"{stock.url}/operations/reserve-items",
        {
            "order_id": "O-1",
            "items": [{"sku": "SKU-1", "quantity": 3}, {"sku": "SKU-4", "quantity": 10}],
        },
    )
    assert status == 201
    assert reservation["status"] == "reserved"
    assert reservation["order_id"] == "O-1"
    assert reservation["items"] == [
        {"sku": "SKU-1", "quantity": 3},
        {"sku": "SKU-4", "quantity": 10},
    ]
    available = await _available(http, stock)
    assert (available["SKU-1"], available["SKU-4"]) == (97, 0)
    async with http.get(f"{stock.url}/inventory/SKU-1") as resp:
        assert (await resp.json())["reserved"] == 3

    rid = reservation["reservation_id"]
    async with http.get(f"{stock.url}/inventory/reservations/{rid}") as resp:
        assert (await resp.json())["status"] == "reserved"

    for _ in range(2):
        status, released = await _post(
            http, f"{stock.url}/operations/release-items", {"reservation_id": rid}
        )
        assert status == 200
        assert released["status"] == "released"
        available = await _available(http, stock)
        assert (available["SKU-1"], available["SKU-4"]) == (100, 10)


async def test_reserve_is_all_or_nothing(
    http: aiohttp.ClientSession, stock: RunningService
) -> None:
    before = await _available(http, stock)
    status, problem = await _post(
        http,
        f"{stock.url}/operations/reserve-items",
        {
            "order_id": "O-2",
            "items": [
                {"sku": "SKU-1", "quantity": 5},
                {"sku": "SKU-3", "quantity": 26},
                {"sku": "SKU-9", "quantity": 1},
            ],
        },
    )
    assert status == 409
    assert problem["type"].endswith("/insufficient-stock")
    assert [s["sku"] for s in problem["items"]] == ["SKU-3", "SKU-9"]
    assert await _available(http, stock) == before


async def test_reserve_and_release_validate_and_report_unknown_ids(
    http: aiohttp.ClientSession, stock: RunningService
) -> None:
    status, problem = await _post(http, f"{stock.url}/operations/reserve-items", {"items": []})
    assert status == 422
    assert {e["field"] for e in problem["errors"]} == {"order_id", "items"}
    status, problem = await _post(
        http, f"{stock.url}/operations/release-items", {"reservation_id": "RSV-77"}
    )
    assert status == 404
    async with http.get(f"{stock.url}/inventory/reservations/RSV-77") as resp:
        assert resp.status == 404
