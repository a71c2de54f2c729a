"""inventory-management: a modular monolith — one process, one database, clear modules inside.

Its modules, each a section below: *catalog* (what is stocked), *stock* (can an order be
served) and *reservations* (holding stock for an order, all or nothing).

Routes (besides the shared ``/healthz`` and ``/_admin/*``):

- ``GET /inventory``, ``GET /inventory/{sku}`` → ``{sku, name, available, reserved}``.
- ``POST /inventory/check {items: [{sku, quantity}]}`` → ``{available, items: [...]}``.
- ``POST /operations/reserve-items {order_id, items}`` → 201 reservation, or 409 with nothing
  reserved when any item is short. An order reserves once: reserving for it again answers
  its reservation (200), and reserving for an order whose reservation was released is a 409.
- ``POST /operations/release-items {reservation_id}`` or ``{order_id}`` → the released
  reservation; releasing again answers the same. Releasing by an order that reserved
  nothing is a no-op 200 that records an empty, released reservation for it, so a
  reservation arriving late, after its saga was compensated, holds no stock. An unknown
  ``reservation_id`` is a 404.
- ``GET /inventory/reservations?order_id=``, ``GET /inventory/reservations/{id}``.

Stock held equals what the reservations not released hold: for every SKU, ``reserved`` is
the sum of its quantities in reservations whose status is ``reserved``.

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
    one_or_404,
    read_json_object,
    serve,
    utc_now,
)
from tanqory.apps._database import seq_of

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
    return await one_or_404(request, _find_item, "SKU", key="sku")


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


def _find_reservation(conn: sqlite3.Connection, reservation_id: str) -> dict[str, Any] | None:
    seq = seq_of(reservation_id, "RSV")
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


def _of_order(conn: sqlite3.Connection, order_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT seq FROM reservations WHERE order_id = ? ORDER BY seq LIMIT 1", (order_id,)
    ).fetchone()
    return _find_reservation(conn, f"RSV-{row['seq']}") if row else None


def _list_reservations(conn: sqlite3.Connection, order_id: str | None) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT seq FROM reservations WHERE ? IS NULL OR order_id = ? ORDER BY seq",
        (order_id, order_id),
    ).fetchall()
    return [r for row in rows if (r := _find_reservation(conn, f"RSV-{row['seq']}"))]


def _reserve(
    conn: sqlite3.Connection, order_id: str, wanted: dict[str, int]
) -> tuple[bool, dict[str, Any]]:
    """Holds every item or none: a shortage raises after the updates, so all roll back.
    (True, reservation) when made now, (False, it) when the order had reserved before."""
    existing = _of_order(conn, order_id)
    if existing is not None:
        if existing["status"] == "released":
            raise ProblemError(
                409,
                f"the reservation of order {order_id!r} was released; it is not made again",
                slug="reservation-released",
            )
        return False, existing
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
    return True, _find_reservation(conn, f"RSV-{seq}") or {}


def _release(
    conn: sqlite3.Connection, reservation_id: str | None, order_id: str | None
) -> dict[str, Any] | None:
    """Gives the stock back once; a released reservation is returned unchanged. By order,
    an order without one gets an empty, released one; an unknown reservation id gives None."""
    if reservation_id is None:
        assert order_id is not None
        if _of_order(conn, order_id) is None:
            now = utc_now()
            conn.execute(
                "INSERT INTO reservations (order_id, status, created_at, released_at)"
                " VALUES (?, 'released', ?, ?)",
                (order_id, now, now),
            )
        reservation = _of_order(conn, order_id)
    else:
        reservation = _find_reservation(conn, reservation_id)
    if reservation is None or reservation["status"] == "released":
        return reservation
    reservation_id = reservation["reservation_id"]
    conn.executemany(
        "UPDATE stock_items SET reserved = reserved - ? WHERE sku = ?",
        [(i["quantity"], i["sku"]) for i in reservation["items"]],
    )
    conn.execute(
        "UPDATE reservations SET status = 'released', released_at = ? WHERE seq = ?",
        (utc_now(), seq_of(reservation_id, "RSV")),
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
    created, reservation = await database(request).run(_reserve, order_id, wanted)
    location = f"/inventory/reservations/{reservation['reservation_id']}"
    status = 201 if created else 200
    return web.json_response(reservation, status=status, headers={"Location": location})


@routes.post("/operations/release-items")
async def release_items(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    errors = FieldErrors()
    reservation_id = errors.text(body, "reservation_id", required=False)
    order_id = errors.text(body, "order_id", required=False)
    if reservation_id is None and order_id is None and not errors.errors:
        errors.add("reservation_id", "is required (or give order_id)")
    errors.raise_if_any()
    reservation = await database(request).run(_release, reservation_id, order_id)
    if reservation is None:
        raise not_found("reservation", str(reservation_id))
    return web.json_response(reservation)


@routes.get("/inventory/reservations")
async def get_reservations(request: web.Request) -> web.Response:
    order_id = request.query.get("order_id") or None
    return web.json_response(await database(request).run(_list_reservations, order_id))


@routes.get("/inventory/reservations/{id}")
async def get_reservation(request: web.Request) -> web.Response:
    return await one_or_404(request, _find_reservation, "reservation")


async def start(db_path: Path, *, host: str = "127.0.0.1", port: int = 0) -> RunningService:
    """Starts inventory-management on ``db_path``, seeding the catalog when it is new."""
    return await serve(
        NAME, db_path, schema=SCHEMA, routes=routes, seed=_seed, host=host, port=port
    )
