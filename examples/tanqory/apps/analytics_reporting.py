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
- ``POST /analytics/events {event_type (or eventType), user_id?, data?}``: tracks one event
  (201), counted like one from the bus; its id is the body's ``event_id``, else the
  request's ``Idempotency-Key``.
- ``POST /analytics/events/ingest {events}``: events in the analytics format (what the
  ``transform-events`` function makes: ``{event_id, source, type, occurred_at, user_id?,
  order_id?, amount?}``) → ``{received, ingested, duplicates}``. They share the receipts of
  the bus's events, so an event that arrived both ways counts once.
- ``POST /analytics/correlations {since?, sources?}``: orders per UTC day, from ``since``'s
  day on, as the events counted them and as legacy-erp exported them (``GET
  /batch/order-export`` on ``erp_url``), and whether they agree. 422 when ``erp`` is asked
  for and the service has no ``erp_url``; 502 when legacy-erp does not answer.
- ``GET /_admin/consumer`` and ``POST /_admin/dead-letters/{id}/replay`` (:mod:`._consumer`).
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from hybridmesh.core.errors import ValidationError
from hybridmesh.events import (
    ACK,
    Ack,
    CloudEvent,
    Drop,
    EventBus,
    HandlerResult,
    IdempotentConsumer,
    matches,
    validate_pattern,
)
from hybridmesh.store import Migration, SQLiteStore, Store, Transaction
from tanqory.apps._base import (
    FieldErrors,
    ProblemError,
    RunningService,
    read_json_object,
    serve,
)
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

#: What ``sources`` of a correlation may name.
SOURCES = ("events", "erp")
#: The source of events tracked through ``POST /analytics/events``.
TRACKED_SOURCE = "/analytics/events"

STORE = web.AppKey("store", Store)
AGGREGATOR: web.AppKey[Aggregator] = web.AppKey("aggregator")
ERP_URL: web.AppKey[str | None] = web.AppKey("erp_url")
HTTP = web.AppKey("http", aiohttp.ClientSession)
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


# --- events sent by callers: tracked one by one, or ingested in batches -------------------


