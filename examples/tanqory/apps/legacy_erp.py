"""legacy-erp: the traditional monolith — one process, one schema, batch jobs on the side.

It keeps the habits of its age: number ranges in a ``sequences`` table, zero-padded sales
order numbers (``SO-000001``), upserts for customer master data, nightly-style batch
endpoints. It speaks JSON, and XML on its oldest interface, the one the warehouse
terminals use.

Routes (besides the shared ``/healthz`` and ``/_admin/*``):

- ``POST /erp/customers {customer_id?, name, email}`` → 201 when new (id ``C-<n>`` when not
  given), 200 when the customer existed and was updated. ``GET /erp/customers[/{id}]``.
- ``POST /erp/orders {customer_id, items, total}`` → 201 ``{order_id, status: "created"}``;
  ``GET /erp/orders/{id}``; ``GET /erp/reports/daily?date=YYYY-MM-DD`` → the day's totals.
- ``POST /batch/customer-sync {customers}`` → ``{accepted, created, updated}`` (all or none).
- ``GET /batch/order-export?since=<ISO time>`` → orders created at or after ``since``.
- XML (``application/xml``): ``POST /erp/xml/orders`` with
  ``<order><customer_id>C-1</customer_id><total>9.5</total></order>`` → 201
  ``<order><order_id>SO-…</order_id><status>created</status>…</order>``;
  ``GET /erp/xml/customers/{id}`` → ``<customer>…</customer>``. A body that is not XML is
  a 400 in XML (``<error>…</error>``).

A fresh database has customer ``C-1`` (Acme Corp).
"""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from tanqory.apps._base import (
    FieldErrors,
    RunningService,
    database,
    one_or_404,
    read_json_object,
    serve,
    utc_now,
)

NAME = "legacy-erp"

