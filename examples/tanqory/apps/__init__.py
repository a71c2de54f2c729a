"""Small, real HTTP services of the Tanqory reference system, each with its own SQLite file.

- ``user-service`` (:mod:`.user_service`): a microservice; REST and GraphQL; publishes
  ``user.*`` events through a transactional outbox when given ``publish``.
- ``inventory-management`` (:mod:`.inventory`): a modular monolith; stock and reservations.
- ``legacy-erp`` (:mod:`.legacy_erp`): a traditional monolith; customers, orders, batches.
- ``notification-services`` (:mod:`.notification_services`): a modular monolith; consumes
  ``user.*`` and ``order.*``, records notifications and pushes them over WebSocket.
- ``analytics-reporting`` (:mod:`.analytics_reporting`): a modular monolith; consumes every
  event into aggregates served over REST.

The modules in :data:`SERVICES` have ``async start(db_path, *, host="127.0.0.1", port=0) ->
RunningService``; those in :data:`EVENT_SERVICES` consume the event bus and take it as well:
``start(db_path, *, bus, host, port)``; :class:`ConsumerSettings` tunes their retries and
:class:`RelaySettings` the outbox relay of user-service. They share problem+json errors,
request ids, a request log, idempotency keys and fault injection (see :mod:`._base`).
``python -m tanqory.apps`` runs them, with the order services, on one event bus (see
:mod:`.__main__`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from hybridmesh.events import EventBus
from tanqory.apps import (
    analytics_reporting,
    inventory,
    legacy_erp,
    notification_services,
    user_service,
)
from tanqory.apps._base import RunningService
from tanqory.apps._consumer import ConsumerSettings
from tanqory.apps._outbox import RelaySettings

__all__ = [
    "EVENT_SERVICES",
    "SERVICES",
    "ConsumerSettings",
    "EventServiceStarter",
    "RelaySettings",
    "RunningService",
    "ServiceStarter",
]


class ServiceStarter(Protocol):
    """A service module's ``start``: serve on ``db_path`` until the result is stopped."""

    async def __call__(
        self, db_path: Path, *, host: str = "127.0.0.1", port: int = 0
    ) -> RunningService: ...


class EventServiceStarter(Protocol):
    """The ``start`` of a service that consumes ``bus`` while it runs."""

    async def __call__(
        self, db_path: Path, *, bus: EventBus, host: str = "127.0.0.1", port: int = 0
    ) -> RunningService: ...


#: Service name (as in the registry) → its ``start`` function.
SERVICES: dict[str, ServiceStarter] = {
    user_service.NAME: user_service.start,
    inventory.NAME: inventory.start,
    legacy_erp.NAME: legacy_erp.start,
}

#: Service name → ``start`` of the services that need the event bus.
EVENT_SERVICES: dict[str, EventServiceStarter] = {
    notification_services.NAME: notification_services.start,
    analytics_reporting.NAME: analytics_reporting.start,
}
