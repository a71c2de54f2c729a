"""The ``events`` transport of the hybrid client: a command sent as a CloudEvent.

The client picks it where the integration guide prefers events (commands between
microservices, for instance), with direct REST as the fallback. A command becomes one event:

- ``type``: the request's ``event_type``, else ``<target>.command``;
- ``source``: the calling service (``X-Source-Service``); ``subject``: the target service;
- ``id``: the command's ``Idempotency-Key``, so a retried command is the same event and the
  bus delivers it once;
- ``data``: the payload; extensions ``traceparent`` (the call's span) and ``partitionkey``
  (the target, so its commands stay in order).

The answer is 202 with the event id: the target handles the command asynchronously.
"""

from __future__ import annotations

from hybridmesh.core.errors import TransportError
from hybridmesh.events.bus import EventBus
from hybridmesh.events.envelope import CloudEvent, EventFormatError
from hybridmesh.transports.base import OutboundRequest, TransportResponse


class EventTransport:
    """Publishes commands on ``bus``."""

    pattern = "events"

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    async def send(self, request: OutboundRequest) -> TransportResponse:
        headers = request.headers
        extensions: dict[str, str | int | bool] = {"partitionkey": request.target}
        if headers.get("traceparent"):
            extensions["traceparent"] = headers["traceparent"]
        if headers.get("X-Request-ID"):
            extensions["requestid"] = headers["X-Request-ID"]
        try:
            event = CloudEvent.create(
                request.event_type or f"{request.target}.command",
                headers.get("X-Source-Service") or "hybridmesh",
                request.payload,
                id=headers.get("Idempotency-Key") or None,
                subject=request.target,
                extensions=extensions,
            )
        except EventFormatError as error:
            raise TransportError(
                message=f"cannot make a CloudEvent of this command: {error.reason}",
                target=request.target,
                pattern=self.pattern,
                status=400,
            ) from error
        try:
            await self.bus.publish(event)
        except EventFormatError as error:
            raise TransportError(
                message=f"cannot publish this command: {error.reason}",
                target=request.target,
                pattern=self.pattern,
                status=400,
            ) from error
        except Exception as error:
            raise TransportError(
                message=f"publishing failed: {type(error).__name__}: {error}",
                target=request.target,
                pattern=self.pattern,
            ) from error
        return TransportResponse(202, {"event_id": event.id, "type": event.type}, {})

    async def close(self) -> None:
        return None


__all__ = ["EventTransport"]
