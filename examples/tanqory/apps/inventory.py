"""inventory-management: a modular monolith — one process, one database, clear modules inside.

Its modules, each a section below: *catalog* (what is stocked), *stock* (can an order be
served) and *reservations* (holding stock for an order, all or nothing).

Routes (besides the shared ``/healthz`` and ``/_admin/*``):

- ``GET /inventory``, ``GET /inventory/{sku}`` → ``{sku, name, available, reserved}``.
- ``POST /inventory/check {items: [{sku, quantity}]}`` → ``{available, items: [...]}``.
- ``POST /operations/reserve-items {order_id, items}`` → 201 reservation, or 409 with nothing
  reserved when any item is short.
- ``POST /operations/release-items {reservation_id}`` → the released reservation; releasing
  again answers the same.
- ``GET /inventory/reservations/{id}``.

A fresh database is seeded with SKU-1..SKU-5.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from tanqory.apps._base import (
    FieldErrors,
    ProblemError,
    RunningService,
    database,
    not_found,
    read_json_object,
    serve,
    utc_now,
)

NAME = "inventory-management"

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock_items (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    on_hand INTEGER NOT NULL CHECK (on_hand >= 0),
    reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= on_hand)
);
CREATE TABLE IF NOT EXISTS reservations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    released_at TEXT
);
CREATE TABLE IF NOT EXISTS reservation_items (
    reservation_seq INTEGER NOT NULL REFERENCES reservations (seq),
    sku TEXT NOT NULL REFERENCES stock_items (sku),
    quantity INTEGER NOT NULL,
    PRIMARY KEY (reservation_seq, sku)
);
"""

#: What a fresh database stocks: (sku, name, on hand).
SEED_STOCK: Sequence[tuple[str, str, int]] = (
    ("SKU-1", "Tanqory Smart Speaker", 100),
    ("SKU-2", "Wireless Earbuds", 50),
    ("SKU-3", "USB-C Fast Charger", 25),
    ("SKU-4", "4K Webcam", 10),
    ("SKU-5", "Mechanical Keyboard", 0),
)

routes = web.RouteTableDef()


def _seed(conn: sqlite3.Connection) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO stock_items (sku, name, on_hand) VALUES (?, ?, ?)", SEED_STOCK
    )


def _requested_items(body: Mapping[str, Any], errors: FieldErrors) -> dict[str, int]:
    """``items`` as sku → total quantity (a sku listed twice is added up)."""
    wanted: dict[str, int] = {}
    for i, item in enumerate(errors.objects(body, "items")):
        sku = errors.text(item, "sku", prefix=f"items[{i}].")
        quantity = errors.positive_int(item, "quantity", prefix=f"items[{i}].")
        if sku is not None and quantity is not None:
            wanted[sku] = wanted.get(sku, 0) + quantity
    return wanted


# --- catalog --------------------------------------------------------------------------------


def _stock_item(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "sku": row["sku"],
        "name": row["name"],
        "available": row["on_hand"] - row["reserved"],
        "reserved": row["reserved"],
    }


