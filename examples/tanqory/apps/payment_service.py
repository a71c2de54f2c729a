"""payment-service: the Commerce team's microservice that charges and refunds orders.

Routes (besides the shared ``/healthz`` and ``/_admin/*``):

- ``POST /operations/charge-payment {order_id, customer_id, amount, payment_method}`` → 201
  charge; 402 ``payment-declined`` when the decline rules refuse it (nothing is stored).
  An order is charged once: charging it again answers its charge (200), and charging an
  order whose charge was refunded or voided is a 409.
- ``POST /operations/refund-payment {order_id}`` (or ``{charge_id}``) → the refunded
  charge; refunding again answers the same. Refunding an order that was never charged is a
  no-op 200 (``refunded: false``) that voids the order, so a charge arriving late, after
  its saga was compensated, is refused instead of taking money no one will give back.
- ``GET /payments?order_id=&customer_id=``, ``GET /payments/{id}``.
- ``GET /_admin/declines``; ``POST /_admin/declines {max_amount, customers}`` sets the decline
  rules: amounts above ``max_amount`` (null: no limit) and the listed customer ids are
  declined. The default declines amounts above 10,000.

A charge id is ``CH-<n>``. Amounts are kept as exact decimals with two places.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
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

NAME = "payment-service"
#: Amounts above this are declined unless the rules say otherwise.
DEFAULT_MAX_AMOUNT = 10_000.0
CENTS = Decimal("0.01")

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL UNIQUE,
    customer_id TEXT,
    amount TEXT NOT NULL,
    payment_method TEXT,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    refunded_at TEXT
);
"""

CHARGED, REFUNDED, VOIDED = "charged", "refunded", "voided"

routes = web.RouteTableDef()


@dataclass
class DeclineRules:
    """Which charges the service declines with a 402: amounts above ``max_amount`` (None:
    no limit) and every charge of the customers in ``customers``."""

    max_amount: float | None = DEFAULT_MAX_AMOUNT
    customers: list[str] = field(default_factory=list)

    def reason(self, customer_id: str, amount: Decimal) -> str | None:
        """Why a charge is declined; None when it is not."""
        if customer_id in self.customers:
            return f"customer {customer_id!r} is not allowed to pay"
        if self.max_amount is not None and amount > Decimal(str(self.max_amount)):
            return f"amount {amount} is above the limit of {self.max_amount:.2f}"
        return None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> DeclineRules:
        """Reads rules from the admin body; raises a 422 problem naming the bad field."""
        errors = FieldErrors()
        max_amount = body.get("max_amount")
        if max_amount is not None and (
            isinstance(max_amount, bool) or not isinstance(max_amount, int | float)
        ):
            errors.add("max_amount", "must be null or a number")
        customers = body.get("customers", [])
        if not isinstance(customers, list) or not all(isinstance(c, str) for c in customers):
            errors.add("customers", "must be a list of customer ids")
        errors.raise_if_any()
        return cls(None if max_amount is None else float(max_amount), list(customers))


DECLINES = web.AppKey("declines", DeclineRules)


# --- persistence: plain functions run on the database thread -------------------------------


def _charge(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "charge_id": f"CH-{row['seq']}",
        "order_id": row["order_id"],
        "customer_id": row["customer_id"],
        "amount": float(row["amount"]),
        "payment_method": row["payment_method"],
        "status": row["status"],
        "created_at": row["created_at"],
        "refunded_at": row["refunded_at"],
    }


