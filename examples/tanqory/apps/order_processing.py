"""order-processing: the Commerce team's microservice that takes orders and runs their saga.

It embeds a hybridmesh :class:`~hybridmesh.orchestration.Orchestrator` (library use): the
caller hands it an engine (a :class:`~hybridmesh.runtime.Runtime`'s, say) whose registry
points at the other services; the service registers the ``order-processing`` saga of
``definitions/order-processing.yaml`` in the engine's catalog and runs the engine's worker
while it serves.

Routes (besides the shared ``/healthz`` and ``/_admin/*``):

- ``POST /orders {order_id?, customer_id, items: [{sku, quantity}], total, payment_method?,
  shipping_address: {street, city, postal_code, country}}`` → 201 order, and its saga
  started with the order id as the execution id. 422 names every bad field; 400 when the
  body is not JSON. ``payment_method`` defaults to ``card``; ``order_id`` to a new id.
  Posting an order id again with the same order answers it (200) and starts nothing; with
  another order it is a 409. (``Idempotency-Key`` works too, for orders without an id.)
- ``GET /orders?limit=`` (newest first), ``GET /orders/{id}``: the order with its ``status``
  and its ``saga`` (execution id, status, each step's status, the error).

The status follows the saga, and is read through the engine whenever an order is read: the
engine's store is the one truth, so there is nothing to keep in step and no event to miss.
``received`` (no saga yet), ``processing`` (running), ``cancelling`` (compensating),
``confirmed`` (completed), ``cancelled`` (compensated or cancelled), ``failed`` and
``needs-attention`` (a compensation failed; see the review queue).

An order is stored before its saga starts; orders whose saga did not start (the process
stopped in between) are started when the service starts again.

Order events. When the service has a bus (by default the engine's), it announces how each
order ended: ``order.confirmed`` when its saga completed, ``order.cancelled`` when the saga
was compensated. It learns of the ending from the engine's own ``saga.completed`` and
``saga.compensated`` events, which it consumes as group ``order-processing``; for each it
records the ending in its ``order_endings`` table and writes the order event to its outbox
in the same transaction, so a redelivered saga event announces nothing twice and an
announced ending is never lost (the outbox relay publishes it, see :mod:`._outbox`). Saga
events of other saga types, or of executions that are not orders of this service, are
dropped. The order event has source ``/order-processing``, subject and ``partitionkey`` the
order id, the saga's ``traceparent``, and data ``{order_id, user_id, customer_id, total,
items, status}`` (``user_id`` is the customer, for notification-services), plus ``reason``
when the saga gave one. ``GET /_admin/consumer`` and ``GET /_admin/outbox`` show both halves.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from hybridmesh.core.errors import NotFoundError
from hybridmesh.events import ACK, CloudEvent, Drop, EventBus, HandlerResult
from hybridmesh.orchestration import Execution, Orchestrator, Status, load_definitions
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
from tanqory.apps._consumer import DUPLICATE, ConsumerSettings, ServiceConsumer
from tanqory.apps._database import ServiceDatabase
from tanqory.apps._idempotency import DATABASE
from tanqory.apps._outbox import (
    OUTBOX_SCHEMA,
    RELAY,
    OutboxRelay,
    RelaySettings,
    add_events,
    outbox,
)

NAME = "order-processing"
SOURCE = "/order-processing"
SAGA = "order-processing"
#: The engine's event for an ending of the order saga → the order event announcing it.
ORDER_EVENTS = {"saga.completed": "order.confirmed", "saga.compensated": "order.cancelled"}
#: The saga's definition, registered in the engine's catalog at start.
DEFINITION = Path(__file__).resolve().parents[1] / "definitions" / "order-processing.yaml"
ADDRESS_FIELDS = ("street", "city", "postal_code", "country")
DEFAULT_PAYMENT_METHOD = "card"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500

#: The order's status for each status of its saga.
ORDER_STATUS = {
    Status.RUNNING: "processing",
    Status.COMPENSATING: "cancelling",
    Status.COMPLETED: "confirmed",
    Status.COMPENSATED: "cancelled",
    Status.CANCELLED: "cancelled",
    Status.FAILED: "failed",
    Status.COMPENSATION_FAILED: "needs-attention",
}

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    saga_started INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS order_endings (
    order_id TEXT PRIMARY KEY REFERENCES orders (order_id),
    event_type TEXT NOT NULL,
    announced_at TEXT NOT NULL
);
"""
    + OUTBOX_SCHEMA
)

_ORDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

ENGINE = web.AppKey("engine", Orchestrator)
routes = web.RouteTableDef()