def _find_item(conn: sqlite3.Connection, sku: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM stock_items WHERE sku = ?", (sku,)).fetchone()
    return _stock_item(row) if row else None


def _list_items(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM stock_items ORDER BY sku").fetchall()
    return [_stock_item(r) for r in rows]


@routes.get("/inventory")
async def get_inventory(request: web.Request) -> web.Response:
    return web.json_response(await database(request).run(_list_items))


@routes.get("/inventory/{sku}")
async def get_item(request: web.Request) -> web.Response:
    sku = request.match_info["sku"]
    item = await database(request).run(_find_item, sku)
    if item is None:
        raise not_found("SKU", sku)
    return web.json_response(item)


# --- stock ----------------------------------------------------------------------------------


def _check(conn: sqlite3.Connection, wanted: dict[str, int]) -> list[dict[str, Any]]:
    lines = []
    for sku, quantity in wanted.items():
        item = _find_item(conn, sku)
        available = item["available"] if item else 0
        lines.append(
            {"sku": sku, "requested": quantity, "available": available, "ok": available >= quantity}
        )
    return lines


@routes.post("/inventory/check")
async def check_stock(request: web.Request) -> web.Response:
    errors = FieldErrors()
    wanted = _requested_items(await read_json_object(request), errors)
    errors.raise_if_any()
    lines = await database(request).run(_check, wanted)
    return web.json_response({"available": all(line["ok"] for line in lines), "items": lines})


# --- reservations ---------------------------------------------------------------------------


def _reservation_seq(reservation_id: str) -> int | None:
    prefix, _, number = reservation_id.partition("-")
    return int(number) if prefix == "RSV" and number.isdigit() else None


def _find_reservation(conn: sqlite3.Connection, reservation_id: str) -> dict[str, Any] | None:
    seq = _reservation_seq(reservation_id)
    row = conn.execute("SELECT * FROM reservations WHERE seq = ?", (seq,)).fetchone()
    if row is None:
        return None
    items = conn.execute(
        "SELECT sku, quantity FROM reservation_items WHERE reservation_seq = ? ORDER BY rowid",
        (seq,),
    ).fetchall()
    return {
        "reservation_id": f"RSV-{row['seq']}",
        "order_id": row["order_id"],
        "items": [{"sku": i["sku"], "quantity": i["quantity"]} for i in items],
        "status": row["status"],
        "created_at": row["created_at"],
        "released_at": row["released_at"],
    }


def _reserve(conn: sqlite3.Connection, order_id: str, wanted: dict[str, int]) -> dict[str, Any]:
    """Holds every item or none: a shortage raises after the updates, so all roll back."""
    short: list[dict[str, Any]] = []
    for sku, quantity in wanted.items():
        updated = conn.execute(
            "UPDATE stock_items SET reserved = reserved + ?"
            " WHERE sku = ? AND on_hand - reserved >= ?",
            (quantity, sku, quantity),
        ).rowcount
        if not updated:
            item = _find_item(conn, sku)
            short.append(
                {
                    "sku": sku,
                    "requested": quantity,
                    "available": item["available"] if item else 0,
                    "known": item is not None,
                }
            )
    if short:
        skus = ", ".join(s["sku"] for s in short)
        raise ProblemError(
            409,
            f"not enough stock for {skus}; nothing was reserved",
            slug="insufficient-stock",
            title="Insufficient stock",
            items=short,
        )
    seq = conn.execute(
        "INSERT INTO reservations (order_id, status, created_at) VALUES (?, 'reserved', ?)",
        (order_id, utc_now()),
    ).lastrowid
    conn.executemany(
        "INSERT INTO reservation_items (reservation_seq, sku, quantity) VALUES (?, ?, ?)",
        [(seq, sku, quantity) for sku, quantity in wanted.items()],
    )
    return _find_reservation(conn, f"RSV-{seq}") or {}


def _release(conn: sqlite3.Connection, reservation_id: str) -> dict[str, Any] | None:
    """Gives the stock back once; a released reservation is returned unchanged."""
    reservation = _find_reservation(conn, reservation_id)
    if reservation is None or reservation["status"] == "released":
        return reservation
    conn.executemany(
        "UPDATE stock_items SET reserved = reserved - ? WHERE sku = ?",
        [(i["quantity"], i["sku"]) for i in reservation["items"]],
    )
    conn.execute(
        "UPDATE reservations SET status = 'released', released_at = ? WHERE seq = ?",
        (utc_now(), _reservation_seq(reservation_id)),
    )
    return _find_reservation(conn, reservation_id)


@routes.post("/operations/reserve-items")
async def reserve_items(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    errors = FieldErrors()
    order_id = errors.text(body, "order_id")
    wanted = _requested_items(body, errors)
    errors.raise_if_any()
    assert order_id is not None
    reservation = await database(request).run(_reserve, order_id, wanted)
    location = f"/inventory/reservations/{reservation['reservation_id']}"
    return web.json_response(reservation, status=201, headers={"Location": location})


@routes.post("/operations/release-items")
async def release_items(request: web.Request) -> web.Response:
    errors = FieldErrors()
    reservation_id = errors.text(await read_json_object(request), "reservation_id")
    errors.raise_if_any()
    assert reservation_id is not None
    reservation = await database(request).run(_release, reservation_id)
    if reservation is None:
        raise not_found("reservation", reservation_id)
    return web.json_response(reservation)


@routes.get("/inventory/reservations/{id}")
async def get_reservation(request: web.Request) -> web.Response:
    reservation_id = request.match_info["id"]
    reservation = await database(request).run(_find_reservation, reservation_id)
    if reservation is None:
        raise not_found("reservation", reservation_id)
    return web.json_response(reservation)


async def start(db_path: Path, *, host: str = "127.0.0.1", port: int = 0) -> RunningService:
    """Starts inventory-management on ``db_path``, seeding the catalog when it is new."""
    return await serve(
        NAME, db_path, schema=SCHEMA, routes=routes, seed=_seed, host=host, port=port
    )
