"""data-transformations: the Data team's serverless functions, run in-process.

::

    window = register_functions(runtime.functions, runtime.triggers)
    # or: hybridmesh worker --functions tanqory.functions:register_functions

- ``collect-events``, triggered by every event on the bus (consumer group
  ``data-transformations``): cleans a business event into the analytics format and keeps
  it in the :class:`EventWindow`; other events (the mesh's own ``saga.*``, ...) are ignored.
- ``transform-events {since?, format: "analytics"}`` → ``{format, since, count, events}``:
  the events collected since ``since`` (an ISO 8601 time; all that are kept when left out),
  oldest first, as analytics-reporting ingests them (``POST /analytics/events/ingest``)::

    {"event_id", "source", "type", "occurred_at", "user_id", "order_id", "amount"}

``occurred_at`` is UTC; ``user_id`` is the data's ``user_id`` (else ``customer_id``);
``amount`` its ``total`` (else ``amount``) when that is a number; absent values are null.
Both functions may run again on the same input (a redelivered event, a retried workflow
step) without changing the outcome. The window lives in this process's memory: a worker
that restarts collects afresh.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hybridmesh.events import CloudEvent, matches
from hybridmesh.functions import FunctionCall, FunctionRegistry, FunctionTriggers

#: The consumer group that feeds ``collect-events``.
EVENT_GROUP = "data-transformations"
#: What counts as a business event.
BUSINESS_EVENTS = ("user.>", "order.>", "payment.>", "shipment.>", "inventory.>")
FORMATS = ("analytics",)
#: How many events the window keeps by default, the oldest dropped first.
DEFAULT_WINDOW = 10_000


def analytics_record(event: CloudEvent) -> dict[str, Any]:
    """``event`` in the analytics format (see the module docstring)."""
    data: Mapping[str, Any] = event.data if isinstance(event.data, Mapping) else {}
    amount = data.get("total", data.get("amount"))
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        amount = None
    occurred = (event.time or datetime.now(UTC)).astimezone(UTC)
    return {
        "event_id": event.id,
        "source": event.source,
        "type": event.type,
        "occurred_at": occurred.isoformat(),
        "user_id": data.get("user_id") or data.get("customer_id"),
        "order_id": data.get("order_id"),
        "amount": amount,
    }


class EventWindow:
    """The latest business events in the analytics format, each once (by source and id)
    although the bus delivers at least once; up to ``size`` of them."""

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        self.size = size
        self._records: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    def add(self, event: CloudEvent) -> bool:
        """Keep ``event`` if it is a business event; False when it is not."""
        if not any(matches(pattern, event.type) for pattern in BUSINESS_EVENTS):
            return False
        self._records[(event.source, event.id)] = analytics_record(event)
        while len(self._records) > self.size:
            self._records.popitem(last=False)
        return True

    def since(self, moment: datetime | None) -> list[dict[str, Any]]:
        """The records of events that happened at or after ``moment`` (all when None),
        oldest first."""
        records = sorted(self._records.values(), key=lambda r: str(r["occurred_at"]))
        if moment is None:
            return records
        return [r for r in records if datetime.fromisoformat(r["occurred_at"]) >= moment]

    def __len__(self) -> int:
        return len(self._records)


def register_functions(
    registry: FunctionRegistry,
    triggers: FunctionTriggers | None = None,
    *,
    window: EventWindow | None = None,
) -> EventWindow:
    """Register ``collect-events`` and ``transform-events`` on ``registry``, sharing
    ``window`` (a new one when None), and, with ``triggers`` (which need a bus), have every
    event invoke ``collect-events``. Returns the window."""
    window = window if window is not None else EventWindow()

    async def collect_events(call: FunctionCall) -> dict[str, Any]:
        return {"kept": window.add(_triggering_event(call.payload))}

    async def transform_events(call: FunctionCall) -> dict[str, Any]:
        payload = call.payload if isinstance(call.payload, Mapping) else {}
        kind = payload.get("format", "analytics")
        if kind not in FORMATS:
            raise ValueError(f"format {kind!r} is not one of {', '.join(FORMATS)}")
        since = _moment(payload.get("since"))
        records = window.since(since)
        return {
            "format": kind,
            "since": since.isoformat() if since else None,
            "count": len(records),
            "events": records,
        }

    registry.register("collect-events", collect_events)
    registry.register("transform-events", transform_events)
    if triggers is not None:
        triggers.on_event(">", "collect-events", group=EVENT_GROUP)
    return window


def _triggering_event(payload: Any) -> CloudEvent:
    """The event an event trigger's payload (``{**data, "event": {id, type, ...}}``) was
    made from; KeyError when it is not such a payload."""
    meta = payload["event"]
    data = {key: value for key, value in payload.items() if key != "event"}
    time = datetime.fromisoformat(meta["time"]) if meta.get("time") else None
    return CloudEvent.create(
        meta["type"],
        meta["source"],
        data,
        id=meta["id"],
        subject=meta.get("subject"),
        time=time,
    )


def _moment(value: Any) -> datetime | None:
    """``since`` as an aware time (UTC when it names no zone); ValueError when it is not one."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"since must be an ISO 8601 time, not {value!r}")
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


__all__ = [
    "BUSINESS_EVENTS",
    "EVENT_GROUP",
    "EventWindow",
    "analytics_record",
    "register_functions",
]
