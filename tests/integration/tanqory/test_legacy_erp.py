"""legacy-erp: seeded customer, customers and orders, reports and batch jobs."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tanqory.apps import RunningService, legacy_erp


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with http.post(url, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_acme_is_seeded(http: aiohttp.ClientSession, erp: RunningService) -> None:
    async with http.get(f"{erp.url}/erp/customers/C-1") as resp:
        assert resp.status == 200
        customer = await resp.json()
    assert (customer["customer_id"], customer["name"]) == ("C-1", "Acme Corp")


async def test_create_customers(http: aiohttp.ClientSession, erp: RunningService) -> None:
    status, created = await _post(
        http, f"{erp.url}/erp/customers", {"name": "Globex", "email": "ap@globex.example"}
    )
    assert status == 201
    assert created["customer_id"] == "C-2"
    status, named = await _post(
        http,
        f"{erp.url}/erp/customers",
        {"customer_id": "C-100", "name": "Initech", "email": "ap@initech.example"},
    )
    assert (status, named["customer_id"]) == (201, "C-100")
    # Older callers send "id"; saving an existing customer updates it.
    status, updated = await _post(
        http,
        f"{erp.url}/erp/customers",
        {"id": "C-1", "name": "Acme Corporation", "email": "billing@acme.example"},
    )
    assert (status, updated["name"]) == (200, "Acme Corporation")
    async with http.get(f"{erp.url}/erp/customers") as resp:
        ids = [c["customer_id"] for c in await resp.json()]
    assert sorted(ids) == ["C-1", "C-100", "C-2"]

    status, problem = await _post(http, f"{erp.url}/erp/customers", {"name": "No Mail"})
    assert status == 422
    assert problem["errors"][0]["field"] == "email"


async def test_orders_and_daily_report(http: aiohttp.ClientSession, erp: RunningService) -> None:
    items = [{"sku": "SKU-1", "quantity": 2, "price": 49.5}]
    status, order = await _post(
        http, f"{erp.url}/erp/orders", {"customer_id": "C-1", "items": items, "total": 99.0}
    )
    assert status == 201
    assert order["order_id"] == "SO-000001"
    assert order["status"] == "created"
    async with http.get(f"{erp.url}/erp/orders/SO-000001") as resp:
        stored = await resp.json()
    assert (stored["customer_id"], stored["items"], stored["total"]) == ("C-1", items, 99.0)

    await _post(http, f"{erp.url}/erp/orders", {"customer_id": "C-1", "items": items, "total": 1})
    async with http.get(f"{erp.url}/erp/reports/daily") as resp:
        report = await resp.json()
    assert (report["orders"], report["revenue"]) == (2, 100.0)
    async with http.get(f"{erp.url}/erp/reports/daily", params={"date": "2001-01-01"}) as resp:
        assert (await resp.json())["orders"] == 0
    async with http.get(f"{erp.url}/erp/reports/daily", params={"date": "yesterday"}) as resp:
        assert resp.status == 422


async def test_order_for_unknown_customer_is_a_422(
    http: aiohttp.ClientSession, erp: RunningService
) -> None:
    status, problem = await _post(
        http, f"{erp.url}/erp/orders", {"customer_id": "C-9", "items": [{}], "total": 1}
    )
    assert status == 422
    assert problem["errors"][0]["field"] == "customer_id"
    status, problem = await _post(http, f"{erp.url}/erp/orders", {"customer_id": "C-1"})
    assert status == 422
    assert [e["field"] for e in problem["errors"]] == ["items", "total"]
    async with http.get(f"{erp.url}/erp/orders/SO-000001") as resp:
        assert resp.status == 404


async def test_customer_sync_upserts(http: aiohttp.ClientSession, erp: RunningService) -> None:
    batch = {
        "customers": [
            {"customer_id": "C-1", "name": "Acme Corp", "email": "new@acme.example"},
            {"customer_id": "C-7", "name": "Umbrella", "email": "ap@umbrella.example"},
            {"name": "Hooli", "email": "ap@hooli.example"},
        ]
    }
    status, counts = await _post(http, f"{erp.url}/batch/customer-sync", batch)
    assert (status, counts) == (200, {"accepted": 3, "created": 2, "updated": 1})
    async with http.get(f"{erp.url}/erp/customers/C-1") as resp:
        assert (await resp.json())["email"] == "new@acme.example"

    status, counts = await _post(http, f"{erp.url}/batch/customer-sync", batch)
    assert counts == {"accepted": 3, "created": 1, "updated": 2}


async def test_customer_sync_rejects_a_bad_batch_whole(
    http: aiohttp.ClientSession, erp: RunningService
) -> None:
    batch = {
        "customers": [
            {"customer_id": "C-8", "name": "Fine", "email": "fine@example.com"},
            {"customer_id": "C-9", "name": "Broken"},
        ]
    }
    status, problem = await _post(http, f"{erp.url}/batch/customer-sync", batch)
    assert status == 422
    assert problem["errors"][0]["field"] == "customers[1].email"
    async with http.get(f"{erp.url}/erp/customers/C-8") as resp:
        assert resp.status == 404


async def test_order_export_since(
    http: aiohttp.ClientSession, erp: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Times are kept to the millisecond: each order is made a millisecond after the last, so
    # the second is the only one created at or after its own time.
    ticks = itertools.count()
    start = datetime.now(UTC)
    monkeypatch.setattr(
        legacy_erp,
        "utc_now",
        lambda: (start + timedelta(milliseconds=next(ticks))).isoformat(timespec="milliseconds"),
    )
    for total in (10, 20):
        await _post(
            http, f"{erp.url}/erp/orders", {"customer_id": "C-1", "items": [{}], "total": total}
        )
    async with http.get(f"{erp.url}/batch/order-export") as resp:
        exported = await resp.json()
    assert [o["order_id"] for o in exported] == ["SO-000001", "SO-000002"]
    since = exported[1]["created_at"]
    async with http.get(f"{erp.url}/batch/order-export", params={"since": since}) as resp:
        assert [o["total"] for o in await resp.json()] == [20]
    async with http.get(f"{erp.url}/batch/order-export", params={"since": "2999-01-01"}) as resp:
        assert await resp.json() == []
    async with http.get(f"{erp.url}/batch/order-export", params={"since": "soon"}) as resp:
        assert resp.status == 422


async def test_the_xml_interface_takes_and_answers_xml(
    http: aiohttp.ClientSession, erp: RunningService
) -> None:
    import xml.etree.ElementTree as ET

    body = b"<order><customer_id>C-1</customer_id><total>9.5</total></order>"
    async with http.post(f"{erp.url}/erp/xml/orders", data=body) as resp:
        assert resp.status == 201
        assert resp.content_type == "application/xml"
        order = ET.fromstring(await resp.read())
    assert order.findtext("order_id", "").startswith("SO-")
    assert (order.findtext("status"), order.findtext("total")) == ("created", "9.5")
    async with http.get(f"{erp.url}/erp/orders/{order.findtext('order_id')}") as resp:
        assert (await resp.json())["total"] == 9.5  # the same order, seen in JSON
    async with http.post(f"{erp.url}/erp/xml/orders", data=b'{"json": true}') as resp:
        assert resp.status == 400
        assert "not XML" in (ET.fromstring(await resp.read()).findtext("message") or "")
    async with http.get(f"{erp.url}/erp/xml/customers/C-1") as resp:
        assert ET.fromstring(await resp.read()).findtext("name") == "Acme Corp"
