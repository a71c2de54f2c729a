"""analytics-reporting: the Data team's modular monolith, turning the event stream into reports.

It consumes every event (``>``) as consumer group ``analytics-reporting`` and keeps
aggregates: events per type and per day (by the event's ``time``, in UTC), registered and
deactivated users (``user.registered`` / ``user.deactivated`` with ``data.user_id``), and
orders created with their revenue (``order.created``, adding ``data.total`` when it is a
number). Each event counts exactly once although the bus delivers at least once: the receipt
(hybridmesh's :class:`~hybridmesh.events.IdempotentConsumer`) and the aggregate update
commit in one transaction of a hybridmesh store on the service's own SQLite file.

Routes (besides the shared ``/healthz`` and ``/_admin/*``):

- ``GET /reports/summary``: every aggregate, read in one transaction::

    {"events": {"total": 3, "by_type": {"user.registered": 2, …}},
     "by_day": {"2025-01-31": {"total": 3, "by_type": {…}}},
     "users": {"registered": 2, "deactivated": 1, "active": 1},
     "orders": {"created": 1, "revenue": 59.98}}

- ``GET /reports/events?type=``: ``{"type", "count", "by_type"}`` for an event type or a
  pattern (``user.*``, ``order.>``; all types when left out).
- ``GET /_admin/consumer`` and ``POST /_admin/dead-letters/{id}/replay`` (:mod:`._consumer`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from aiohttp import web

from hybridmesh.core.errors import ValidationError
from hybridmesh.events import (
    ACK,
    CloudEvent,
    Drop,
    EventBus,
    HandlerResult,
    IdempotentConsumer,
    matches,
    validate_pattern,
)
from hybridmesh.store import Migration, SQLiteStore, Store, Transaction
from tanqory.apps._base import FieldErrors, RunningService, serve
from tanqory.apps._consumer import DUPLICATE, ConsumerSettings, ServiceConsumer

NAME = "analytics-reporting"

#: The store's schema: receipts as :class:`IdempotentConsumer` expects them, and aggregates.
MIGRATIONS = (
    Migration(
        1,
        "receipts and aggregates",
        (
            "CREATE TABLE event_receipts (consumer TEXT NOT NULL, source TEXT NOT NULL,"
            " event_id TEXT NOT NULL, handled_at TEXT NOT NULL,"
            " PRIMARY KEY (consumer, source, event_id))",
            "CREATE TABLE event_counts (type TEXT PRIMARY KEY, events INTEGER NOT NULL)",
            "CREATE TABLE daily_counts (day TEXT NOT NULL, type TEXT NOT NULL,"
            " events INTEGER NOT NULL, PRIMARY KEY (day, type))",
            "CREATE TABLE user_lifecycle (user_id TEXT PRIMARY KEY, registered_at TEXT,"
            " deactivated_at TEXT)",
            # One row; revenue is a decimal string so that sums stay exact.
            "CREATE TABLE order_stats (id INTEGER PRIMARY KEY CHECK (id = 1),"
            " created INTEGER NOT NULL, revenue TEXT NOT NULL)",
            "INSERT INTO order_stats (id, created, revenue) VALUES (1, 0, '0')",
        ),
    ),
)

STORE = web.AppKey("store", Store)
routes = web.RouteTableDef()


async def open_store(db_path: Path) -> Store:
    """The service's hybridmesh store on ``db_path``, migrated."""
    store = await SQLiteStore.open(f"sqlite:///{db_path}", migrations=MIGRATIONS)
    try:
        await store.upgrade()
    except BaseException:
        await store.close()
        raise
    return store


# --- consuming ------------------------------------------------------------------------------