def read_order(body: Mapping[str, Any]) -> dict[str, Any]:
    """The order in ``body``, as its saga's input; raises a 422 naming every bad field."""
    errors = FieldErrors()
    order_id = errors.text(body, "order_id", required=False)
    if order_id is not None and not _ORDER_ID.match(order_id):
        errors.add("order_id", "must be 1-64 letters, digits, '.', '_' or '-'")
    customer_id = errors.text(body, "customer_id")
    items = []
    for i, item in enumerate(errors.objects(body, "items")):
        sku = errors.text(item, "sku", prefix=f"items[{i}].")
        quantity = errors.positive_int(item, "quantity", prefix=f"items[{i}].")
        items.append({"sku": sku, "quantity": quantity})
    total = body.get("total")
    if isinstance(total, bool) or not isinstance(total, int | float) or total <= 0:
        errors.add("total", "must be a number greater than zero")
    method = errors.text(body, "payment_method", required=False) or DEFAULT_PAYMENT_METHOD
    address = body.get("shipping_address")
    if not isinstance(address, dict):
        errors.add("shipping_address", f"must be an object with {', '.join(ADDRESS_FIELDS)}")
        address = {}
    shipping = {k: errors.text(address, k, prefix="shipping_address.") for k in ADDRESS_FIELDS}
    errors.raise_if_any()
    return {
        "order_id": order_id or f"O-{uuid.uuid4().hex[:12]}",
        "customer_id": customer_id,
        "items": items,
        "total": total,
        "payment_method": method,
        "shipping_address": shipping,
    }


# --- persistence: plain functions run on the database thread -------------------------------


def _insert(conn: sqlite3.Connection, order: dict[str, Any]) -> tuple[bool, sqlite3.Row]:
    """Stores the order; (True, row) when new, (False, row) when this order id was stored
    with the same order. Another order under a taken id is a 409."""
    inserted = conn.execute(
        "INSERT OR IGNORE INTO orders (order_id, body, created_at) VALUES (?, ?, ?)",
        (order["order_id"], json.dumps(order), utc_now()),
    ).rowcount
    row = _row(conn, order["order_id"])
    assert row is not None
    if not inserted and json.loads(row["body"]) != order:
        raise ProblemError(
            409,
            f"order {order['order_id']!r} exists with other contents",
            slug="order-id-taken",
        )
    return bool(inserted), row


def _row(conn: sqlite3.Connection, order_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM orders WHERE order_id = ?", (order_id,)
    ).fetchone()
    return row


def _rows(conn: sqlite3.Connection, limit: int) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT * FROM orders ORDER BY created_at DESC, order_id DESC LIMIT ?", (limit,)
    ).fetchall()