@routes.post("/analytics/events")
async def track_event(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    errors = FieldErrors()
    key = "eventType" if "eventType" in body else "event_type"
    event_type = _event_type(body, key, errors)
    user_id = errors.text(body, "user_id", required=False)
    data = body.get("data", {})
    if not isinstance(data, dict):
        errors.add("data", "must be an object")
    event_id = errors.text(body, "event_id", required=False)
    errors.raise_if_any()
    assert event_type is not None
    event_id = event_id or request.headers.get("Idempotency-Key") or str(uuid.uuid4())
    payload = {**data, "user_id": user_id} if user_id else data
    event = CloudEvent.create(event_type, TRACKED_SOURCE, payload, id=event_id)
    counted = isinstance(await request.app[AGGREGATOR](event), Ack)
    answer = {"event_id": event_id, "type": event_type, "counted": counted}
    return web.json_response(answer, status=201)


def _event_type(
    body: Mapping[str, Any], key: str, errors: FieldErrors, prefix: str = ""
) -> str | None:
    """An event type (``user.registered``; not a pattern), or None with an error recorded."""
    event_type = errors.text(body, key, prefix=prefix)
    if event_type is not None:
        try:
            validate_pattern(event_type)
        except ValidationError as error:
            errors.add(prefix + key, error.problems[0].message)
            return None
        if any(token in event_type.split(".") for token in ("*", ">")):
            errors.add(prefix + key, "must be an event type, not a pattern")
            return None
    return event_type


def _analytics_event(record: Mapping[str, Any], errors: FieldErrors, at: str) -> CloudEvent | None:
    """One record of the analytics format as the event it was made from."""
    event_id = errors.text(record, "event_id", prefix=at)
    source = errors.text(record, "source", prefix=at)
    event_type = _event_type(record, "type", errors, prefix=at)
    occurred = errors.text(record, "occurred_at", prefix=at)
    when = None
    if occurred is not None:
        try:
            when = datetime.fromisoformat(occurred)
        except ValueError:
            errors.add(f"{at}occurred_at", "must be an ISO 8601 time")
    if event_id is None or source is None or event_type is None or when is None:
        return None
    data = {"user_id": record.get("user_id"), "order_id": record.get("order_id")}
    if record.get("amount") is not None:
        data["total"] = record["amount"]
    return CloudEvent.create(event_type, source, data, id=event_id, time=when)


@routes.post("/analytics/events/ingest")
async def ingest_events(request: web.Request) -> web.Response:
    """Counts transformed events that were not counted before; all or none validate."""
    body = await read_json_object(request)
    errors = FieldErrors()
    records = body.get("events")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        errors.add("events", "must be a list of objects")
        records = []
    events = [_analytics_event(r, errors, f"events[{i}].") for i, r in enumerate(records)]
    errors.raise_if_any()
    aggregator = request.app[AGGREGATOR]
    ingested = 0
    for event in events:
        assert event is not None
        ingested += isinstance(await aggregator(event), Ack)
    answer = {"received": len(events), "ingested": ingested, "duplicates": len(events) - ingested}
    return web.json_response(answer)


# --- correlation with legacy-erp ----------------------------------------------------------


async def _erp_orders(app: web.Application, since: str) -> list[dict[str, Any]]:
    url = f"{app[ERP_URL]}/batch/order-export"
    try:
        async with app[HTTP].get(url, params={"since": since}) as resp:
            if resp.status == 200:
                orders: list[dict[str, Any]] = await resp.json()
                return orders
            why = f"answered {resp.status}"
    except (aiohttp.ClientError, TimeoutError) as error:
        why = f"failed: {type(error).__name__}: {error}"
    raise ProblemError(502, f"legacy-erp {why} for {url}", slug="source-failed")


@routes.post("/analytics/correlations")
async def correlate(request: web.Request) -> web.Response:
    """Orders per day as each source saw them; a day matches when the counts agree."""
    body = await read_json_object(request)
    errors = FieldErrors()
    raw = errors.text(body, "since", required=False) or "1970-01-01"
    day = ""
    try:
        day = datetime.fromisoformat(raw).date().isoformat()
    except ValueError:
        errors.add("since", "must be an ISO 8601 date or time")
    sources = body.get("sources", list(SOURCES))
    if not isinstance(sources, list) or not sources or not all(s in SOURCES for s in sources):
        errors.add("sources", f"must be a non-empty list of {', '.join(SOURCES)}")
    elif "erp" in sources and not request.app[ERP_URL]:
        errors.add("sources", "'erp' needs the service started with the legacy-erp URL")
    errors.raise_if_any()
    counted: dict[str, Counter[str]] = {source: Counter() for source in sources}
    revenue: defaultdict[str, Decimal] = defaultdict(Decimal)
    if "events" in sources:
        rows = await request.app[STORE].fetch_all(
            "SELECT day, events FROM daily_counts WHERE type = 'order.created' AND day >= ?", day
        )
        counted["events"].update({row["day"]: row["events"] for row in rows})
    if "erp" in sources:
        for order in await _erp_orders(request.app, day):
            counted["erp"][order["created_at"][:10]] += 1
            revenue[order["created_at"][:10]] += Decimal(str(order["total"]))
    days = []
    for each in sorted(set().union(*counted.values())):
        orders = {source: counted[source][each] for source in sources}
        entry: dict[str, Any] = {"day": each, "orders": orders}
        if "erp" in sources:
            entry["erp_revenue"] = float(revenue[each])
        days.append({**entry, "matched": len(set(orders.values())) == 1})
    answer = {"since": day, "sources": sources, "days": days}
    return web.json_response({**answer, "matched": all(d["matched"] for d in days)})


def _consuming(
    bus: EventBus, store: Store, settings: ConsumerSettings | None, erp_url: str | None
) -> Callable[[web.Application], None]:
    def configure(app: web.Application) -> None:
        app[STORE] = store
        app[AGGREGATOR] = Aggregator(store)
        app[ERP_URL] = erp_url.rstrip("/") if erp_url else None
        consumer = ServiceConsumer(
            bus, group=NAME, pattern=">", handler=app[AGGREGATOR], settings=settings
        )
        consumer.install(app)

        async def open_http(app: web.Application) -> None:
            app[HTTP] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

        async def close(app: web.Application) -> None:
            if HTTP in app:
                await app[HTTP].close()
            await store.close()

        app.on_startup.append(open_http)
        app.on_cleanup.append(close)

    return configure


async def start(
    db_path: Path,
    *,
    bus: EventBus,
    host: str = "127.0.0.1",
    port: int = 0,
    consumer: ConsumerSettings | None = None,
    erp_url: str | None = None,
) -> RunningService:
    """Starts analytics-reporting on ``db_path`` (created when missing), consuming the
    backend of ``bus`` as group ``analytics-reporting`` until it is stopped. ``consumer``
    sets retries and dead-lettering; ``erp_url`` is where legacy-erp answers, for
    correlations."""
    store = await open_store(db_path)
    try:
        return await serve(
            NAME,
            db_path,
            schema="",
            routes=routes,
            host=host,
            port=port,
            configure=_consuming(bus, store, consumer, erp_url),
        )
    except BaseException:
        await store.close()
        raise
