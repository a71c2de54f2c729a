"""Versioned plans in the store.

Each saga type and workflow id has numbered versions. A stored version never changes: an
execution keeps the version it started with until it ends, and registering a changed
definition makes a new version, which only new executions use. Registering the same content
again is a no-op, so every process may register its definitions at start-up.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import NotFoundError, Problem, StoreError, ValidationError
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.orchestration.definitions import Definition, to_plan
from hybridmesh.orchestration.plan import Kind, Plan
from hybridmesh.registry import ServiceRegistry
from hybridmesh.store import Store, Transaction

_INSERT = """
INSERT INTO orch_definitions (kind, name, version, digest, body, source, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
_ENTRY_COLUMNS = "kind, name, version, digest, source, created_at"
_NEWEST = (
    "SELECT version, digest FROM orch_definitions WHERE kind = ? AND name = ? "
    "ORDER BY version DESC LIMIT 1"
)
_DIGEST_OF = "SELECT digest FROM orch_definitions WHERE kind = ? AND name = ? AND version = ?"
_BODY_OF = "SELECT body FROM orch_definitions WHERE kind = ? AND name = ? AND version = ?"

#: How often :meth:`DefinitionCatalog.register` tries again after losing a race with
#: another process registering the same definition.
_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One stored version of a definition."""

    kind: Kind
    name: str
    version: int
    digest: str
    created_at: datetime
    #: Where it came from (``file:line`` for YAML), when the registering code said so.
    source: str | None


def plan_digest(plan: Plan) -> str:
    """The SHA-256 of the plan's content, its version left out: equal plans, equal digests."""
    content = plan.to_dict()
    del content["version"]
    # Sorted keys: the order a payload's keys were written in makes no new version.
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha256(canonical).hexdigest()


class DefinitionCatalog:
    """Stores plans as numbered versions and reads them back (table ``orch_definitions``).

    Stored versions are immutable, so they are kept in memory once read.
    """

    def __init__(self, store: Store, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self._clock = clock
        self._plans: dict[tuple[Kind, str, int], Plan] = {}
        self._newest_seen: dict[tuple[Kind, str], tuple[int, float]] = {}
        self._reading: dict[tuple[Kind, str], asyncio.Future[int]] = {}
        #: Seconds a definition's newest version is remembered (see :meth:`get`).
        self.newest_ttl = 1.0

    async def register(
        self, plan: Plan, *, source: str | None = None, explicit_version: bool = False
    ) -> Plan:
        """Store ``plan`` and return it with its stored version. Idempotent.

        By default the catalog numbers versions: the newest version when it holds the same
        content, else a new version (the newest + 1, or 1). With ``explicit_version``,
        ``plan.version`` is the version to store: it is returned as is when it holds the same
        content, and it must be newer than every stored version otherwise. Raises
        :class:`~hybridmesh.core.errors.ValidationError` when that version holds other
        content or is not the newest.
        """
        digest = plan_digest(plan)
        for attempt in range(1, _ATTEMPTS + 1):
            version: int | None = None
            try:
                async with self.store.transaction() as tx:
                    version, new = await self._version_for(tx, plan, digest, explicit_version)
                    if new:
                        await tx.execute(
                            _INSERT,
                            plan.kind.value,
                            plan.name,
                            version,
                            digest,
                            dumps(replace(plan, version=version).to_dict()),
                            source,
                            self._clock.now().timestamp(),
                        )
            except StoreError:
                # Another process stored this version first: look again, unless that is
                # not what happened.
                taken = version is not None and await self.store.fetch_value(
                    _DIGEST_OF, plan.kind.value, plan.name, version
                )
                if not taken or attempt == _ATTEMPTS:
                    raise
                continue
            self._newest_seen.pop((plan.kind, plan.name), None)
            self._reading.pop((plan.kind, plan.name), None)  # it may predate this version
            return await self.get(plan.kind, plan.name, version)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _version_for(
        self, tx: Transaction, plan: Plan, digest: str, explicit: bool
    ) -> tuple[int, bool]:
        """The version ``plan`` is stored under, and whether it is a new one."""
        kind, name = plan.kind.value, plan.name
        newest = await tx.fetch_one(_NEWEST, kind, name)
        newest_version = int(newest["version"]) if newest else 0
        if not explicit:
            if newest is not None and newest["digest"] == digest:
                return newest_version, False
            return newest_version + 1, True
        what = f"{kind} {name!r} version {plan.version}"
        if plan.version < 1:
            raise ValidationError([Problem(f"{what}: versions start at 1", field="version")])
        stored = await tx.fetch_value(_DIGEST_OF, kind, name, plan.version)
        if stored == digest:
            return plan.version, False
        if stored is not None:
            message = (
                f"{what} is already registered with other content; give the changed "
                f"definition a new version (the newest is {newest_version})"
            )
            raise ValidationError([Problem(message, field="version")])
        if plan.version < newest_version:
            message = (
                f"{what} is older than the newest registered version, {newest_version}; "
                f"give it version {newest_version + 1} or more"
            )
            raise ValidationError([Problem(message, field="version")])
        return plan.version, True

    async def register_definition(
        self,
        definition: Definition,
        *,
        registry: ServiceRegistry | None = None,
        source: str | None = None,
    ) -> Plan:
        """:meth:`register` the plan of ``definition``, at its own version when it sets one.

        Raises :class:`~hybridmesh.core.errors.ValidationError` when the definition does not
        validate, or as :meth:`register` does.
        """
        plan = to_plan(definition, registry=registry)
        pinned = definition.version is not None
        return await self.register(plan, source=source, explicit_version=pinned)

    async def get(self, kind: Kind | str, name: str, version: int | None = None) -> Plan:
        """A stored plan: ``version``, or the newest when None.

        Raises :class:`~hybridmesh.core.errors.NotFoundError` when there is no such version.
        """
        kind = Kind(kind)
        if version is None:
            version = await self._newest(kind, name)
        key = (kind, name, version)
        plan = self._plans.get(key)
        if plan is None:
            row = await self.store.fetch_one(_BODY_OF, kind.value, name, version)
            if row is None:
                raise NotFoundError(await self._missing(kind, name, version))
            plan = Plan.from_dict(loads(row["body"]))
            self._plans[key] = plan
        return plan

    async def _newest(self, kind: Kind, name: str) -> int:
        """The newest version, read again at most every :attr:`newest_ttl` seconds (a new
        version registered by another process reaches new executions within that time;
        one registered through this catalog at once)."""
        now = self._clock.monotonic()
        known = self._newest_seen.get((kind, name))
        if known is not None and now - known[1] < self.newest_ttl:
            return known[0]
        # One read for everyone who finds the entry stale at once (a busy engine starts
        # dozens of executions in the same instant).
        reading = self._reading.get((kind, name))
        if reading is None:
            reading = asyncio.ensure_future(self._read_newest(kind, name, now))
            self._reading[(kind, name)] = reading
            reading.add_done_callback(partial(self._reading_done, (kind, name)))
        return await asyncio.shield(reading)

    async def _read_newest(self, kind: Kind, name: str, now: float) -> int:
        newest = await self.store.fetch_one(_NEWEST, kind.value, name)
        if newest is None:
            raise NotFoundError(f"no {kind.value} {name!r} in the catalog")
        version = int(newest["version"])
        if self._reading.get((kind, name)) is not None:  # not overtaken by a registration
            self._newest_seen[(kind, name)] = (version, now)
        return version

    def _reading_done(self, key: tuple[Kind, str], reading: asyncio.Future[int]) -> None:
        if self._reading.get(key) is reading:
            del self._reading[key]

    async def _missing(self, kind: Kind, name: str, version: int) -> str:
        known = [entry.version for entry in await self.versions(kind, name)]
        if not known:
            return f"no {kind.value} {name!r} in the catalog"
        listed = ", ".join(str(v) for v in known)
        return f"{kind.value} {name!r} has no version {version} (it has {listed})"

    async def versions(self, kind: Kind | str, name: str) -> list[CatalogEntry]:
        """The stored versions of one definition, oldest first; empty when there are none."""
        rows = await self.store.fetch_all(
            f"SELECT {_ENTRY_COLUMNS} FROM orch_definitions WHERE kind = ? AND name = ?",
            Kind(kind).value,
            name,
        )
        return sorted((_entry(row) for row in rows), key=lambda e: e.version)

    # Last: below this method, ``list`` in an annotation would name it, not the builtin.
    async def list(self) -> list[CatalogEntry]:
        """Every stored version of every definition, by kind, name and version."""
        rows = await self.store.fetch_all(f"SELECT {_ENTRY_COLUMNS} FROM orch_definitions")
        # Sorted here, not in SQL: database collations order dashes differently.
        return sorted((_entry(row) for row in rows), key=lambda e: (e.kind, e.name, e.version))


def _entry(row: dict[str, Any]) -> CatalogEntry:
    return CatalogEntry(
        kind=Kind(row["kind"]),
        name=row["name"],
        version=int(row["version"]),
        digest=row["digest"],
        created_at=datetime.fromtimestamp(float(row["created_at"]), UTC),
        source=row["source"],
    )


__all__ = ["CatalogEntry", "DefinitionCatalog", "plan_digest"]
