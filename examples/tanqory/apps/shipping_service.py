"""shipping-service: the Fulfilment team's microservice that creates and cancels shipments.

Routes (besides the shared ``/healthz`` and ``/_admin/*``):

- ``POST /operations/create-shipment {order_id, items, shipping_address}`` → 201 shipment
  with a tracking number; ``shipping_address`` needs ``street``, ``city``, ``postal_code``
  and ``country``. An order ships once: creating its shipment again answers the first
  (200), and creating one for an order whose shipment was cancelled is a 409.
- ``POST /operations/cancel-shipment {order_id}`` → the cancelled shipment; cancelling
  again answers the same. Cancelling an order that has no shipment is a no-op 200
  (``shipment_id: null``) that bars the order, so a create arriving late, after its saga
  was compensated, does not ship anything.
- ``GET /shipments?order_id=``, ``GET /shipments/{id}``.

A shipment id is ``SH-<n>``; its tracking number ``TQ`` and ten digits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from tanqory.apps._base import (
    FieldErrors,
    ProblemError,
    RunningService,
    database,
    one_or_404,
    read_json_object,
    serve,
    utc_now,
)
from tanqory.apps._database import seq_of

NAME = "shipping-service"
ADDRESS_FIELDS = ("street", "city", "postal_code", "country")
CREATED, CANCELLED = "created", "cancelled"

SCHEMA = """
CREATE TABLE IF NOT EXISTS shipments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL UNIQUE,
    items TEXT NOT NULL,
    address TEXT NOT NULL,
    tracking_number TEXT,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    cancelled_at TEXT
);
"""

routes = web.RouteTableDef()


def read_address(body: Mapping[str, Any], errors: FieldErrors, field: str) -> dict[str, str]:
    """``body[field]`` as an address with every one of :data:`ADDRESS_FIELDS`; records an
    error naming each missing part (``shipping_address.city``)."""
    value = body.get(field)
    if not isinstance(value, dict):
        errors.add(field, f"must be an object with {', '.join(ADDRESS_FIELDS)}")
        return {}
    parts = {name: errors.text(value, name, prefix=f"{field}.") for name in ADDRESS_FIELDS}
    return {name: part for name, part in parts.items() if part is not None}


# --- persistence: plain functions run on the database thread -------------------------------


def _shipment(row: sqlite3.Row) -> dict[str, Any]:
    shipped = row["tracking_number"] is not None  # else a cancel came first: nothing shipped
    return {
        "shipment_id": f"SH-{row['seq']}" if shipped else None,
        "order_id": row["order_id"],
        "items": json.loads(row["items"]),
        "shipping_address": json.loads(row["address"]),
        "tracking_number": row["tracking_number"],
        "status": row["status"],
        "created_at": row["created_at"],
        "cancelled_at": row["cancelled_at"],
    }


def _by_order(conn: sqlite3.Connection, order_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM shipments WHERE order_id = ?", (order_id,)).fetchone()
    return _shipment(row) if row else None


def _by_id(conn: sqlite3.Connection, shipment_id: str) -> dict[str, Any] | None:
    seq = seq_of(shipment_id, "SH")
    row = conn.execute("SELECT * FROM shipments WHERE seq = ?", (seq,)).fetchone()
    shipment = _shipment(row) if row else None
    return shipment if shipment and shipment["shipment_id"] else None


def _list(conn: sqlite3.Connection, order_id: str | None) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM shipments WHERE ? IS NULL OR order_id = ? ORDER BY seq", (order_id, order_id)
    ).fetchall()
    return [s for s in map(_shipment, rows) if s["shipment_id"]]


def _create(
    conn: sqlite3.Connection, order_id: str, items: list[Any], address: dict[str, str]
) -> tuple[bool, dict[str, Any]]:
    """Ships the order once; (True, shipment) when created now, (False, it) when before."""
    existing = _by_order(conn, order_id)
    if existing is not None:
        if existing["status"] == CANCELLED:
            raise ProblemError(
                409,
                f"the shipment of order {order_id!r} was cancelled; it is not created again",
                slug="shipment-cancelled",
            )
        return False, existing
    seq = conn.execute(
        "INSERT INTO shipments (order_id, items, address, status, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (order_id, json.dumps(items), json.dumps(address), CREATED, utc_now()),
    ).lastrowid
    conn.execute("UPDATE shipments SET tracking_number = ? WHERE seq = ?", (f"TQ{seq:010d}", seq))
    shipment = _by_order(conn, order_id)
    assert shipment is not None
    return True, shipment


def _cancel(conn: sqlite3.Connection, order_id: str) -> dict[str, Any]:
    """Cancels the order's shipment once; an order without one is barred (a row with no
    shipment) so that nothing ships for it later."""
    now = utc_now()
    conn.execute(
        "INSERT INTO shipments (order_id, items, address, status, created_at, cancelled_at)"
        " VALUES (?, '[]', 'null', ?, ?, ?) ON CONFLICT (order_id) DO UPDATE"
        " SET status = excluded.status, cancelled_at = excluded.cancelled_at"
        " WHERE shipments.status != excluded.status",
        (order_id, CANCELLED, now, now),
    )
    shipment = _by_order(conn, order_id)
    assert shipment is not None
    return shipment


# --- REST -----------------------------------------------------------------------------------


@routes.post("/operations/create-shipment")
async def create_shipment(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    errors = FieldErrors()
    order_id = errors.text(body, "order_id")
    items = errors.objects(body, "items")
    address = read_address(body, errors, "shipping_address")
    errors.raise_if_any()
    assert order_id is not None
    created, shipment = await database(request).run(_create, order_id, list(items), address)
    location = f"/shipments/{shipment['shipment_id']}"
    return web.json_response(
        shipment, status=201 if created else 200, headers={"Location": location}
    )


@routes.post("/operations/cancel-shipment")
async def cancel_shipment(request: web.Request) -> web.Response:
    errors = FieldErrors()
    order_id = errors.text(await read_json_object(request), "order_id")
    errors.raise_if_any()
    assert order_id is not None
    return web.json_response(await database(request).run(_cancel, order_id))


@routes.get("/shipments")
async def get_shipments(request: web.Request) -> web.Response:
    order_id = request.query.get("order_id") or None
    return web.json_response(await database(request).run(_list, order_id))


@routes.get("/shipments/{id}")
async def get_shipment(request: web.Request) -> web.Response:
    return await one_or_404(request, _by_id, "shipment")


async def start(db_path: Path, *, host: str = "127.0.0.1", port: int = 0) -> RunningService:
    """Starts shipping-service on ``db_path`` (created when missing)."""
    return await serve(NAME, db_path, schema=SCHEMA, routes=routes, host=host, port=port)
