"""notification-services: the Platform team's modular monolith for outbound notifications.

It consumes ``user.*`` and ``order.*`` events as consumer group ``notification-services``
(one group holds one pattern, so the group takes ``>`` and drops every other type). For each
event it looks up the template of the event's type, records one notification (recipient,
channel, template, status ``sent``) and pushes it live to WebSocket clients. Each event is
handled once although the bus delivers at least once: the receipt of its (source, id) and
the notification commit in one transaction in the service's own SQLite file, so a
redelivery is dropped and pushes nothing.

Out of the box the templates are ``welcome`` (``user.registered``), ``profile-updated``,
``account-deactivated``, ``order-confirmation`` (e-mail, for ``order.created``),
``order-confirmed`` and ``order-cancelled`` (push, for the ``order.confirmed`` and
``order.cancelled`` that order-processing publishes when an order's saga ends);
``order.shipped`` deliberately has none. The order confirmation e-mail with the tracking
number is the order saga's last step (``send-order-confirmation`` below); the push tells the
customer's devices how the order ended, whichever way it ended.

Poison events. An event the service cannot handle raises, so the bus retries it with backoff
and, after ``max_deliveries`` attempts, moves it to the group's dead letters:

- :class:`MissingEventData`: the data has no ``user_id`` (or, for ``user.registered``, no
  ``email``). Retrying cannot help; the producer must be fixed.
- :class:`TemplateMissing`: no template for the event's type (``order.shipped`` until one is
  added). Fix: ``POST /_admin/templates``, then replay the dead letter
  (``POST /_admin/dead-letters/{id}/replay`` or ``bus.replay(id)``); it is handled as new.

Routes (besides the shared ``/healthz`` and ``/_admin/*``):

- ``GET /notifications?user_id=&limit=``: notifications, oldest first (limit 100, max 500).
- ``POST /operations/send-order-confirmation {customer_id, order_id, order_details?,
  tracking_number?}`` → the ``order-confirmation`` e-mail to the customer (201); one per
  order: asking again answers the first (200). Its ``event_type`` is ``order.confirmed``.
- ``POST /notifications/email {template, user_id?, email?, channel?}`` → an e-mail from a
  known template (201); 422 for an unknown template, a channel other than ``email`` or no
  recipient (``user_id`` or ``email``). Its ``event_type`` is ``notification.requested``.
- ``GET /ws/notifications?token=…``: WebSocket, with the protocol of
  :mod:`hybridmesh.api.websocket`. Each notification arrives as a ``notification.sent``
  CloudEvent (source ``/notification-services``, id and subject the notification id, data the
  notification). Subscribe to ``notification.*`` for all of them, or join the room
  ``user:<id>`` for one user's.
- ``GET /_admin/templates``; ``POST /_admin/templates {event_type, template, channel}``
  adds or replaces a template (201 or 200).
- ``GET /_admin/consumer`` and ``POST /_admin/dead-letters/{id}/replay`` (:mod:`._consumer`).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from hybridmesh.api.websocket import Authenticator, WebSocketHub, allow_any
from hybridmesh.core.errors import ValidationError
from hybridmesh.events import ACK, CloudEvent, Drop, EventBus, HandlerResult, matches
from hybridmesh.events import validate_subject as validate_event_type
from tanqory.apps._base import (
    FieldErrors,
    RunningService,
    database,
    read_json_object,
    serve,
    utc_now,
)
from tanqory.apps._consumer import DUPLICATE, ConsumerSettings, ServiceConsumer
from tanqory.apps._database import ServiceDatabase
from tanqory.apps._idempotency import DATABASE

NAME = "notification-services"
SOURCE = "/notification-services"
#: The event types this service turns into notifications.
TRIGGERS = ("user.*", "order.*")
CHANNELS = ("email", "push", "sms", "websocket")
LIVE_EVENT = "notification.sent"
DEFAULT_LIMIT = 100
MAX_LIMIT = 500

#: Event type → (template, channel), written when the database is created.
DEFAULT_TEMPLATES = {
    "user.registered": ("welcome", "email"),
    "user.updated": ("profile-updated", "email"),
    "user.deactivated": ("account-deactivated", "email"),
    "order.created": ("order-confirmation", "email"),
    "order.confirmed": ("order-confirmed", "push"),
    "order.cancelled": ("order-cancelled", "push"),
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS templates (
    event_type TEXT PRIMARY KEY,
    template TEXT NOT NULL,
    channel TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS handled_events (
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    handled_at TEXT NOT NULL,
    PRIMARY KEY (source, event_id)
);
CREATE TABLE IF NOT EXISTS notifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    template TEXT NOT NULL,
    address TEXT,
    status TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_user ON notifications (user_id, seq);
"""