SCHEMA = """
CREATE TABLE IF NOT EXISTS sequences (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (customer_id),
    items TEXT NOT NULL,
    total REAL NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""

routes = web.RouteTableDef()


def _seed(conn: sqlite3.Connection) -> None:
    now = utc_now()
    conn.execute(
        "INSERT OR IGNORE INTO customers VALUES ('C-1', 'Acme Corp', 'billing@acme.example', ?, ?)",
        (now, now),
    )
    conn.executemany(
        "INSERT OR IGNORE INTO sequences (name, value) VALUES (?, ?)",
        [("customer", 1), ("order", 0)],
    )


def _next_number(conn: sqlite3.Connection, sequence: str) -> int:
    conn.execute("UPDATE sequences SET value = value + 1 WHERE name = ?", (sequence,))
    value: int = conn.execute("SELECT value FROM sequences WHERE name = ?", (sequence,)).fetchone()[
        0
    ]
    return value


# --- customers ------------------------------------------------------------------------------


def _customer_fields(
    body: Mapping[str, Any], errors: FieldErrors, prefix: str = ""
) -> dict[str, str | None]:
    """``customer_id`` (``id`` is accepted too, as older callers send it), name and email."""
    key = "customer_id" if "customer_id" in body else "id"
    return {
        "customer_id": errors.text(body, key, prefix=prefix, required=False),
        "name": errors.text(body, "name", prefix=prefix),
        "email": errors.email(body, "email", prefix=prefix),
    }


def _customer(row: sqlite3.Row) -> dict[str, Any]:
    return dict(row)


def _find_customer(conn: sqlite3.Connection, customer_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM customers WHERE customer_id = ?", (customer_id,)).fetchone()
    return _customer(row) if row else None


def _upsert_customer(conn: sqlite3.Connection, fields: dict[str, str | None]) -> bool:
    """Saves the customer; True when it was created, False when an existing one was updated."""
    now = utc_now()
    customer_id = fields["customer_id"]
    if customer_id is not None and _find_customer(conn, customer_id) is not None:
        conn.execute(
            "UPDATE customers SET name = ?, email = ?, updated_at = ? WHERE customer_id = ?",
            (fields["name"], fields["email"], now, customer_id),
        )
        return False
    while customer_id is None or _find_customer(conn, customer_id) is not None:
        customer_id = f"C-{_next_number(conn, 'customer')}"
    fields["customer_id"] = customer_id
    conn.execute(
        "INSERT INTO customers VALUES (?, ?, ?, ?, ?)",
        (customer_id, fields["name"], fields["email"], now, now),
    )
    return True


def _save_customer(
    conn: sqlite3.Connection, fields: dict[str, str | None]
) -> tuple[bool, dict[str, Any]]:
    created = _upsert_customer(conn, fields)
    return created, _find_customer(conn, str(fields["customer_id"])) or {}


def _list_customers(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM customers ORDER BY created_at, customer_id").fetchall()
    return [_customer(r) for r in rows]


@routes.post("/erp/customers")
async def post_customer(request: web.Request) -> web.Response:
    errors = FieldErrors()
    fields = _customer_fields(await read_json_object(request), errors)
    errors.raise_if_any()
    created, customer = await database(request).run(_save_customer, fields)
    return web.json_response(customer, status=201 if created else 200)


@routes.get("/erp/customers")
async def get_customers(request: web.Request) -> web.Response:
    return web.json_response(await database(request).run(_list_customers))


@routes.get("/erp/customers/{id}")
async def get_customer(request: web.Request) -> web.Response:
    return await one_or_404(request, _find_customer, "customer")


# --- orders and reports ---------------------------------------------------------------------


def _order(row: sqlite3.Row) -> dict[str, Any]:
    return {**dict(row), "items": json.loads(row["items"])}


def _find_order(conn: sqlite3.Connection, order_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    return _order(row) if row else None


def _create_order(
    conn: sqlite3.Connection, customer_id: str, items: list[Any], total: float
) -> dict[str, Any]:
    if _find_customer(conn, customer_id) is None:
        raise FieldErrors().add("customer_id", f"unknown customer {customer_id!r}").as_problem()
    order_id = f"SO-{_next_number(conn, 'order'):06d}"
    conn.execute(
        "INSERT INTO orders VALUES (?, ?, ?, ?, 'created', ?)",
        (order_id, customer_id, json.dumps(items), round(total, 2), utc_now()),
    )
    return _find_order(conn, order_id) or {}


def _daily_report(conn: sqlite3.Connection, day: str) -> dict[str, Any]:
    orders, revenue = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(total), 0) FROM orders WHERE substr(created_at, 1, 10) = ?",
        (day,),
    ).fetchone()
    customers = conn.execute(
        "SELECT COUNT(*) FROM customers WHERE substr(created_at, 1, 10) = ?", (day,)
    ).fetchone()[0]
    return {
        "date": day,
        "orders": orders,
        "revenue": round(revenue, 2),
        "new_customers": customers,
    }


@routes.post("/erp/orders")
async def post_order(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    errors = FieldErrors()
    customer_id = errors.text(body, "customer_id")
    items = errors.objects(body, "items")
    total = body.get("total")
    if isinstance(total, bool) or not isinstance(total, int | float) or total < 0:
        errors.add("total", "must be a number, zero or more")
    errors.raise_if_any()
    assert customer_id is not None and isinstance(total, int | float)
    order = await database(request).run(_create_order, customer_id, list(items), float(total))
    return web.json_response(
        order, status=201, headers={"Location": f"/erp/orders/{order['order_id']}"}
    )


@routes.get("/erp/orders/{id}")
async def get_order(request: web.Request) -> web.Response:
    return await one_or_404(request, _find_order, "order")


# --- the XML interface -----------------------------------------------------------------------


def _xml(root: str, fields: Mapping[str, Any], status: int = 200) -> web.Response:
    element = ET.Element(root)
    for name, value in fields.items():
        child = ET.SubElement(element, name)
        child.text = "" if value is None else str(value)
    return web.Response(
        body=ET.tostring(element, encoding="utf-8", xml_declaration=True),
        status=status,
        content_type="application/xml",
    )


@routes.post("/erp/xml/orders")
async def post_xml_order(request: web.Request) -> web.Response:
    try:
        order = ET.fromstring(await request.read())
    except ET.ParseError as error:
        return _xml("error", {"message": f"not XML: {error}"}, 400)
    customer_id = (order.findtext("customer_id") or "").strip()
    try:
        total = float(order.findtext("total") or "")
    except ValueError:
        return _xml("error", {"message": "total must be a number"}, 422)
    if not customer_id or total < 0:
        return _xml("error", {"message": "customer_id and a total of zero or more"}, 422)
    created = await database(request).run(_create_order, customer_id, [], total)
    return _xml(
        "order",
        {k: created[k] for k in ("order_id", "customer_id", "total", "status", "created_at")},
        201,
    )


@routes.get("/erp/xml/customers/{id}")
async def get_xml_customer(request: web.Request) -> web.Response:
    found = await database(request).run(_find_customer, request.match_info["id"])
    if found is None:
        return _xml("error", {"message": "no such customer"}, 404)
    return _xml("customer", found)


@routes.get("/erp/reports/daily")
async def daily_report(request: web.Request) -> web.Response:
    day = request.query.get("date") or datetime.now(UTC).date().isoformat()
    try:
        date.fromisoformat(day)
    except ValueError:
        raise FieldErrors().add("date", "must be a date as YYYY-MM-DD").as_problem() from None
    return web.json_response(await database(request).run(_daily_report, day))


# --- batch ----------------------------------------------------------------------------------


def _sync_customers(conn: sqlite3.Connection, batch: list[dict[str, str | None]]) -> dict[str, int]:
    created = sum(_upsert_customer(conn, fields) for fields in batch)
    return {"accepted": len(batch), "created": created, "updated": len(batch) - created}


def _orders_since(conn: sqlite3.Connection, since: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM orders WHERE created_at >= ? ORDER BY created_at, order_id", (since,)
    ).fetchall()
    return [_order(r) for r in rows]


@routes.post("/batch/customer-sync")
async def customer_sync(request: web.Request) -> web.Response:
    """Upserts a batch of customers in one transaction; one bad record rejects the batch."""
    body = await read_json_object(request)
    errors = FieldErrors()
    batch = [
        _customer_fields(record, errors, prefix=f"customers[{i}].")
        for i, record in enumerate(errors.objects(body, "customers"))
    ]
    errors.raise_if_any()
    return web.json_response(await database(request).run(_sync_customers, batch))


@routes.get("/batch/order-export")
async def order_export(request: web.Request) -> web.Response:
    raw = request.query.get("since", "1970-01-01")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise FieldErrors().add("since", "must be an ISO 8601 date or time").as_problem() from None
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    since = moment.isoformat(timespec="milliseconds")
    return web.json_response(await database(request).run(_orders_since, since))


async def start(db_path: Path, *, host: str = "127.0.0.1", port: int = 0) -> RunningService:
    """Starts legacy-erp on ``db_path``, seeding customer C-1 when it is new."""
    return await serve(
        NAME, db_path, schema=SCHEMA, routes=routes, seed=_seed, host=host, port=port
    )
