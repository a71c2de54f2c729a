"""The registry persisted in the store: one row per service, its definition as JSON."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pydantic

from hybridmesh.core.errors import StoreError, UnknownServiceError
from hybridmesh.core.names import quoted
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.registry._registry import ServiceRegistry
from hybridmesh.registry.models import ServiceDefinition
from hybridmesh.store import Store

_UPSERT = """
INSERT INTO services (name, architecture, version, base_url, owner, lifecycle, definition,
                      source, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET
    architecture = excluded.architecture, version = excluded.version,
    base_url = excluded.base_url, owner = excluded.owner, lifecycle = excluded.lifecycle,
    definition = excluded.definition, source = excluded.source,
    updated_at = excluded.updated_at
"""


class RegistryCatalog:
    """Saves and reads service definitions in a (migrated) store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def save(
        self,
        definitions: Iterable[ServiceDefinition],
        *,
        source: str | None = None,
        replace: bool = False,
    ) -> int:
        """Insert or update each definition, in one transaction; returns how many.

        With ``replace``, services that are not in ``definitions`` are removed.
        """
        from hybridmesh.core.clock import SYSTEM_CLOCK

        now = SYSTEM_CLOCK.now().isoformat()
        rows = [
            (
                d.name,
                d.architecture.value,
                d.version,
                d.base_url,
                d.owner_name,
                d.lifecycle,
                dumps(d.model_dump(mode="json", exclude_defaults=True)),
                source,
                now,
            )
            for d in definitions
        ]
        async with self.store.transaction() as tx:
            if replace:
                keep = {row[0] for row in rows}
                for row in await tx.fetch_all("SELECT name FROM services"):
                    if row["name"] not in keep:
                        await tx.execute("DELETE FROM services WHERE name = ?", row["name"])
            if rows:
                await tx.executemany(_UPSERT, rows)
        return len(rows)

    async def list(self) -> list[ServiceDefinition]:
        """Every saved definition, by name."""
        rows = await self.store.fetch_all("SELECT name, definition FROM services")
        definitions = [_stored(row) for row in rows]
        # Sorted here, not in SQL: database collations order dashes differently.
        return sorted(definitions, key=lambda d: d.name)

    async def get(self, name: str) -> ServiceDefinition:
        """The saved definition of ``name``; raises ``UnknownServiceError``."""
        row = await self.store.fetch_one(
            "SELECT name, definition FROM services WHERE name = ?", name
        )
        if row is None:
            raise UnknownServiceError(name)
        return _stored(row)

    async def remove(self, name: str) -> bool:
        """Delete ``name``; False when it was not saved."""
        return await self.store.execute("DELETE FROM services WHERE name = ?", name) > 0

    async def registry(self) -> ServiceRegistry:
        """Every saved definition, as a :class:`ServiceRegistry`."""
        return ServiceRegistry(await self.list())


def _stored(row: dict[str, Any]) -> ServiceDefinition:
    """The definition in a ``services`` row. One saved before a rule was tightened (a name
    longer than 63 characters, say) raises :class:`StoreError` saying how to replace it."""
    try:
        return ServiceDefinition.model_validate(loads(row["definition"]))
    except pydantic.ValidationError as invalid:
        first = invalid.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        reason = str(first["msg"]).removeprefix("Value error, ")
        raise StoreError(
            f"the stored service {quoted(str(row['name']))} is no longer valid ({where}: "
            f"{reason}); fix its definition and run `hybridmesh registry load PATH --replace`"
        ) from None


__all__ = ["RegistryCatalog"]