#: What notifications sent on request (not for an event) record as their cause's type.
ORDER_CONFIRMED = "order.confirmed"
REQUESTED = "notification.requested"

routes = web.RouteTableDef()
HUB = web.AppKey("hub", WebSocketHub)


class UndeliverableEvent(Exception):
    """An event the service cannot turn into a notification; the bus retries it and then
    dead-letters it. The message says what to fix."""


class MissingEventData(UndeliverableEvent):
    """The event's data lacks what a notification needs; the producer must be fixed."""

    def __init__(self, event: CloudEvent, field: str) -> None:
        self.field = field
        super().__init__(
            f"{event.type} {event.id} from {event.source} has no {field!r} in its data; "
            "no notification can be sent without it"
        )


class TemplateMissing(UndeliverableEvent):
    """No template for the event's type; add one, then replay the dead letter."""

    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        super().__init__(
            f"no template for event type {event_type!r}: add one with POST /_admin/templates, "
            "then replay the dead letter"
        )


# --- persistence: plain functions run on the database thread -------------------------------


def _seed(conn: sqlite3.Connection) -> None:
    now = utc_now()
    conn.executemany(
        "INSERT OR IGNORE INTO templates (event_type, template, channel, updated_at)"
        " VALUES (?, ?, ?, ?)",
        [(kind, template, channel, now) for kind, (template, channel) in DEFAULT_TEMPLATES.items()],
    )


def _notification(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": f"N-{row['seq']}",
        "user_id": row["user_id"],
        "channel": row["channel"],
        "template": row["template"],
        "address": row["address"],
        "status": row["status"],
        "event_type": row["event_type"],
        "event_source": row["event_source"],
        "event_id": row["event_id"],
        "created_at": row["created_at"],
    }


@dataclass(frozen=True)
class Message:
    """One notification to record: to whom, how, and what caused it (``cause_type`` from
    ``cause_source`` with id ``cause_id``: an event, or a request)."""

    user_id: str
    template: str
    channel: str
    address: str | None
    cause_type: str
    cause_source: str
    cause_id: str


def _insert(conn: sqlite3.Connection, message: Message, now: str) -> dict[str, Any]:
    cursor = conn.execute(
        "INSERT INTO notifications (user_id, channel, template, address, status, event_type,"
        " event_source, event_id, created_at) VALUES (?, ?, ?, ?, 'sent', ?, ?, ?, ?)",
        (
            message.user_id,
            message.channel,
            message.template,
            message.address,
            message.cause_type,
            message.cause_source,
            message.cause_id,
            now,
        ),
    )
    row = conn.execute("SELECT * FROM notifications WHERE seq = ?", (cursor.lastrowid,)).fetchone()
    return _notification(row)


def _send(conn: sqlite3.Connection, message: Message) -> tuple[bool, dict[str, Any]]:
    """Records a requested notification once per (source, id) of its cause: (True, it)
    when new, (False, the first) when that cause was handled before."""
    now = utc_now()
    receipt = conn.execute(
        "INSERT OR IGNORE INTO handled_events (source, event_id, handled_at) VALUES (?, ?, ?)",
        (message.cause_source, message.cause_id, now),
    )
    if receipt.rowcount == 0:
        row = conn.execute(
            "SELECT * FROM notifications WHERE event_source = ? AND event_id = ?",
            (message.cause_source, message.cause_id),
        ).fetchone()
        return False, _notification(row)
    return True, _insert(conn, message, now)


def _known_template(conn: sqlite3.Connection, template: str) -> bool:
    found = conn.execute("SELECT 1 FROM templates WHERE template = ?", (template,)).fetchone()
    return found is not None