def _by_order(conn: sqlite3.Connection, order_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM charges WHERE order_id = ?", (order_id,)).fetchone()
    return _charge(row) if row else None


def _by_id(conn: sqlite3.Connection, charge_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM charges WHERE seq = ?", (seq_of(charge_id, "CH"),)).fetchone()
    return _charge(row) if row else None


def _list(
    conn: sqlite3.Connection, order_id: str | None, customer_id: str | None
) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM charges WHERE (? IS NULL OR order_id = ?)"
        " AND (? IS NULL OR customer_id = ?) ORDER BY seq",
        (order_id, order_id, customer_id, customer_id),
    )
    return [_charge(r) for r in rows.fetchall()]


def _charge_order(
    conn: sqlite3.Connection,
    order_id: str,
    customer_id: str,
    amount: Decimal,
    method: str,
    declined: str | None,
) -> tuple[bool, dict[str, Any]]:
    """Charges the order once; (True, charge) when charged now, (False, charge) when it was
    before. An order refunded or voided is never charged again; a new charge ``declined``
    (the reason) is a 402."""
    existing = _by_order(conn, order_id)
    if existing is not None:
        if existing["status"] != CHARGED:
            raise ProblemError(
                409,
                f"the payment of order {order_id!r} was {existing['status']}; "
                "it is not charged again",
                slug="charge-closed",
                charge=existing,
            )
        return False, existing
    if declined is not None:
        raise ProblemError(
            402,
            f"the payment of order {order_id!r} was declined: {declined}",
            slug="payment-declined",
            title="Payment declined",
        )
    conn.execute(
        "INSERT INTO charges (order_id, customer_id, amount, payment_method, status, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (order_id, customer_id, str(amount), method, CHARGED, utc_now()),
    )
    charge = _by_order(conn, order_id)
    assert charge is not None
    return True, charge


def _refund(
    conn: sqlite3.Connection, order_id: str | None, charge_id: str | None
) -> dict[str, Any] | None:
    """Refunds the charge once. An order never charged is voided (a row with nothing
    charged); an unknown charge id changes nothing and gives None."""
    charge = _by_order(conn, order_id) if order_id else _by_id(conn, charge_id or "")
    if charge is None and order_id is not None:
        conn.execute(
            "INSERT INTO charges (order_id, amount, status, created_at) VALUES (?, '0', ?, ?)",
            (order_id, VOIDED, utc_now()),
        )
        charge = _by_order(conn, order_id)
    if charge is None or charge["status"] != CHARGED:
        return charge
    conn.execute(
        "UPDATE charges SET status = ?, refunded_at = ? WHERE order_id = ?",
        (REFUNDED, utc_now(), charge["order_id"]),
    )
    return _by_order(conn, charge["order_id"])


# --- REST -----------------------------------------------------------------------------------


def _amount(body: Mapping[str, Any], errors: FieldErrors) -> Decimal | None:
    value = body.get("amount")
    amount = None
    if not isinstance(value, bool) and isinstance(value, int | float):
        amount = Decimal(str(value)).quantize(CENTS)
    if amount is None or amount <= 0:
        errors.add("amount", "must be a number of at least 0.01")
        return None
    return amount


@routes.post("/operations/charge-payment")
async def charge_payment(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    errors = FieldErrors()
    order_id = errors.text(body, "order_id")
    customer_id = errors.text(body, "customer_id")
    amount = _amount(body, errors)
    method = errors.text(body, "payment_method")
    errors.raise_if_any()
    assert order_id and customer_id and amount is not None and method
    declined = request.app[DECLINES].reason(customer_id, amount)
    created, charge = await database(request).run(
        _charge_order, order_id, customer_id, amount, method, declined
    )
    location = f"/payments/{charge['charge_id']}"
    return web.json_response(charge, status=201 if created else 200, headers={"Location": location})


@routes.post("/operations/refund-payment")
async def refund_payment(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    errors = FieldErrors()
    order_id = errors.text(body, "order_id", required=False)
    charge_id = errors.text(body, "charge_id", required=False)
    if order_id is None and charge_id is None and not errors.errors:
        errors.add("order_id", "is required (or give charge_id)")
    errors.raise_if_any()
    charge = await database(request).run(_refund, order_id, charge_id)
    if charge is None:
        return web.json_response({"charge_id": charge_id, "status": None, "refunded": False})
    return web.json_response({**charge, "refunded": charge["status"] == REFUNDED})


@routes.get("/payments")
async def get_payments(request: web.Request) -> web.Response:
    order_id = request.query.get("order_id") or None
    customer_id = request.query.get("customer_id") or None
    return web.json_response(await database(request).run(_list, order_id, customer_id))


@routes.get("/payments/{id}")
async def get_payment(request: web.Request) -> web.Response:
    return await one_or_404(request, _by_id, "charge")


async def get_declines(request: web.Request) -> web.Response:
    return web.json_response(asdict(request.app[DECLINES]))


async def set_declines(request: web.Request) -> web.Response:
    rules, new = request.app[DECLINES], DeclineRules.from_json(await read_json_object(request))
    rules.max_amount, rules.customers = new.max_amount, new.customers
    return web.json_response(asdict(rules))


async def start(
    db_path: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    declines: DeclineRules | None = None,
) -> RunningService:
    """Starts payment-service on ``db_path`` (created when missing), declining by
    ``declines`` (default: amounts above 10,000) until ``POST /_admin/declines`` changes it."""

    def configure(app: web.Application) -> None:
        app[DECLINES] = declines or DeclineRules()
        app.router.add_get("/_admin/declines", get_declines)
        app.router.add_post("/_admin/declines", set_declines)

    return await serve(
        NAME, db_path, schema=SCHEMA, routes=routes, host=host, port=port, configure=configure
    )
