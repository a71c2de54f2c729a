"""Versioned plans in the store.

Each saga type and workflow id has numbered versions. A stored version never changes: an
execution keeps the version it started with until it ends, and registering a changed
definition makes a new version, which only new executions use. Registering the same content
again is a no-op, so every process may register its definitions at start-up.

A plan is stored only if it survives being stored: written as JSON and read back with the
rules definitions are read with, it must come back unchanged. A version an older release
stored that breaks those rules cannot be started (:class:`UnrunnableDefinitionError`, naming
its fields); :meth:`DefinitionCatalog.retire` takes any version out of use: it starts no new
execution, new executions use the newest version that is not retired, and executions under
way finish on it.
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
from hybridmesh.core.errors import (
    ConfigurationError,
    NotFoundError,
    Problem,
    StoreError,
    ValidationError,
)
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.orchestration.definitions import Definition, to_plan
from hybridmesh.orchestration.plan import Kind, Plan, stored_copy_problems
from hybridmesh.registry import ServiceRegistry
from hybridmesh.store import Store, Transaction

_INSERT = """
INSERT INTO orch_definitions (kind, name, version, digest, body, source, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
_ENTRY_COLUMNS = "kind, name, version, digest, source, created_at, retired_at"
_NEWEST = (
    "SELECT version, digest, retired_at FROM orch_definitions WHERE kind = ? AND name = ? "
    "ORDER BY version DESC LIMIT 1"
)
_NEWEST_LIVE = (
    "SELECT version FROM orch_definitions WHERE kind = ? AND name = ? AND retired_at IS NULL "
    "ORDER BY version DESC LIMIT 1"
)
_WHERE_VERSION = "WHERE kind = ? AND name = ? AND version = ?"
_DIGEST_OF = f"SELECT digest, retired_at FROM orch_definitions {_WHERE_VERSION}"
_BODY_OF = f"SELECT body FROM orch_definitions {_WHERE_VERSION}"
_RETIRED_AT = f"SELECT retired_at FROM orch_definitions {_WHERE_VERSION}"
_RETIRE = f"UPDATE orch_definitions SET retired_at = ? {_WHERE_VERSION} AND retired_at IS NULL"

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
    #: When it was retired (None: it is not): it starts no new executions.
    retired_at: datetime | None = None


class UnrunnableDefinitionError(ConfigurationError):
    """A stored version that cannot run: it breaks the rules plans are read with (stored
    by an older release that allowed it). Retire it and register a fixed definition."""

    def __init__(self, kind: Kind, name: str, version: int, problems: list[Problem]) -> None:
        self.kind = kind
        self.name = name
        self.version = version
        self.problems = problems
        listed = "; ".join(
            f"[{problem.field}] {problem.message}" if problem.field else problem.message
            for problem in problems
        )
        super().__init__(
            f"{kind.value} {name!r} version {version} cannot run: {listed}; retire it "
            f"(hybridmesh definitions retire {name} --version {version}) and load a fixed "
            "definition"
        )


class RetiredVersionError(NotFoundError):
    """A retired version (or every version of a definition is): it starts nothing."""


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
        content, is not the newest or is retired, and when the plan would not come back the
        same from its stored form (a value JSON cannot hold, a number out of bounds).
        """
        problems = stored_copy_problems(plan)
        if problems:
            what = f"{plan.kind.value} {plan.name!r}"
            raise ValidationError(
                [Problem(f"{what}: {p.message}", field=p.field) for p in problems]
            )
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
                taken = version is not None and await self.store.fetch_one(
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
            # The same content as a retired version is registered again as a new one.
            if newest is not None and newest["digest"] == digest and newest["retired_at"] is None:
                return newest_version, False
            return newest_version + 1, True
        what = f"{kind} {name!r} version {plan.version}"
        if plan.version < 1:
            raise ValidationError([Problem(f"{what}: versions start at 1", field="version")])
        row = await tx.fetch_one(_DIGEST_OF, kind, name, plan.version)
        stored = row["digest"] if row is not None else None
        if row is not None and row["retired_at"] is not None:
            message = (
                f"{what} is retired; give the definition a new version (the newest is "
                f"{newest_version})"
            )
            raise ValidationError([Problem(message, field="version")])
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
        """A stored plan: ``version`` (retired or not: executions under way finish on it),
        or, when None, the newest version that is not retired.

        Raises :class:`~hybridmesh.core.errors.NotFoundError` when there is no such version
        (:class:`RetiredVersionError` when every version is retired), and
        :class:`UnrunnableDefinitionError` when the stored plan breaks the rules plans are
        read with.
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
            try:
                plan = Plan.from_dict(loads(row["body"]))
            except (ValueError, ValidationError) as unreadable:
                problems = (
                    unreadable.problems
                    if isinstance(unreadable, ValidationError)
                    else [Problem(f"its stored body is not JSON: {unreadable}")]
                )
                raise UnrunnableDefinitionError(kind, name, version, problems) from None
            self._plans[key] = plan
        return plan

    async def to_start(self, kind: Kind | str, name: str, version: int | None = None) -> Plan:
        """The plan a new execution runs: as :meth:`get`, but a retired ``version`` raises
        :class:`RetiredVersionError`."""
        kind = Kind(kind)
        if version is not None:
            retired = await self.store.fetch_one(_RETIRED_AT, kind.value, name, version)
            if retired is not None and retired["retired_at"] is not None:
                raise RetiredVersionError(
                    f"{kind.value} {name!r} version {version} is retired: it starts no new "
                    "executions"
                )
        return await self.get(kind, name, version)

    async def retire(self, kind: Kind | str, name: str, version: int) -> CatalogEntry:
        """Take ``version`` out of use: it starts no new executions, and new executions
        use the newest version that is not retired (in other processes within
        :attr:`newest_ttl`). Executions under way finish on it. Idempotent; the stored plan
        is not read, so a version that cannot run can be retired. Raises
        :class:`~hybridmesh.core.errors.NotFoundError` when there is no such version."""
        kind = Kind(kind)
        await self.store.execute(_RETIRE, self._clock.now().timestamp(), kind.value, name, version)
        self._newest_seen.pop((kind, name), None)
        self._reading.pop((kind, name), None)
        for entry in await self.versions(kind, name):
            if entry.version == version:
                return entry
        raise NotFoundError(await self._missing(kind, name, version))

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
        newest = await self.store.fetch_one(_NEWEST_LIVE, kind.value, name)
        if newest is None:
            if await self.versions(kind, name):
                raise RetiredVersionError(
                    f"every version of {kind.value} {name!r} is retired: register a new one"
                )
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
        retired_at=(
            datetime.fromtimestamp(float(row["retired_at"]), UTC)
            if row["retired_at"] is not None
            else None
        ),
    )


__all__ = [
    "CatalogEntry",
    "DefinitionCatalog",
    "RetiredVersionError",
    "UnrunnableDefinitionError",
    "plan_digest",
]