def _record(
    conn: sqlite3.Connection, event: CloudEvent, user_id: str, address: str | None
) -> dict[str, Any] | None:
    """The notification for ``event``, recorded with its receipt; None when it was handled
    before. Raises :class:`TemplateMissing`, which rolls the receipt back too."""
    now = utc_now()
    receipt = conn.execute(
        "INSERT OR IGNORE INTO handled_events (source, event_id, handled_at) VALUES (?, ?, ?)",
        (event.source, event.id, now),
    )
    if receipt.rowcount == 0:
        return None
    template = conn.execute(
        "SELECT template, channel FROM templates WHERE event_type = ?", (event.type,)
    ).fetchone()
    if template is None:
        raise TemplateMissing(event.type)
    message = Message(
        user_id,
        template["template"],
        template["channel"],
        address,
        event.type,
        event.source,
        event.id,
    )
    return _insert(conn, message, now)


def _list(conn: sqlite3.Connection, user_id: str | None, limit: int) -> list[dict[str, Any]]:
    if user_id is None:
        rows = conn.execute("SELECT * FROM notifications ORDER BY seq LIMIT ?", (limit,))
    else:
        rows = conn.execute(
            "SELECT * FROM notifications WHERE user_id = ? ORDER BY seq LIMIT ?", (user_id, limit)
        )
    return [_notification(r) for r in rows.fetchall()]


