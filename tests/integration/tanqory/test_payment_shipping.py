"""payment-service, shipping-service and inventory as saga participants: every operation is
idempotent, and every compensation is safe when its forward step never happened (and bars
that step from happening late)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tanqory.apps import RunningService, payment_service, shipping_service

ADDRESS = {"street": "1 Analytical Way", "city": "London", "postal_code": "N1", "country": "GB"}
CHARGE = {"order_id": "O-1", "customer_id": "U-1", "amount": 59.99, "payment_method": "card"}
SHIPMENT = {"order_id": "O-1", "items": [{"sku": "SKU-1", "quantity": 2}]}
SHIPMENT["shipping_address"] = ADDRESS


@pytest.fixture
async def payments(tmp_path: Path) -> AsyncIterator[RunningService]:
    async with await payment_service.start(tmp_path / "payments.db") as service:
        yield service


@pytest.fixture
async def shipping(tmp_path: Path) -> AsyncIterator[RunningService]:
    async with await shipping_service.start(tmp_path / "shipping.db") as service:
        yield service


async def _post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], key: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Idempotency-Key": key} if key else {}
    async with http.post(url, json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


# --- payment-service ---------------------------------------------------------------------


async def test_a_charge_is_made_once_per_order_and_per_key(
    http: aiohttp.ClientSession, payments: RunningService
) -> None:
    url = f"{payments.url}/operations/charge-payment"
    status, charge = await _post(http, url, CHARGE, key="k-1")
    assert status == 201
    assert (charge["charge_id"], charge["status"], charge["amount"]) == ("CH-1", "charged", 59.99)

    async with http.post(url, json=CHARGE, headers={"Idempotency-Key": "k-1"}) as resp:
        assert resp.status == 201
        assert resp.headers["Idempotent-Replayed"] == "true"
    # Another key (a new attempt the saga did not know about) still charges the order once.
    assert await _post(http, url, CHARGE, key="k-2") == (200, charge)
    assert await _get(http, f"{payments.url}/payments?order_id=O-1") == [charge]
    assert await _get(http, f"{payments.url}/payments/CH-1") == charge


async def test_the_decline_rules_refuse_a_charge_with_a_402_and_store_nothing(
    http: aiohttp.ClientSession, payments: RunningService
) -> None:
    url = f"{payments.url}/operations/charge-payment"
    assert (await _get(http, f"{payments.url}/_admin/declines"))["max_amount"] == 10_000

    status, problem = await _post(http, url, {**CHARGE, "amount": 10_000.01})
    assert status == 402
    assert problem["type"].endswith("/payment-declined")
    assert "above the limit" in problem["detail"]

    rules = {"max_amount": None, "customers": ["U-13"]}
    async with http.post(f"{payments.url}/_admin/declines", json=rules) as resp:
        assert await resp.json() == rules
    status, problem = await _post(http, url, {**CHARGE, "customer_id": "U-13"})
    assert status == 402
    assert "U-13" in problem["detail"]
    assert await _get(http, f"{payments.url}/payments") == []
    assert (await _post(http, url, {**CHARGE, "amount": 50_000}))[0] == 201

    status, problem = await _post(http, f"{payments.url}/_admin/declines", {"customers": "U-1"})
    assert status == 422
    assert problem["errors"][0]["field"] == "customers"


async def test_a_refund_is_made_once_and_a_charge_after_it_is_refused(
    http: aiohttp.ClientSession, payments: RunningService
) -> None:
    await _post(http, f"{payments.url}/operations/charge-payment", CHARGE)
    refund = f"{payments.url}/operations/refund-payment"

    status, first = await _post(http, refund, {"order_id": "O-1"})
    assert status == 200
    assert (first["status"], first["refunded"]) == ("refunded", True)
    assert await _post(http, refund, {"order_id": "O-1"}) == (200, first)
    assert await _post(http, refund, {"charge_id": "CH-1"}) == (200, first)

    status, problem = await _post(http, f"{payments.url}/operations/charge-payment", CHARGE)
    assert status == 409
    assert problem["type"].endswith("/charge-closed")


async def test_refunding_an_order_never_charged_is_a_no_op_that_bars_a_late_charge(
    http: aiohttp.ClientSession, payments: RunningService
) -> None:
    refund = f"{payments.url}/operations/refund-payment"

    status, answer = await _post(http, refund, {"order_id": "O-7"})
    assert status == 200
    assert (answer["status"], answer["refunded"], answer["amount"]) == ("voided", False, 0)
    status, answer = await _post(http, refund, {"charge_id": "CH-404"})
    assert (status, answer["refunded"]) == (200, False)

    status, _ = await _post(
        http, f"{payments.url}/operations/charge-payment", {**CHARGE, "order_id": "O-7"}
    )
    assert status == 409
    charges = await _get(http, f"{payments.url}/payments?order_id=O-7")
    assert [c["status"] for c in charges] == ["voided"]


async def test_payment_operations_name_each_bad_field(
    http: aiohttp.ClientSession, payments: RunningService
) -> None:
    status, problem = await _post(
        http, f"{payments.url}/operations/charge-payment", {"customer_id": "U-1", "amount": 0}
    )
    assert status == 422
    assert {e["field"] for e in problem["errors"]} == {"order_id", "amount", "payment_method"}
    status, problem = await _post(http, f"{payments.url}/operations/refund-payment", {})
    assert (status, problem["errors"][0]["field"]) == (422, "order_id")


# --- shipping-service --------------------------------------------------------------------


async def test_a_shipment_is_created_once_per_order(
    http: aiohttp.ClientSession, shipping: RunningService
) -> None:
    url = f"{shipping.url}/operations/create-shipment"
    status, shipment = await _post(http, url, SHIPMENT, key="k-1")
    assert status == 201
    assert (shipment["shipment_id"], shipment["status"]) == ("SH-1", "created")
    assert shipment["tracking_number"] == "TQ0000000001"
    assert shipment["shipping_address"] == ADDRESS

    assert await _post(http, url, SHIPMENT, key="k-2") == (200, shipment)
    assert await _get(http, f"{shipping.url}/shipments?order_id=O-1") == [shipment]
    assert await _get(http, f"{shipping.url}/shipments/SH-1") == shipment


async def test_a_cancel_is_idempotent_and_a_create_after_it_is_refused(
    http: aiohttp.ClientSession, shipping: RunningService
) -> None:
    await _post(http, f"{shipping.url}/operations/create-shipment", SHIPMENT)
    cancel = f"{shipping.url}/operations/cancel-shipment"

    status, first = await _post(http, cancel, {"order_id": "O-1"})
    assert (status, first["status"], first["shipment_id"]) == (200, "cancelled", "SH-1")
    assert first["cancelled_at"]
    assert await _post(http, cancel, {"order_id": "O-1"}) == (200, first)

    status, problem = await _post(http, f"{shipping.url}/operations/create-shipment", SHIPMENT)
    assert status == 409
    assert problem["type"].endswith("/shipment-cancelled")


async def test_cancelling_an_order_never_shipped_is_a_no_op_that_bars_a_late_shipment(
    http: aiohttp.ClientSession, shipping: RunningService
) -> None:
    status, answer = await _post(
        http, f"{shipping.url}/operations/cancel-shipment", {"order_id": "O-7"}
    )
    assert status == 200
    assert (answer["status"], answer["shipment_id"], answer["tracking_number"]) == (
        "cancelled",
        None,
        None,
    )

    late = {**SHIPMENT, "order_id": "O-7"}
    assert (await _post(http, f"{shipping.url}/operations/create-shipment", late))[0] == 409
    assert await _get(http, f"{shipping.url}/shipments") == []


async def test_a_shipment_names_each_bad_field(
    http: aiohttp.ClientSession, shipping: RunningService
) -> None:
    body = {"order_id": "O-1", "items": [], "shipping_address": {"street": "1 Way"}}
    status, problem = await _post(http, f"{shipping.url}/operations/create-shipment", body)
    assert status == 422
    assert {e["field"] for e in problem["errors"]} == {
        "items",
        "shipping_address.city",
        "shipping_address.postal_code",
        "shipping_address.country",
    }
    async with http.get(f"{shipping.url}/shipments/SH-9") as resp:
        assert resp.status == 404


# --- inventory-management, as the saga uses it ---------------------------------------------


async def test_an_order_reserves_once_and_releases_by_its_id(
    http: aiohttp.ClientSession, stock: RunningService
) -> None:
    reserve = f"{stock.url}/operations/reserve-items"
    body = {"order_id": "O-1", "items": [{"sku": "SKU-2", "quantity": 5}]}

    status, reservation = await _post(http, reserve, body, key="k-1")
    assert status == 201
    assert await _post(http, reserve, body, key="k-2") == (200, reservation)
    assert (await _get(http, f"{stock.url}/inventory/SKU-2"))["reserved"] == 5

    release = f"{stock.url}/operations/release-items"
    status, released = await _post(http, release, {"order_id": "O-1"})
    assert (status, released["reservation_id"]) == (200, reservation["reservation_id"])
    assert released["status"] == "released"
    assert await _post(http, release, {"order_id": "O-1"}) == (200, released)
    assert (await _get(http, f"{stock.url}/inventory/SKU-2"))["reserved"] == 0

    status, problem = await _post(http, reserve, body)
    assert status == 409
    assert problem["type"].endswith("/reservation-released")


async def test_releasing_an_order_that_reserved_nothing_is_a_no_op_that_bars_a_late_reserve(
    http: aiohttp.ClientSession, stock: RunningService
) -> None:
    before = await _get(http, f"{stock.url}/inventory")

    status, released = await _post(
        http, f"{stock.url}/operations/release-items", {"order_id": "O-7"}
    )
    assert status == 200
    assert (released["status"], released["items"]) == ("released", [])

    late = {"order_id": "O-7", "items": [{"sku": "SKU-1", "quantity": 1}]}
    assert (await _post(http, f"{stock.url}/operations/reserve-items", late))[0] == 409
    assert await _get(http, f"{stock.url}/inventory") == before
    reservations = await _get(http, f"{stock.url}/inventory/reservations?order_id=O-7")
    assert [r["status"] for r in reservations] == ["released"]
    status, problem = await _post(http, f"{stock.url}/operations/release-items", {})
    assert (status, problem["errors"][0]["field"]) == (422, "reservation_id")
