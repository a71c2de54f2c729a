"""Each service keeps its data in its SQLite file across a stop and a start."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tanqory.apps import inventory, legacy_erp, user_service


async def test_users_survive_a_restart(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    db = tmp_path / "users.db"
    async with (
        await user_service.start(db) as users,
        http.post(f"{users.url}/users", json={"email": "ada@example.com", "name": "Ada"}) as resp,
    ):
        assert resp.status == 201
    async with await user_service.start(db) as users:
        async with http.get(f"{users.url}/users/U-1") as resp:
            assert (await resp.json())["email"] == "ada@example.com"
        async with http.post(
            f"{users.url}/users", json={"email": "grace@example.com", "name": "Grace"}
        ) as resp:
            assert (await resp.json())["id"] == "U-2"


async def test_reservations_survive_a_restart(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    db = tmp_path / "inventory.db"
    async with (
        await inventory.start(db) as stock,
        http.post(
            f"{stock.url}/operations/reserve-items",
            json={"order_id": "O-1", "items": [{"sku": "SKU-2", "quantity": 20}]},
        ) as resp,
    ):
        rid = (await resp.json())["reservation_id"]
    async with await inventory.start(db) as stock:
        async with http.get(f"{stock.url}/inventory/SKU-2") as resp:
            assert (await resp.json())["available"] == 30
        async with http.get(f"{stock.url}/inventory/reservations/{rid}") as resp:
            assert (await resp.json())["status"] == "reserved"


async def test_erp_data_survives_a_restart_and_seed_does_not_overwrite(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    db = tmp_path / "erp.db"
    async with await legacy_erp.start(db) as erp:
        async with http.post(
            f"{erp.url}/erp/customers",
            json={"id": "C-1", "name": "Acme Renamed", "email": "a@acme.example"},
        ):
            pass
        async with http.post(
            f"{erp.url}/erp/orders", json={"customer_id": "C-1", "items": [{}], "total": 5}
        ):
            pass
    async with await legacy_erp.start(db) as erp:
        async with http.get(f"{erp.url}/erp/customers/C-1") as resp:
            assert (await resp.json())["name"] == "Acme Renamed"
        async with http.post(
            f"{erp.url}/erp/orders", json={"customer_id": "C-1", "items": [{}], "total": 5}
        ) as resp:
            assert (await resp.json())["order_id"] == "SO-000002"


async def test_stop_is_safe_twice(tmp_path: Path) -> None:
    service = await user_service.start(tmp_path / "u.db")
    assert service.url.startswith("http://127.0.0.1:")
    await service.stop()
    await service.stop()