def _templates(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT event_type, template, channel FROM templates ORDER BY event_type")
    return [dict(r) for r in rows.fetchall()]


def _put_template(conn: sqlite3.Connection, event_type: str, template: str, channel: str) -> bool:
    """Adds or replaces the template of ``event_type``; True when it is new."""
    existed = conn.execute("SELECT 1 FROM templates WHERE event_type = ?", (event_type,)).fetchone()
    conn.execute(
        "INSERT INTO templates (event_type, template, channel, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (event_type) DO UPDATE SET template = excluded.template,"
        " channel = excluded.channel, updated_at = excluded.updated_at",
        (event_type, template, channel, utc_now()),
    )
    return existed is None


# --- consuming ------------------------------------------------------------------------------


def _recipient(event: CloudEvent) -> tuple[str, str | None]:
    """The user ``event`` notifies and their e-mail address; raises :class:`MissingEventData`."""
    data = event.data if isinstance(event.data, dict) else {}
    user_id = data.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        raise MissingEventData(event, "user_id")
    email = data.get("email")
    if not isinstance(email, str) or not email:
        if event.type == "user.registered":
            raise MissingEventData(event, "email")
        email = None
    return user_id, email


class Notifier:
    """The bus handler: one notification per new trigger event, pushed live through ``hub``."""

    def __init__(self, db: ServiceDatabase, hub: WebSocketHub) -> None:
        self.db = db
        self.hub = hub

    async def __call__(self, event: CloudEvent) -> HandlerResult:
        if not any(matches(pattern, event.type) for pattern in TRIGGERS):
            return Drop("not a notification trigger")
        user_id, address = _recipient(event)
        notification = await self.db.run(_record, event, user_id, address)
        if notification is None:
            return Drop(DUPLICATE)
        await self.hub.dispatch(live_event(notification))
        return ACK


def live_event(notification: dict[str, Any]) -> CloudEvent:
    """The ``notification.sent`` CloudEvent pushed to WebSocket clients."""
    return CloudEvent.create(
        LIVE_EVENT,
        SOURCE,
        notification,
        id=notification["id"],
        subject=notification["id"],
    )


# --- REST -----------------------------------------------------------------------------------


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        message = f"must be a whole number from 1 to {MAX_LIMIT}"
        raise FieldErrors().add("limit", message).as_problem()
    return int(raw)


@routes.get("/notifications")
async def get_notifications(request: web.Request) -> web.Response:
    user_id = request.query.get("user_id") or None
    found = await database(request).run(_list, user_id, _limit(request))
    return web.json_response(found)


async def _deliver(request: web.Request, message: Message) -> web.Response:
    """Records ``message`` once (see :func:`_send`), pushes it live when new, answers it."""
    created, notification = await database(request).run(_send, message)
    if created:
        await request.app[HUB].dispatch(live_event(notification))
    return web.json_response(notification, status=201 if created else 200)


@routes.post("/operations/send-order-confirmation")
async def send_order_confirmation(request: web.Request) -> web.Response:
    """The order confirmation e-mail, once per order however often it is asked for."""
    errors = FieldErrors()
    body = await read_json_object(request)
    customer_id = errors.text(body, "customer_id")
    order_id = errors.text(body, "order_id")
    errors.raise_if_any()
    assert customer_id is not None and order_id is not None
    message = Message(
        customer_id, "order-confirmation", "email", None, ORDER_CONFIRMED, request.path, order_id
    )
    return await _deliver(request, message)


@routes.post("/notifications/email")
async def send_email(request: web.Request) -> web.Response:
    """An e-mail from a template; the request's ``Idempotency-Key`` (else a new id) names
    it, so a retried request sends one."""
    errors = FieldErrors()
    body = await read_json_object(request)
    template = errors.text(body, "template")
    user_id = errors.text(body, "user_id", required=False)
    address = errors.email(body, "email", required=False)
    if user_id is None and address is None and "user_id" not in body:
        errors.add("user_id", "give the recipient: user_id, or email")
    channel = errors.text(body, "channel", required=False) or "email"
    if channel != "email":
        errors.add("channel", "must be 'email' on this endpoint")
    if template is not None and not await database(request).run(_known_template, template):
        errors.add("template", f"unknown template {template!r}")
    errors.raise_if_any()
    recipient = user_id or address
    assert template is not None and recipient is not None
    ref = request.headers.get("Idempotency-Key") or str(uuid.uuid4())
    message = Message(recipient, template, "email", address, REQUESTED, request.path, ref)
    return await _deliver(request, message)


@routes.get("/_admin/templates")
async def get_templates(request: web.Request) -> web.Response:
    return web.json_response(await database(request).run(_templates))


@routes.post("/_admin/templates")
async def post_template(request: web.Request) -> web.Response:
    """Adds or replaces the template of an event type this service consumes."""
    body = await read_json_object(request)
    errors = FieldErrors()
    event_type = errors.text(body, "event_type")
    template = errors.text(body, "template")
    channel = errors.text(body, "channel")
    if event_type is not None:
        try:
            validate_event_type(event_type)
        except ValidationError as error:
            errors.add("event_type", error.problems[0].message)
        else:
            if not any(matches(pattern, event_type) for pattern in TRIGGERS):
                errors.add("event_type", f"is not consumed here (only {', '.join(TRIGGERS)})")
    if channel is not None and channel not in CHANNELS:
        errors.add("channel", f"must be one of {', '.join(CHANNELS)}")
    errors.raise_if_any()
    assert event_type is not None and template is not None and channel is not None
    created = await database(request).run(_put_template, event_type, template, channel)
    answer = {"event_type": event_type, "template": template, "channel": channel}
    return web.json_response(answer, status=201 if created else 200)


def _consuming(
    bus: EventBus, tokens: Authenticator, settings: ConsumerSettings | None
) -> Callable[[web.Application], None]:
    def configure(app: web.Application) -> None:
        hub = app[HUB] = WebSocketHub(tokens)
        consumer = ServiceConsumer(
            bus, group=NAME, pattern=">", handler=Notifier(app[DATABASE], hub), settings=settings
        )
        consumer.install(app)
        app.router.add_get("/ws/notifications", hub.handle)

        async def close_hub(app: web.Application) -> None:
            await hub.close()

        # After the consumer's own shutdown hook: nothing is pushed to a closed hub.
        app.on_shutdown.append(close_hub)

    return configure


async def start(
    db_path: Path,
    *,
    bus: EventBus,
    host: str = "127.0.0.1",
    port: int = 0,
    tokens: Authenticator | None = None,
    consumer: ConsumerSettings | None = None,
) -> RunningService:
    """Starts notification-services on ``db_path`` (created when missing), consuming the
    backend of ``bus`` as group ``notification-services`` until it is stopped.

    ``tokens`` turns a WebSocket token into a
    :class:`~hybridmesh.api.websocket.Principal`; the default,
    :func:`~hybridmesh.api.websocket.allow_any`, takes any token as the id of its user and is
    for local use only. ``consumer`` sets retries and dead-lettering.
    """
    return await serve(
        NAME,
        db_path,
        schema=SCHEMA,
        routes=routes,
        seed=_seed,
        host=host,
        port=port,
        configure=_consuming(bus, tokens or allow_any, consumer),
    )
