"""What the gateway replicas share, in the state store: routes, API keys, one revision.

Every change (a route applied, a weight set, a key created or revoked) moves the revision
in the same transaction; on PostgreSQL it also sends ``NOTIFY hybridmesh_gateway``. A
replica reloads its :class:`Snapshot` when the revision moves: it listens on PostgreSQL and
reads the revision every :data:`POLL_SECONDS` everywhere, so a change reaches every replica
within a second, with no restart. Requests in flight finish on the snapshot they started
with.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pydantic

from hybridmesh.core.applying import ApplyResult, plan_apply
from hybridmesh.core.errors import NotFoundError, Problem, ValidationError
from hybridmesh.core.ids import new_id
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.gateway.config import LoadedRoute, Route
from hybridmesh.gateway.routing import RouteTable
from hybridmesh.gateway.snapshot import ApiKey, Snapshot, key_digest
from hybridmesh.observability import get_logger
from hybridmesh.registry.catalog import RegistryCatalog
from hybridmesh.store import Store
from hybridmesh.store._base import Transaction

if TYPE_CHECKING:
    from hybridmesh.gateway.mirror import Mismatch
    from hybridmesh.gateway.stats import WindowStats

log = get_logger("hybridmesh.gateway.state")

#: The PostgreSQL channel a change is announced on.
CHANNEL = "hybridmesh_gateway"
#: Seconds between reads of the revision (a change is seen within this, or at once on
#: PostgreSQL through LISTEN).
POLL_SECONDS = 0.5
#: What every API key starts with, so a leaked one is easy to recognise.
KEY_PREFIX = "hmk_"


@dataclass(frozen=True)
class StoredRoute:
    route: Route
    revision: int
    source: str | None
    updated_at: float


class GatewayState:
    """The gateway's tables in a (migrated) store."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    # -- revision --------------------------------------------------------------------------

    async def revision(self) -> int:
        return int(await self.store.fetch_value("SELECT revision FROM gw_revision WHERE id = 1"))

    async def _bump(self, tx: Transaction) -> None:
        await tx.execute("UPDATE gw_revision SET revision = revision + 1 WHERE id = 1")
        if self.store.dialect == "postgresql":
            await tx.execute(f"NOTIFY {CHANNEL}")

    # -- routes ----------------------------------------------------------------------------

    async def routes(self) -> list[StoredRoute]:
        rows = await self.store.fetch_all(
            "SELECT name, spec, revision, source, updated_at FROM gw_routes ORDER BY name"
        )
        return [_stored(row) for row in rows]

    async def route(self, name: str) -> StoredRoute:
        row = await self.store.fetch_one(
            "SELECT name, spec, revision, source, updated_at FROM gw_routes WHERE name = ?", name
        )
        if row is None:
            raise NotFoundError(f"no route {name!r}")
        return _stored(row)

    async def check_services(self, loaded: Sequence[LoadedRoute]) -> None:
        """Refuse routes whose backends name services the registry does not have."""
        known = {s.name for s in await RegistryCatalog(self.store).list()}
        problems = [
            Problem(
                f"backend {backend.name!r} names service {backend.service!r}, which is not "
                "registered (hybridmesh registry load)",
                item.file,
                item.line_of("backends", index, "service"),
                f"backends.{index}.service",
            )
            for item in loaded
            for index, backend in enumerate(item.route.backends)
            if backend.service is not None and backend.service not in known
        ]
        if problems:
            raise ValidationError(problems)

    async def diff(self, routes: Sequence[Route], *, prune: bool = False) -> ApplyResult:
        """What :meth:`apply` would do, doing nothing."""
        current = {s.route.name: s.route for s in await self.routes()}
        return _plan(current, routes, prune)

    async def apply(
        self, loaded: Sequence[LoadedRoute], *, prune: bool = False, source: str | None = None
    ) -> ApplyResult:
        """Store ``loaded`` routes (created or replaced), deleting the others when
        ``prune``; one transaction, one revision."""
        await self.check_services(loaded)
        routes = [item.route for item in loaded]
        now = self.clock()
        async with self.store.transaction() as tx:
            rows = await tx.fetch_all("SELECT name, spec FROM gw_routes")
            current = {row["name"]: Route.model_validate(loads(row["spec"])) for row in rows}
            result = _plan(current, routes, prune)
            if not (result.created or result.updated or result.deleted):
                return result
            revision = (
                int(await tx.fetch_value("SELECT revision FROM gw_revision WHERE id = 1")) + 1
            )
            for route in routes:
                if route.name in result.unchanged:
                    continue
                await self._save(tx, route, revision, source, now)
            for name in result.deleted:
                await tx.execute("DELETE FROM gw_routes WHERE name = ?", name)
            await self._bump(tx)
        return result

    async def _save(
        self, tx: Transaction, route: Route, revision: int, source: str | None, now: float
    ) -> None:
        spec = dumps(route.model_dump(mode="json", exclude_defaults=True))
        updated = await tx.execute(
            "UPDATE gw_routes SET spec = ?, revision = ?, source = ?, updated_at = ? "
            "WHERE name = ?",
            spec,
            revision,
            source,
            now,
            route.name,
        )
        if not updated:
            await tx.execute(
                "INSERT INTO gw_routes (name, spec, revision, source, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                route.name,
                spec,
                revision,
                source,
                now,
            )

    async def set_weight(self, name: str, backend: str, percent: float) -> Route:
        """Move ``backend`` of route ``name`` to ``percent``; the others share the rest."""
        async with self.store.transaction() as tx:
            return await self.set_weight_in(tx, name, backend, percent)

    async def set_weight_in(
        self, tx: Transaction, name: str, backend: str, percent: float
    ) -> Route:
        """:meth:`set_weight` inside the caller's transaction (a migration plan records the
        step in the same one, so the weight and the record never disagree)."""
        route, source = await self._route_in(tx, name)
        self._check_backend(route, backend)
        try:
            updated = route.with_weight(backend, percent)
        except ValueError as error:
            raise ValidationError([Problem(str(error), field="percent")]) from None
        if updated != route:
            await self._replace(tx, updated, source)
        return updated

    async def edit(self, name: str, change: Callable[[dict[str, Any]], None]) -> Route:
        """Change route ``name`` in one transaction: ``change`` edits its spec as a dict
        (as YAML writes it); the result is validated and stored as a new revision. What
        others change meanwhile (a plan's weights) is never overwritten with an old copy."""
        async with self.store.transaction() as tx:
            return await self.edit_in(tx, name, change)

    async def update(self, name: str, change: Callable[[Route], Route | None]) -> Route:
        """Read route ``name`` and store ``change(route)`` in one transaction (``change``
        returning None or the route as it is writes nothing); the route as it ends up.
        :class:`NotFoundError` when there is no such route."""
        async with self.store.transaction() as tx:
            route, source = await self._route_in(tx, name)
            updated = change(route)
            if updated is None or updated == route:
                return route
            await self._replace(tx, updated, source)
            return updated

    async def edit_in(
        self, tx: Transaction, name: str, change: Callable[[dict[str, Any]], None]
    ) -> Route:
        """:meth:`edit` inside the caller's transaction."""
        route, source = await self._route_in(tx, name)
        data = route.model_dump(mode="json", exclude_defaults=True)
        change(data)
        try:
            updated = Route.model_validate(data)
        except pydantic.ValidationError as invalid:
            raise ValidationError(
                [
                    Problem(str(e["msg"]), field=".".join(map(str, e["loc"])) or None)
                    for e in invalid.errors()
                ]
            ) from None
        if updated != route:
            await self._replace(tx, updated, source)
        return updated

    async def remove_backend_in(self, tx: Transaction, name: str, backend: str) -> Route:
        """Remove ``backend`` (which must take 0 %) from route ``name``, in ``tx``; a route
        without it already is left as it is."""
        route, source = await self._route_in(tx, name)
        if backend not in [b.name for b in route.backends]:
            return route
        if route.backend(backend).weight > 0:
            raise ValidationError(
                [Problem(f"backend {backend!r} still takes traffic on route {name!r}")]
            )
        kept = tuple(b for b in route.backends if b.name != backend)
        if not kept:
            raise ValidationError([Problem(f"{backend!r} is route {name!r}'s only backend")])
        data = route.model_dump(mode="json", exclude_defaults=True)
        data["backends"] = [b.model_dump(mode="json", exclude_defaults=True) for b in kept]
        updated = Route.model_validate(data)
        await self._replace(tx, updated, source)
        return updated

    async def routes_in(self, tx: Transaction) -> dict[str, Route]:
        """Every route by name, read in ``tx``."""
        rows = await tx.fetch_all("SELECT name, spec FROM gw_routes")
        return {row["name"]: Route.model_validate(loads(row["spec"])) for row in rows}

    async def _route_in(self, tx: Transaction, name: str) -> tuple[Route, str | None]:
        row = await tx.fetch_one("SELECT spec, source FROM gw_routes WHERE name = ?", name)
        if row is None:
            raise NotFoundError(f"no route {name!r}")
        return Route.model_validate(loads(row["spec"])), row["source"]

    @staticmethod
    def _check_backend(route: Route, backend: str) -> None:
        try:
            route.backend(backend)
        except KeyError:
            names = ", ".join(b.name for b in route.backends)
            raise NotFoundError(
                f"route {route.name!r} has no backend {backend!r} (it has {names})"
            ) from None

    async def _replace(self, tx: Transaction, route: Route, source: str | None) -> None:
        revision = int(await tx.fetch_value("SELECT revision FROM gw_revision WHERE id = 1")) + 1
        await self._save(tx, route, revision, source, self.clock())
        await self._bump(tx)

    async def delete(self, name: str) -> bool:
        async with self.store.transaction() as tx:
            deleted = await tx.execute("DELETE FROM gw_routes WHERE name = ?", name)
            if deleted:
                await self._bump(tx)
        return bool(deleted)

    # -- keys ------------------------------------------------------------------------------

    async def create_key(self, consumer: str, route: str | None = None) -> tuple[ApiKey, str]:
        """A new key for ``consumer`` (on every route with key auth, or only ``route``):
        the record and the key itself, which is shown once and stored only as a digest."""
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(new_id()[:16], consumer, route, secret[:12], self.clock())
        async with self.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO gw_keys (id, consumer, route, digest, prefix, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                key.id,
                key.consumer,
                key.route,
                key_digest(secret),
                key.prefix,
                key.created_at,
            )
            await self._bump(tx)
        return key, secret

    async def keys(self, *, include_revoked: bool = True) -> list[ApiKey]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        rows = await self.store.fetch_all(
            "SELECT id, consumer, route, prefix, created_at, revoked_at FROM gw_keys"
            f"{where} ORDER BY created_at, id"
        )
        return [ApiKey(**row) for row in rows]

    async def revoke_key(self, key_id: str) -> ApiKey:
        now = self.clock()
        async with self.store.transaction() as tx:
            row = await tx.fetch_one(
                "SELECT id, consumer, route, prefix, created_at, revoked_at FROM gw_keys "
                "WHERE id = ?",
                key_id,
            )
            if row is None:
                raise NotFoundError(f"no key {key_id!r}")
            if row["revoked_at"] is None:
                await tx.execute("UPDATE gw_keys SET revoked_at = ? WHERE id = ?", now, key_id)
                await self._bump(tx)
                row = {**row, "revoked_at": now}
        return ApiKey(**row)

    # -- what the replicas saw ------------------------------------------------------------

    async def window_stats(
        self, route: str, window_seconds: int, *, now: float | None = None
    ) -> WindowStats:
        """Requests, error rate and latency percentiles of ``route``'s backends over the
        last ``window_seconds`` seconds, every replica merged
        (:func:`hybridmesh.gateway.stats.window_stats`)."""
        from hybridmesh.gateway.stats import window_stats

        return await window_stats(self.store, route, window_seconds, now=now)

    async def mismatches(self, route: str, limit: int = 20) -> list[Mismatch]:
        """The newest kept mirror mismatches of ``route``, newest first."""
        from hybridmesh.gateway.mirror import recent_mismatches

        return await recent_mismatches(self.store, route, limit)

    # -- the snapshot ----------------------------------------------------------------------

    async def snapshot(self) -> Snapshot:
        """Routes, services and keys as of one revision (read in one transaction)."""
        async with self.store.transaction() as tx:
            revision = int(await tx.fetch_value("SELECT revision FROM gw_revision WHERE id = 1"))
            routes = await tx.fetch_all("SELECT spec FROM gw_routes ORDER BY name")
            services = await tx.fetch_all("SELECT name, base_url FROM services")
            keys = await tx.fetch_all(
                "SELECT id, consumer, route, digest, prefix, created_at, revoked_at "
                "FROM gw_keys WHERE revoked_at IS NULL"
            )
        table = RouteTable([Route.model_validate(loads(r["spec"])) for r in routes])
        return Snapshot(
            revision,
            table,
            {row["name"]: row["base_url"].rstrip("/") for row in services},
            {
                row["digest"]: ApiKey(
                    row["id"],
                    row["consumer"],
                    row["route"],
                    row["prefix"],
                    row["created_at"],
                    row["revoked_at"],
                )
                for row in keys
            },
        )