def _amount(value: Any) -> Decimal | None:
    """``value`` as an exact decimal when it is a finite number (or a numeric string)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


async def _count(tx: Transaction, event: CloudEvent) -> None:
    """Adds ``event`` to every aggregate it belongs to."""
    when = (event.time or datetime.now(UTC)).astimezone(UTC)
    await tx.execute(
        "INSERT INTO event_counts (type, events) VALUES (?, 1)"
        " ON CONFLICT (type) DO UPDATE SET events = event_counts.events + 1",
        event.type,
    )
    await tx.execute(
        "INSERT INTO daily_counts (day, type, events) VALUES (?, ?, 1)"
        " ON CONFLICT (day, type) DO UPDATE SET events = daily_counts.events + 1",
        when.date().isoformat(),
        event.type,
    )
    data = event.data if isinstance(event.data, dict) else {}
    user_id = data.get("user_id")
    if event.type in ("user.registered", "user.deactivated") and isinstance(user_id, str):
        column = "registered_at" if event.type == "user.registered" else "deactivated_at"
        await tx.execute(
            f"INSERT INTO user_lifecycle (user_id, {column}) VALUES (?, ?)"
            f" ON CONFLICT (user_id) DO UPDATE SET {column} ="
            f" COALESCE(user_lifecycle.{column}, excluded.{column})",
            user_id,
            when.isoformat(),
        )
    elif event.type == "order.created":
        revenue = Decimal(await tx.fetch_value("SELECT revenue FROM order_stats WHERE id = 1"))
        revenue += _amount(data.get("total")) or 0
        await tx.execute(
            "UPDATE order_stats SET created = created + 1, revenue = ? WHERE id = 1", str(revenue)
        )


class Aggregator:
    """The bus handler: counts each event once (receipt and aggregates in one transaction)."""

    def __init__(self, store: Store) -> None:
        self.receipts = IdempotentConsumer(store, NAME)

    async def __call__(self, event: CloudEvent) -> HandlerResult:
        async with self.receipts.claim(event) as tx:
            if tx is None:
                return Drop(DUPLICATE)
            await _count(tx, event)
        return ACK


# --- reports --------------------------------------------------------------------------------


async def summary(store: Store) -> dict[str, Any]:
    """Every aggregate, consistent with each other (read in one transaction)."""
    async with store.transaction() as tx:
        counts = await tx.fetch_all("SELECT type, events FROM event_counts ORDER BY type")
        daily = await tx.fetch_all("SELECT day, type, events FROM daily_counts ORDER BY day, type")
        users = await tx.fetch_one(
            "SELECT COUNT(registered_at) AS registered, COUNT(deactivated_at) AS deactivated,"
            " COUNT(CASE WHEN registered_at IS NOT NULL AND deactivated_at IS NULL THEN 1 END)"
            " AS active FROM user_lifecycle"
        )
        orders = await tx.fetch_one("SELECT created, revenue FROM order_stats WHERE id = 1")
    by_type = {row["type"]: row["events"] for row in counts}
    by_day: dict[str, dict[str, Any]] = {}
    for row in daily:
        day = by_day.setdefault(row["day"], {"total": 0, "by_type": {}})
        day["total"] += row["events"]
        day["by_type"][row["type"]] = row["events"]
    assert users is not None and orders is not None
    return {
        "events": {"total": sum(by_type.values()), "by_type": by_type},
        "by_day": by_day,
        "users": dict(users),
        "orders": {"created": orders["created"], "revenue": float(Decimal(orders["revenue"]))},
    }


@routes.get("/reports/summary")
async def get_summary(request: web.Request) -> web.Response:
    return web.json_response(await summary(request.app[STORE]))


@routes.get("/reports/events")
async def get_event_counts(request: web.Request) -> web.Response:
    pattern = request.query.get("type") or ">"
    try:
        validate_pattern(pattern)
    except ValidationError as error:
        raise FieldErrors().add("type", error.problems[0].message).as_problem() from None
    rows = await request.app[STORE].fetch_all("SELECT type, events FROM event_counts ORDER BY type")
    by_type = {row["type"]: row["events"] for row in rows if matches(pattern, row["type"])}
    return web.json_response({"type": pattern, "count": sum(by_type.values()), "by_type": by_type})


def _consuming(
    bus: EventBus, store: Store, settings: ConsumerSettings | None
) -> Callable[[web.Application], None]:
    def configure(app: web.Application) -> None:
        app[STORE] = store
        consumer = ServiceConsumer(
            bus, group=NAME, pattern=">", handler=Aggregator(store), settings=settings
        )
        consumer.install(app)

        async def close_store(app: web.Application) -> None:
            await store.close()

        app.on_cleanup.append(close_store)

    return configure


async def start(
    db_path: Path,
    *,
    bus: EventBus,
    host: str = "127.0.0.1",
    port: int = 0,
    consumer: ConsumerSettings | None = None,
) -> RunningService:
    """Starts analytics-reporting on ``db_path`` (created when missing), consuming the
    backend of ``bus`` as group ``analytics-reporting`` until it is stopped. ``consumer``
    sets retries and dead-lettering."""
    store = await open_store(db_path)
    try:
        return await serve(
            NAME,
            db_path,
            schema="",
            routes=routes,
            host=host,
            port=port,
            configure=_consuming(bus, store, consumer),
        )
    except BaseException:
        await store.close()
        raise