def _not_started(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM orders WHERE saga_started = 0").fetchall()


def _mark_started(conn: sqlite3.Connection, order_id: str) -> None:
    conn.execute("UPDATE orders SET saga_started = 1 WHERE order_id = ?", (order_id,))


def _announce(conn: sqlite3.Connection, saga_event: CloudEvent, event_type: str) -> str | None:
    """Records how the order of ``saga_event`` ended and queues ``event_type`` in the outbox,
    in one transaction. Returns why nothing was done (not an order of this service, or
    announced before), or None once it is queued."""
    data = saga_event.data if isinstance(saga_event.data, dict) else {}
    order_id = data.get("saga_id") or saga_event.subject
    row = _row(conn, order_id) if isinstance(order_id, str) else None
    if row is None:
        return f"no order {order_id!r} here"
    recorded = conn.execute(
        "INSERT OR IGNORE INTO order_endings (order_id, event_type, announced_at) VALUES (?, ?, ?)",
        (row["order_id"], event_type, utc_now()),
    ).rowcount
    if not recorded:
        return DUPLICATE
    add_events(conn, [order_event(event_type, json.loads(row["body"]), saga_event)])
    return None


def order_event(event_type: str, order: dict[str, Any], saga_event: CloudEvent) -> CloudEvent:
    """The ``order.confirmed`` or ``order.cancelled`` event of ``order``, in the trace of the
    saga event that reported the ending (see the module docstring)."""
    data: dict[str, Any] = {
        "order_id": order["order_id"],
        "user_id": order["customer_id"],
        "customer_id": order["customer_id"],
        "total": order["total"],
        "items": order["items"],
        "status": event_type.removeprefix("order."),
    }
    saga_data = saga_event.data if isinstance(saga_event.data, dict) else {}
    if saga_data.get("reason"):
        data["reason"] = saga_data["reason"]
    trace = saga_event.traceparent
    return CloudEvent.create(
        event_type,
        SOURCE,
        data,
        subject=order["order_id"],
        partition_key=order["order_id"],
        extensions={"traceparent": trace} if trace else None,
    )


# --- the saga ---------------------------------------------------------------------------


async def start_saga(engine: Orchestrator, db: ServiceDatabase, row: sqlite3.Row) -> None:
    """Starts the order's saga, once: the order id is the execution id, so a repeat starts
    nothing."""
    if not row["saga_started"]:
        await engine.start_saga(SAGA, json.loads(row["body"]), execution_id=row["order_id"])
        await db.run(_mark_started, row["order_id"])


async def view(engine: Orchestrator, row: sqlite3.Row) -> dict[str, Any]:
    """The order as the API shows it, its status read from its saga."""
    execution: Execution | None
    try:
        execution = await engine.get(row["order_id"])
    except NotFoundError:
        execution = None
    saga = None
    if execution is not None:
        saga = {
            "execution_id": execution.id,
            "status": execution.status.value,
            "steps": {step.step_id: step.status for step in execution.steps},
            "error": execution.error,
        }
    status = ORDER_STATUS[execution.status] if execution is not None else "received"
    order = json.loads(row["body"])
    return {**order, "status": status, "created_at": row["created_at"], "saga": saga}


class SagaEndings:
    """The bus handler for the engine's ``saga.*`` events: turns the end of an order's saga
    into the order event, through the outbox (``relay`` is woken after each commit)."""

    def __init__(self, db: ServiceDatabase, relay: OutboxRelay) -> None:
        self.db = db
        self.relay = relay

    async def __call__(self, event: CloudEvent) -> HandlerResult:
        event_type = ORDER_EVENTS.get(event.type)
        data = event.data if isinstance(event.data, dict) else {}
        if event_type is None or data.get("saga_type") != SAGA:
            return Drop("not the end of an order saga")
        skipped = await self.db.run(_announce, event, event_type)
        if skipped is not None:
            return Drop(skipped)
        self.relay.wake()
        return ACK


# --- REST -----------------------------------------------------------------------------------


@routes.post("/orders")
async def post_order(request: web.Request) -> web.Response:
    order = read_order(await read_json_object(request))
    engine, db = request.app[ENGINE], database(request)
    created, row = await db.run(_insert, order)
    await start_saga(engine, db, row)
    headers = {"Location": f"/orders/{order['order_id']}"}
    answer = await view(engine, row)
    return web.json_response(answer, status=201 if created else 200, headers=headers)


@routes.get("/orders")
async def get_orders(request: web.Request) -> web.Response:
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        message = f"must be a whole number from 1 to {MAX_LIMIT}"
        raise FieldErrors().add("limit", message).as_problem()
    rows = await database(request).run(_rows, int(raw))
    return web.json_response([await view(request.app[ENGINE], row) for row in rows])


@routes.get("/orders/{id}")
async def get_order(request: web.Request) -> web.Response:
    order_id = request.match_info["id"]
    row = await database(request).run(_row, order_id)
    if row is None:
        raise not_found("order", order_id)
    return web.json_response(await view(request.app[ENGINE], row))


def _embedding(
    engine: Orchestrator,
    bus: EventBus | None,
    consumer: ConsumerSettings | None,
    relay: RelaySettings | None,
) -> Callable[[web.Application], None]:
    def configure(app: web.Application) -> None:
        app[ENGINE] = engine
        outbox(bus.publish_many if bus is not None else None, relay)(app)
        publishing = app.get(RELAY)
        if bus is not None and publishing is not None:
            endings = SagaEndings(app[DATABASE], publishing)
            ServiceConsumer(
                bus, group=NAME, pattern="saga.*", handler=endings, settings=consumer
            ).install(app)

        async def start_engine(app: web.Application) -> None:
            registry = engine.runner.registry
            load = load_definitions(DEFINITION, registry=registry).raise_for_errors()
            (loaded,) = load.definitions
            await engine.catalog.register_definition(
                loaded.definition, registry=registry, source=loaded.source
            )
            await engine.start_worker()
            db = app[DATABASE]
            for row in await db.run(_not_started):
                await start_saga(engine, db, row)

        async def stop_engine(app: web.Application) -> None:
            await engine.stop()

        app.on_startup.append(start_engine)
        app.on_shutdown.append(stop_engine)

    return configure


async def start(
    db_path: Path,
    *,
    engine: Orchestrator,
    bus: EventBus | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    consumer: ConsumerSettings | None = None,
    relay: RelaySettings | None = None,
) -> RunningService:
    """Starts order-processing on ``db_path`` (created when missing), running sagas on
    ``engine``: it registers the saga, starts the engine's worker, starts the sagas of
    orders stored without one, and stops the worker when the service stops. The caller
    keeps owning the engine's store and client.

    ``bus`` (default: the engine's) carries the engine's saga events to the service and
    its order events out (see the module docstring); it must share its backend with the
    engine's bus. Without one the service announces nothing. ``consumer`` tunes retries of
    the saga events, ``relay`` the outbox relay.
    """
    configure = _embedding(engine, bus or engine.bus, consumer, relay)
    return await serve(
        NAME, db_path, schema=SCHEMA, routes=routes, host=host, port=port, configure=configure
    )
