"""Small, real HTTP services of the Tanqory reference system, each with its own SQLite file.

- ``user-service`` (:mod:`.user_service`): a microservice; REST and GraphQL.
- ``inventory-management`` (:mod:`.inventory`): a modular monolith; stock and reservations.
- ``legacy-erp`` (:mod:`.legacy_erp`): a traditional monolith; customers, orders, batches.

Each module has ``async start(db_path, *, host="127.0.0.1", port=0) -> RunningService``.
They share problem+json errors, request ids, a request log, idempotency keys and fault
injection (see :mod:`._base`). ``python -m tanqory.apps`` runs all three.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from tanqory.apps import inventory, legacy_erp, user_service
from tanqory.apps._base import RunningService

__all__ = ["SERVICES", "RunningService", "ServiceStarter"]


class ServiceStarter(Protocol):
    """A service module's ``start``: serve on ``db_path`` until the result is stopped."""

    async def __call__(
        self, db_path: Path, *, host: str = "127.0.0.1", port: int = 0
    ) -> RunningService: ...


#: Service name (as in the registry) → its ``start`` function.
SERVICES: dict[str, ServiceStarter] = {
    user_service.NAME: user_service.start,
    inventory.NAME: inventory.start,
    legacy_erp.NAME: legacy_erp.start,
}
