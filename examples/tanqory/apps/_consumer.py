"""How a service consumes the event bus: one consumer group, started and stopped with it.

A service is handed the mesh's :class:`~hybridmesh.events.EventBus` and consumes through a
bus of its own on the same backend, as a separate process sharing the log would. So its
consumer task starts with the service and stops with it, and stopping it leaves the caller's
bus untouched (a bus cannot unsubscribe a group). Dead letters live in the shared backend:
``bus.dead_letters(group=...)`` and ``bus.replay(id)`` work from either bus.

:meth:`ServiceConsumer.install` adds to a service:

- ``GET /_admin/consumer``: the group, its pattern, what it has handled, retried,
  dead-lettered and dropped as duplicates since the start, and its dead letters;
- ``POST /_admin/dead-letters/{id}/replay``: deliver one of the group's dead letters again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hybridmesh.core.errors import NotFoundError
from hybridmesh.events import CloudEvent, DeadLetter, Drop, EventBus, Handler, HandlerResult
from tanqory.apps._base import not_found

__all__ = ["DUPLICATE", "ConsumerSettings", "ServiceConsumer"]

#: The :class:`Drop` reason of a delivery the service has handled before.
DUPLICATE = "duplicate delivery"


@dataclass(frozen=True)
class ConsumerSettings:
    """How patiently a service retries an event it fails to handle.

    After ``max_deliveries`` attempts (default 5) the event goes to the group's dead letters.
    Between attempts the bus waits ``backoff_initial`` seconds (default 0.5), doubling up to
    ``backoff_max`` (default 60), with jitter.
    """

    max_deliveries: int = 5
    backoff_initial: float = 0.5
    backoff_max: float = 60.0


class ServiceConsumer:
    """Consumer group ``group`` of events matching ``pattern``, handled by ``handler``, on
    the backend of ``bus`` (see the module docstring). A handler returns
    ``Drop(DUPLICATE)`` for a delivery it has seen, to have it counted as one."""

    def __init__(
        self,
        bus: EventBus,
        *,
        group: str,
        pattern: str,
        handler: Handler,
        settings: ConsumerSettings | None = None,
    ) -> None:
        settings = settings or ConsumerSettings()
        self.group = group
        self.duplicates = 0
        self._handler = handler
        self.bus = EventBus(
            bus.backend,
            consumer=f"{group}-{uuid.uuid4().hex[:8]}",
            clock=bus.clock,
            metrics=bus.metrics,
            poll_wait=bus.poll_wait,
            recorder=bus.recorder,
            owns_backend=False,
        )
        self.subscription = self.bus.subscribe(
            pattern,
            self._counted,
            group=group,
            max_deliveries=settings.max_deliveries,
            backoff_initial=settings.backoff_initial,
            backoff_max=settings.backoff_max,
        )

    async def _counted(self, event: CloudEvent) -> HandlerResult:
        result = await self._handler(event)
        if isinstance(result, Drop) and result.reason == DUPLICATE:
            self.duplicates += 1
        return result

    async def start(self) -> None:
        await self.bus.start()

    async def stop(self) -> None:
        """Stop consuming; a batch in hand is finished first (within the bus's grace)."""
        await self.bus.close()

    async def status(self) -> dict[str, Any]:
        """What ``GET /_admin/consumer`` answers."""
        sub = self.subscription
        letters = await self.bus.dead_letters(group=self.group)
        return {
            "group": self.group,
            "pattern": sub.spec.pattern,
            "max_deliveries": sub.spec.max_deliveries,
            "handled": sub.handled,
            "retried": sub.retried,
            "dead_lettered": sub.dead_lettered,
            "duplicates": self.duplicates,
            "dead_letters": [_letter(d) for d in letters],
        }

    async def replay(self, dead_letter_id: str) -> DeadLetter:
        """Deliver one of this group's dead letters again; ``NotFoundError`` when the group
        has no such letter."""
        letter = await self.bus.dead_letter(dead_letter_id)
        if letter.group != self.group:
            raise NotFoundError(f"group {self.group!r} has no dead letter {dead_letter_id!r}")
        return await self.bus.replay(dead_letter_id)

    def install(self, app: web.Application) -> None:
        """Run with ``app`` (consume from startup until shutdown) and add the admin routes."""

        async def start(app: web.Application) -> None:
            await self.start()

        async def stop(app: web.Application) -> None:
            await self.stop()

        async def get_status(request: web.Request) -> web.Response:
            return web.json_response(await self.status())

        async def post_replay(request: web.Request) -> web.Response:
            dead_letter_id = request.match_info["id"]
            try:
                letter = await self.replay(dead_letter_id)
            except NotFoundError:
                raise not_found("dead letter", dead_letter_id) from None
            return web.json_response(_letter(letter))

        app.on_startup.append(start)
        app.on_shutdown.append(stop)
        app.router.add_get("/_admin/consumer", get_status)
        app.router.add_post("/_admin/dead-letters/{id}/replay", post_replay)


def _letter(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "group": letter.group,
        "event_id": letter.event_id,
        "type": letter.type,
        "source": letter.source,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "failed_at": letter.failed_at.isoformat(),
        "replayed_at": letter.replayed_at.isoformat() if letter.replayed_at else None,
    }