def _stored(row: dict[str, Any]) -> StoredRoute:
    return StoredRoute(
        Route.model_validate(loads(row["spec"])),
        int(row["revision"]),
        row["source"],
        float(row["updated_at"]),
    )


def _plan(current: dict[str, Route], routes: Sequence[Route], prune: bool) -> ApplyResult:
    return plan_apply(current, routes, lambda item: item.name, prune=prune)


class SnapshotWatcher:
    """Keeps a replica's snapshot current: reloads when the revision moves."""

    def __init__(
        self,
        state: GatewayState,
        on_change: Callable[[Snapshot], None],
        *,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.state = state
        self.on_change = on_change
        self.poll_seconds = poll_seconds
        self.current = Snapshot.empty()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: Any = None

    async def start(self) -> Snapshot:
        await self.reload()
        await self._listen()
        self._task = asyncio.create_task(self._run(), name="gateway:watch")
        return self.current

    async def reload(self) -> None:
        snapshot = await self.state.snapshot()
        if snapshot.revision != self.current.revision:
            self.current = snapshot
            self.on_change(snapshot)

    async def _listen(self) -> None:
        if self.state.store.dialect != "postgresql":
            return
        import asyncpg

        try:
            self._listener = await asyncpg.connect(self.state.store.url)
            await self._listener.add_listener(CHANNEL, lambda *_: self._wake.set())
        except Exception as error:  # polling still finds every change
            log.warning("gateway: cannot LISTEN for route changes (%s); polling", error)
            self._listener = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()
            try:
                if await self.state.revision() != self.current.revision:
                    await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the store is away: keep routing with what we have
                log.warning("gateway: reading route changes failed: %s", error)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()


__all__ = [
    "CHANNEL",
    "KEY_PREFIX",
    "ApiKey",
    "ApplyResult",
    "GatewayState",
    "Snapshot",
    "SnapshotWatcher",
    "StoredRoute",
    "key_digest",
]
