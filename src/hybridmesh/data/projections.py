"""Read models (CQRS projections): events consumed into a table exactly once, and rebuilt
from the log on demand.

A :class:`Projection` is defined in Python: a name, the event types it takes (a pattern,
NATS rules: ``erp.orders.*``), the database its table lives in, and three async functions
of a transaction: ``setup`` creates the table, ``apply`` writes one event into it, ``reset``
empties it for a rebuild::

    order_totals = Projection(
        "order-totals", "erp.orders.*", setup=create_table, apply=add_order, reset=empty_table
    )
    await order_totals.run(bus, registry=store)  # consumes until cancelled

Each event is applied in one transaction of the table's database that also moves the
projection's checkpoint (the highest log position applied, the count, the newest event's
time) and writes a receipt of the event (its source, id and position). A redelivered event
finds its receipt and is dropped; a handler that fails rolls back everything of its event,
and the bus delivers it again. So at-least-once delivery applies each event exactly once.

A rebuild empties the table and applies again every event the log still holds, in log
order. It first compares the receipts with the oldest event the log retains: when events
the projection applied are gone (the bus's retention removed them), it refuses, saying how
many and which positions, unless allowed to leave the gap; the projection is then recorded
as partial. While a rebuild runs, the projection's consumers wait (their applies are tried
again a few seconds later), so live events never overtake the rebuilt ones.

Projections are registered in the hybridmesh store (migration 16) with the import path
(``module:attribute``) of their definition, which the command line loads::

    hybridmesh projections list [--json]
    hybridmesh projections rebuild NAME [--module MODULE:ATTR] [--allow-gap] [--json]
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import (
    ConfigurationError,
    HybridMeshError,
    NotFoundError,
    Problem,
    StoreError,
    ValidationError,
)
from hybridmesh.core.ids import new_id
from hybridmesh.core.names import MAX_NAME_LENGTH, name_problem
from hybridmesh.events.backend import Delivery, LogSpan
from hybridmesh.events.bus import (
    Drop,
    EventBus,
    HandlerResult,
    Retry,
    Subscription,
    current_delivery,
)
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.events.subjects import validate_pattern
from hybridmesh.observability import get_logger
from hybridmesh.store import Store, Transaction, open_store
from hybridmesh.store.migrations import PROJECTION_TABLES

log = get_logger("hybridmesh.data.projections")

#: A projection named ``orders`` consumes as the consumer group ``projection-orders``.
GROUP_PREFIX = "projection-"
#: The longest projection name: its group name must be a name too.
MAX_PROJECTION_NAME = MAX_NAME_LENGTH - len(GROUP_PREFIX)
#: Events a rebuild applies per transaction.
REBUILD_BATCH = 500
#: Seconds a consumer waits before trying an event again while a rebuild runs.
PAUSE_RETRY = 5.0

#: ``setup`` and ``reset``: statements run in a transaction of the table's database.
Step = Callable[[Transaction], Awaitable[None]]
#: ``apply``: write one event into the table, in the transaction it is given.
Apply = Callable[[Transaction, CloudEvent], Awaitable[None]]


class Status(StrEnum):
    """What a projection was last seen doing."""

    IDLE = "idle"  # registered; no consumer has applied anything since
    RUNNING = "running"  # consumers apply events
    FAILING = "failing"  # the latest apply failed; the bus tries it again
    REBUILDING = "rebuilding"  # a rebuild runs; consumers wait
    REBUILD_FAILED = "rebuild-failed"  # a rebuild stopped part-way; consumers wait


class ProjectionError(HybridMeshError):
    """A projection could not do what was asked (its rebuild failed or was taken over)."""


@dataclass(frozen=True)
class Gap:
    """Events a projection applied that the log no longer holds: ``count`` of them, at
    positions ``lowest`` to ``highest``, while the log's oldest event is now at
    ``first_retained`` (None: the log holds no event at all)."""

    count: int
    lowest: int
    highest: int
    first_retained: int | None

    def describe(self) -> str:
        where = (
            f"position {self.lowest}"
            if self.lowest == self.highest
            else f"positions {self.lowest} to {self.highest}"
        )
        oldest = (
            "the log holds no event now"
            if self.first_retained is None
            else f"the log's oldest event is now at position {self.first_retained}"
        )
        return f"{self.count} event(s) it applied, at log {where}, are gone ({oldest})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "lowest": self.lowest,
            "highest": self.highest,
            "first_retained": self.first_retained,
        }


class ProjectionGapError(ProjectionError):
    """A rebuild would lose events: the log no longer holds some the projection applied."""

    def __init__(self, name: str, gap: Gap) -> None:
        self.name = name
        self.gap = gap
        super().__init__(
            f"projection {name!r} cannot be rebuilt from the log: {gap.describe()}; the "
            "bus's retention removed them, so a rebuild would leave them out of the table. "
            "Nothing was changed. Rebuild with --allow-gap (allow_gap=True) to apply what "
            "the log still holds and record the projection as partial."
        )


@dataclass(frozen=True)
class ProjectionInfo:
    """A projection as the registry knows it (figures as of its latest applied event)."""

    name: str
    pattern: str
    target: str
    import_path: str | None
    status: str
    checkpoint: int | None
    events_applied: int
    last_event_at: datetime | None
    missing_events: int
    missing_upto: int | None
    last_error: str | None
    rebuilt_at: datetime | None
    updated_at: datetime

    @property
    def group(self) -> str:
        return GROUP_PREFIX + self.name

    @property
    def partial(self) -> bool:
        """Whether a rebuild left out events the log had lost: the table lacks them."""
        return self.missing_events > 0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ProjectionInfo:
        return cls(
            name=row["name"],
            pattern=row["pattern"],
            target=row["target"],
            import_path=row["import_path"],
            status=row["status"],
            checkpoint=_int_or_none(row["checkpoint"]),
            events_applied=int(row["events_applied"]),
            last_event_at=_time_or_none(row["last_event_at"]),
            missing_events=int(row["missing_events"]),
            missing_upto=_int_or_none(row["missing_upto"]),
            last_error=row["last_error"],
            rebuilt_at=_time_or_none(row["rebuilt_at"]),
            updated_at=_time(row["updated_at"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pattern": self.pattern,
            "group": self.group,
            "target": self.target,
            "import_path": self.import_path,
            "status": self.status,
            "checkpoint": self.checkpoint,
            "events_applied": self.events_applied,
            "last_event_at": _iso(self.last_event_at),
            "partial": self.partial,
            "missing_events": self.missing_events,
            "missing_upto": self.missing_upto,
            "last_error": self.last_error,
            "rebuilt_at": _iso(self.rebuilt_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class RebuildProgress:
    """How far a rebuild has come: events ``applied`` and ``skipped`` so far, the log
    ``position`` it has read up to, and the log's span (``last`` grows when events come
    during the rebuild)."""

    applied: int
    skipped: int
    position: int | None
    first: int | None
    last: int | None


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild did. ``skipped`` counts the events it did not apply: bodies that are
    not CloudEvents, and repeats of an event applied already. ``lost`` is the gap this
    rebuild left (with ``allow_gap``); ``missing_events`` counts every event the table
    lacks for good, from this rebuild and earlier ones."""

    name: str
    applied: int
    skipped: int
    checkpoint: int | None
    lost: Gap | None
    missing_events: int
    missing_upto: int | None
    rebuilt_at: datetime

    @property
    def partial(self) -> bool:
        return self.missing_events > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "projection": self.name,
            "rebuilt": True,
            "applied": self.applied,
            "skipped": self.skipped,
            "checkpoint": self.checkpoint,
            "lost": None if self.lost is None else self.lost.to_dict(),
            "partial": self.partial,
            "missing_events": self.missing_events,
            "missing_upto": self.missing_upto,
            "rebuilt_at": _iso(self.rebuilt_at),
        }


ProgressCallback = Callable[[RebuildProgress], None]


class _Duplicate(Exception):
    """Rolls back the transaction of an event applied before."""


# -- SQL ---------------------------------------------------------------------------------------

_STATE_COLUMNS = (
    "checkpoint, events_applied, last_event_at, missing_events, missing_upto, rebuilt_at"
)
_HIGHER = "CASE WHEN checkpoint IS NULL OR checkpoint < ? THEN ? ELSE checkpoint END"

_NEW_CHECKPOINT = (
    "INSERT INTO projection_checkpoints (name, updated_at) VALUES (?, ?) "
    "ON CONFLICT (name) DO NOTHING"
)
_STATE = f"SELECT {_STATE_COLUMNS} FROM projection_checkpoints WHERE name = ?"
# A consumer's apply changes the checkpoint row first, as a rebuild does, so on PostgreSQL
# the two never wait for each other's locks in opposite orders; it changes nothing while a
# rebuild runs.
_ADVANCE_LIVE = f"""
UPDATE projection_checkpoints
SET checkpoint = {_HIGHER}, events_applied = events_applied + 1, last_event_at = ?,
    updated_at = ?
WHERE name = ? AND rebuild_id IS NULL
RETURNING {_STATE_COLUMNS}
"""
_RECEIPT = (
    "INSERT INTO projection_receipts (projection, source, event_id, position, applied_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (projection, source, event_id) DO NOTHING"
)
_BEGIN_REBUILD = f"""
UPDATE projection_checkpoints
SET rebuild_id = ?, checkpoint = NULL, events_applied = 0, last_event_at = NULL,
    missing_events = missing_events + ?,
    missing_upto = CASE WHEN missing_upto IS NULL OR missing_upto < ? THEN ? ELSE missing_upto END,
    updated_at = ?
WHERE name = ?
RETURNING {_STATE_COLUMNS}
"""
_HOLD_REBUILD = "UPDATE projection_checkpoints SET updated_at = ? WHERE name = ? AND rebuild_id = ?"
_ADVANCE_REBUILD = f"""
UPDATE projection_checkpoints
SET checkpoint = {_HIGHER}, events_applied = events_applied + ?,
    last_event_at = COALESCE(?, last_event_at), updated_at = ?
WHERE name = ? AND rebuild_id = ?
RETURNING {_STATE_COLUMNS}
"""
_END_REBUILD = f"""
UPDATE projection_checkpoints SET rebuild_id = NULL, rebuilt_at = ?, updated_at = ?
WHERE name = ? AND rebuild_id = ?
RETURNING {_STATE_COLUMNS}
"""
_GONE = (
    "SELECT COUNT(*) AS count, MIN(position) AS lowest, MAX(position) AS highest "
    "FROM projection_receipts WHERE projection = ? AND position IS NOT NULL"
)

_REGISTRY_COLUMNS = (
    "name, pattern, target, import_path, status, checkpoint, events_applied, last_event_at, "
    "missing_events, missing_upto, last_error, rebuilt_at, updated_at"
)
_REGISTER = """
INSERT INTO projections (name, pattern, target, import_path, status, checkpoint,
    events_applied, last_event_at, missing_events, missing_upto, rebuilt_at, created_at,
    updated_at)
VALUES (?, ?, ?, ?, 'idle', ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET pattern = excluded.pattern, target = excluded.target,
    import_path = COALESCE(excluded.import_path, projections.import_path),
    checkpoint = excluded.checkpoint, events_applied = excluded.events_applied,
    last_event_at = excluded.last_event_at, missing_events = excluded.missing_events,
    missing_upto = excluded.missing_upto, rebuilt_at = excluded.rebuilt_at,
    updated_at = excluded.updated_at
"""
_MIRROR = """
UPDATE projections SET status = ?, checkpoint = ?, events_applied = ?, last_event_at = ?,
    missing_events = ?, missing_upto = ?, rebuilt_at = ?, last_error = ?, updated_at = ?
WHERE name = ?
"""
_SET_STATUS = "UPDATE projections SET status = ?, last_error = ?, updated_at = ? WHERE name = ?"


# -- the projection ----------------------------------------------------------------------------


class Projection:
    """A read model kept by consuming events; see the module docstring.

    ``name`` follows the name rule (:mod:`hybridmesh.core.names`), at most
    :data:`MAX_PROJECTION_NAME` characters: the projection consumes as the consumer group
    ``projection-<name>``. ``pattern`` selects the event types (NATS rules). ``database``
    is where the table lives: None for the hybridmesh store the projection is opened with,
    a database URL (opened by :meth:`open`, closed by :meth:`close`), or an open
    :class:`Store`. ``setup`` must be safe to run at every start (``CREATE TABLE IF NOT
    EXISTS``); ``apply`` and ``reset`` write through the transaction they are given, never
    through the store.

    ``import_path`` (``module:attribute``) is how the command line finds this object to
    rebuild it; by default it is the module that made it and the name it has there.
    ``max_deliveries`` bounds the attempts of an event whose apply keeps failing before the
    bus moves it to the dead letters (the table then lacks it until it is replayed or the
    projection is rebuilt).
    """

    def __init__(
        self,
        name: str,
        pattern: str,
        *,
        apply: Apply,
        setup: Step,
        reset: Step,
        database: str | Store | None = None,
        import_path: str | None = None,
        max_deliveries: int = 5,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        _check_name(name)
        validate_pattern(pattern)
        self.name = name
        self.pattern = pattern
        self.database = database
        self.max_deliveries = max_deliveries
        self.clock = clock
        self._apply = apply
        self._setup = setup
        self._reset = reset
        self._import_path = import_path
        # Where it was made, to find the attribute it is bound to (see import_path).
        self._module: str | None = sys._getframe(1).f_globals.get("__name__")
        self._store: Store | None = None
        self._registry: Store | None = None
        self._owns_store = False

    @property
    def group(self) -> str:
        """The consumer group the projection consumes as."""
        return GROUP_PREFIX + self.name

    @property
    def import_path(self) -> str | None:
        """``module:attribute`` of this object: as given, else the module that made it and
        the name it has there; None when there is none (made in a function or a script)."""
        if self._import_path is not None:
            return self._import_path
        module = sys.modules.get(self._module or "")
        if module is None or self._module == "__main__":
            return None
        for attribute, value in vars(module).items():
            if value is self:
                return f"{self._module}:{attribute}"
        return None

    @property
    def store(self) -> Store:
        """The database of the table (once :meth:`open`)."""
        return self._opened()[0]

    def __repr__(self) -> str:
        return f"<Projection {self.name} {self.pattern}>"

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, registry: Store) -> Projection:
        """Get ready to consume and rebuild: open the table's database, create the
        projection's bookkeeping there (in a database other than ``registry``), run
        ``setup``, and register the projection in ``registry`` (the hybridmesh store).
        Idempotent; returns the projection."""
        if self._registry is not None:
            if self._registry is not registry:
                raise ConfigurationError(f"projection {self.name!r} is open on another store")
            return self
        await registry.upgrade()
        store, owned = await self._target(registry)
        try:
            now = self._now()
            if store is not registry:
                async with store.transaction() as tx:
                    for statement in PROJECTION_TABLES:
                        await tx.execute(statement)
            async with store.transaction() as tx:
                await self._setup(tx)
                await tx.execute(_NEW_CHECKPOINT, self.name, now)
            state = await store.fetch_one(_STATE, self.name)
            assert state is not None
            await self._register(registry, store, state, now)
        except BaseException:
            if owned:
                await store.close()
            raise
        self._store, self._registry, self._owns_store = store, registry, owned
        return self

    async def close(self) -> None:
        """Record the projection idle (when it was running) and close the table's database
        if :meth:`open` opened it. Idempotent."""
        registry, store = self._registry, self._store
        if registry is None or store is None:
            return
        self._registry = self._store = None
        try:
            await registry.execute(
                _SET_STATUS + " AND status = ?",
                Status.IDLE.value,
                None,
                self._now(),
                self.name,
                Status.RUNNING.value,
            )
        except StoreError as error:
            log.warning("projection %s: could not record it idle: %s", self.name, error)
        finally:
            if self._owns_store:
                await store.close()

    def attach(self, bus: EventBus) -> Subscription:
        """Consume into the table as the group ``projection-<name>`` of ``bus`` (from the
        oldest event the log retains, for a new group). :meth:`open` first."""
        self._opened()
        return bus.subscribe(
            self.pattern,
            self._on_event,
            group=self.group,
            start="earliest",
            max_deliveries=self.max_deliveries,
        )

    async def run(
        self, bus: EventBus, *, registry: Store | None = None, stop: asyncio.Event | None = None
    ) -> None:
        """Consume into the table until ``stop`` is set or the task is cancelled: open on
        ``registry`` (unless open already), attach to ``bus`` and start it; at the end,
        close the bus and the projection. For a process or task that runs this projection
        on a bus of its own: to run several projections on one bus, :meth:`open` and
        :meth:`attach` each, and run the bus."""
        if registry is not None:
            await self.open(registry)
        self._opened()
        try:
            self.attach(bus)
            await bus.start()
            await self._set_status(Status.RUNNING)
            await (stop or asyncio.Event()).wait()
        finally:
            await bus.close()
            await self.close()

    async def info(self) -> ProjectionInfo:
        """The projection as the registry knows it."""
        return await get_projection(self._opened()[1], self.name)

    # -- consuming -------------------------------------------------------------------------

    async def _on_event(self, event: CloudEvent) -> HandlerResult:
        """The bus handler: apply ``event`` once (see the module docstring)."""
        delivery = current_delivery()
        position = None if delivery is None else _position_of(delivery)
        try:
            state = await self._apply_live(event, position)
        except _Duplicate:
            return Drop("applied before")
        except Exception as error:
            await self._set_status(Status.FAILING, f"{type(error).__name__}: {error}")
            raise
        if state is None:
            return Retry(PAUSE_RETRY, f"projection {self.name!r} is being rebuilt")
        return None

    async def _apply_live(self, event: CloudEvent, position: int | None) -> dict[str, Any] | None:
        """Apply ``event`` with its checkpoint and receipt in one transaction; the
        checkpoint row as it now is, or None while a rebuild runs (nothing was written).
        Raises :class:`_Duplicate` for an event applied before (nothing was written)."""
        store, registry = self._opened()
        now = self._now()
        async with store.transaction() as tx:
            state = await tx.fetch_one(
                _ADVANCE_LIVE, position, position, _event_time(event, now), now, self.name
            )
            if state is None:
                return None
            if not await tx.execute(_RECEIPT, self.name, event.source, event.id, position, now):
                raise _Duplicate
            await self._apply(tx, event)
            if store is registry:
                await self._mirror(tx, state, Status.RUNNING)
        if store is not registry:
            await self._mirror_quietly(state, Status.RUNNING)
        return state

    # -- rebuilding ------------------------------------------------------------------------

    async def gap(self, bus: EventBus) -> Gap | None:
        """The events this projection applied that ``bus``'s log no longer holds, or None
        when it holds every one: what a rebuild now would leave out."""
        store, _ = self._opened()
        span = await bus.log_span()
        if span.first is None:  # the log holds nothing: every event applied is gone
            row = await store.fetch_one(_GONE, self.name)
        else:
            row = await store.fetch_one(f"{_GONE} AND position < ?", self.name, span.first)
        if row is None or not row["count"]:
            return None
        return Gap(int(row["count"]), int(row["lowest"]), int(row["highest"]), span.first)

    async def rebuild(
        self,
        bus: EventBus,
        *,
        allow_gap: bool = False,
        progress: ProgressCallback | None = None,
        batch_size: int = REBUILD_BATCH,
    ) -> RebuildResult:
        """Empty the table (``reset``) and apply every event of the log that matches the
        pattern, oldest first, ``batch_size`` per transaction, up to the newest.

        Raises :class:`ProjectionGapError`, changing nothing, when the log has lost events
        the projection applied; with ``allow_gap`` it rebuilds from what remains and records
        the projection partial. While it runs, the projection's consumers wait; if it fails
        part-way (an apply raised), they go on waiting until a rebuild succeeds. Raises
        :class:`ProjectionError` when another rebuild of the projection took over.
        """
        registry = self._opened()[1]
        lost = await self.gap(bus)
        if lost is not None and not allow_gap:
            raise ProjectionGapError(self.name, lost)
        before = await get_projection(registry, self.name)
        rebuild_id = new_id()
        await self._mirror(registry, await self._begin_rebuild(rebuild_id, lost), Status.REBUILDING)
        try:
            span = await bus.log_span()
            applied, skipped = await self._replay(bus, rebuild_id, span, progress, batch_size)
            now = self._now()
            state = await self._end_rebuild(rebuild_id, now)
        except BaseException as error:
            why = f"{type(error).__name__}: {error}"
            await asyncio.shield(self._set_status(Status.REBUILD_FAILED, why))
            raise
        status = (
            Status.RUNNING if before.status in (Status.RUNNING, Status.FAILING) else Status.IDLE
        )
        await self._mirror(registry, state, status)
        return RebuildResult(
            name=self.name,
            applied=applied,
            skipped=skipped,
            checkpoint=_int_or_none(state["checkpoint"]),
            lost=lost,
            missing_events=int(state["missing_events"]),
            missing_upto=_int_or_none(state["missing_upto"]),
            rebuilt_at=_time(now),
        )

    async def _begin_rebuild(self, rebuild_id: str, lost: Gap | None) -> dict[str, Any]:
        """Make consumers wait, forget every receipt, record what the log lost, and empty
        the table: one transaction, with the checkpoint row locked first. Returns the
        checkpoint row as it now is."""
        store, _ = self._opened()
        count, upto = (lost.count, lost.highest) if lost is not None else (0, None)
        async with store.transaction() as tx:
            state = await tx.fetch_one(
                _BEGIN_REBUILD, rebuild_id, count, upto, upto, self._now(), self.name
            )
            if state is None:
                raise ConfigurationError(f"projection {self.name!r} has no checkpoint row")
            await tx.execute("DELETE FROM projection_receipts WHERE projection = ?", self.name)
            await self._reset(tx)
        return state

    async def _end_rebuild(self, rebuild_id: str, now: float) -> dict[str, Any]:
        """Let consumers go on; the checkpoint row as it now is."""
        async with self._opened()[0].transaction() as tx:
            state = await tx.fetch_one(_END_REBUILD, now, now, self.name, rebuild_id)
        if state is None:
            raise self._taken_over()
        return state

    async def _replay(
        self,
        bus: EventBus,
        rebuild_id: str,
        span: LogSpan,
        progress: ProgressCallback | None,
        batch_size: int,
    ) -> tuple[int, int]:
        """Apply what the log holds, in order, until a read finds nothing more; how many
        were applied and skipped."""
        applied = skipped = 0
        position: int | None = None
        last = span.last
        if progress is not None:
            progress(RebuildProgress(0, 0, None, span.first, last))
        reader = await bus.open_reader(self.pattern, start="earliest")
        try:
            while deliveries := await reader.read(batch_size, wait=0):
                done, passed = await self._apply_batch(deliveries, rebuild_id)
                applied, skipped = applied + done, skipped + passed
                position = _position_of(deliveries[-1])
                if position is not None and (last is None or position > last):
                    last = position
                if progress is not None:
                    progress(RebuildProgress(applied, skipped, position, span.first, last))
        finally:
            await reader.close()
        return applied, skipped

    async def _apply_batch(
        self, deliveries: Sequence[Delivery], rebuild_id: str
    ) -> tuple[int, int]:
        """Apply ``deliveries`` (read from the log) in one transaction that holds the
        rebuild's claim on the checkpoint row; how many were applied and skipped."""
        store, registry = self._opened()
        now = self._now()
        applied = skipped = 0
        highest: int | None = None
        newest: float | None = None
        async with store.transaction() as tx:
            if not await tx.execute(_HOLD_REBUILD, now, self.name, rebuild_id):
                raise self._taken_over()
            for delivery in deliveries:
                event, position = delivery.event, _position_of(delivery)
                if event is None:  # never a CloudEvent: consumers dead-letter it, too
                    skipped += 1
                    continue
                fresh = await tx.execute(_RECEIPT, self.name, event.source, event.id, position, now)
                if not fresh:  # the same event twice in the log (published again)
                    skipped += 1
                    continue
                try:
                    await self._apply(tx, event)
                except Exception as error:
                    raise ProjectionError(
                        f"projection {self.name!r}: applying {event.type} {event.id} (log "
                        f"position {position}) failed during the rebuild: "
                        f"{type(error).__name__}: {error}. The projection's consumers wait "
                        "until a rebuild succeeds: fix the cause and rebuild again."
                    ) from error
                applied += 1
                if position is not None and (highest is None or position > highest):
                    highest = position
                newest = _event_time(event, now)
            state = await tx.fetch_one(
                _ADVANCE_REBUILD, highest, highest, applied, newest, now, self.name, rebuild_id
            )
            if state is None:
                raise self._taken_over()
            if store is registry:
                await self._mirror(tx, state, Status.REBUILDING)
        if store is not registry:
            await self._mirror_quietly(state, Status.REBUILDING)
        return applied, skipped

    def _taken_over(self) -> ProjectionError:
        return ProjectionError(
            f"projection {self.name!r}: another rebuild took over; this one stopped"
        )

    # -- the registry ----------------------------------------------------------------------

    async def _target(self, registry: Store) -> tuple[Store, bool]:
        """The table's database, and whether it was opened here (and is closed here)."""
        database = self.database
        if database is None or database == registry.url:
            return registry, False
        if isinstance(database, Store):
            return database, False
        return await open_store(database), True

    async def _register(
        self, registry: Store, store: Store, state: dict[str, Any], now: float
    ) -> None:
        known = await registry.fetch_one(
            "SELECT pattern FROM projections WHERE name = ?", self.name
        )
        if known is not None and known["pattern"] != self.pattern:
            log.warning(
                "projection %s now takes %s (it took %s): rebuild it, or its table keeps the "
                "events of the old pattern and lacks the new one's",
                self.name,
                self.pattern,
                known["pattern"],
            )
        await registry.execute(
            _REGISTER,
            self.name,
            self.pattern,
            store.display_url,
            self.import_path,
            state["checkpoint"],
            state["events_applied"],
            state["last_event_at"],
            state["missing_events"],
            state["missing_upto"],
            state["rebuilt_at"],
            now,
            now,
        )

    async def _mirror(self, target: Transaction, state: dict[str, Any], status: Status) -> None:
        """Copy the checkpoint row ``state`` into the registry row, with ``status``."""
        await target.execute(
            _MIRROR,
            status.value,
            state["checkpoint"],
            state["events_applied"],
            state["last_event_at"],
            state["missing_events"],
            state["missing_upto"],
            state["rebuilt_at"],
            None,
            self._now(),
            self.name,
        )

    async def _mirror_quietly(self, state: dict[str, Any], status: Status) -> None:
        """:meth:`_mirror` after the event committed elsewhere: a failure is only logged
        (the event is applied; the next one brings the registry up to date)."""
        try:
            await self._mirror(self._opened()[1], state, status)
        except StoreError as error:
            log.warning("projection %s: could not update the registry: %s", self.name, error)

    async def _set_status(self, status: Status, error: str | None = None) -> None:
        """Record ``status`` (and why it failed) in the registry; a failure is only logged."""
        registry = self._registry
        if registry is None:
            return
        try:
            await registry.execute(_SET_STATUS, status.value, error, self._now(), self.name)
        except StoreError as failure:
            log.warning("projection %s: could not record %s: %s", self.name, status, failure)

    def _opened(self) -> tuple[Store, Store]:
        """The table's database and the registry; ``ConfigurationError`` before :meth:`open`."""
        if self._store is None or self._registry is None:
            raise ConfigurationError(
                f"projection {self.name!r} is not open: call open(store) with the hybridmesh "
                "store first (or run(bus, registry=store))"
            )
        return self._store, self._registry

    def _now(self) -> float:
        return self.clock.now().timestamp()


# -- the registry, for the command line ---------------------------------------------------------


async def list_projections(store: Store) -> list[ProjectionInfo]:
    """Every registered projection, by name."""
    rows = await store.fetch_all(f"SELECT {_REGISTRY_COLUMNS} FROM projections ORDER BY name")
    return [ProjectionInfo.from_row(row) for row in rows]


async def get_projection(store: Store, name: str) -> ProjectionInfo:
    """One registered projection; raises ``NotFoundError``."""
    row = await store.fetch_one(f"SELECT {_REGISTRY_COLUMNS} FROM projections WHERE name = ?", name)
    if row is None:
        raise NotFoundError(
            f"no projection {name!r} is registered (a projection registers when it is "
            "opened: run it once, or give its definition as MODULE:ATTRIBUTE)"
        )
    return ProjectionInfo.from_row(row)


def load_projection(path: str) -> Projection:
    """The :class:`Projection` at ``path`` (``module:attribute``): the object itself, or
    what calling it with no arguments returns. Raises ``ConfigurationError`` saying why
    it cannot be loaded."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(
            f"{path!r} is not an import path: write MODULE:ATTRIBUTE, such as "
            "myapp.read_models:order_totals"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigurationError(f"{path!r}: cannot import {module_name!r}: {error}") from None
    try:
        found = getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(f"{path!r}: module {module_name!r} has no {attribute!r}") from None
    if callable(found) and not isinstance(found, Projection):
        found = found()
    if not isinstance(found, Projection):
        raise ConfigurationError(
            f"{path!r} is a {type(found).__name__}, not a hybridmesh Projection"
        )
    if found._import_path is None:
        found._import_path = path
    return found


# -- helpers -----------------------------------------------------------------------------------


def _check_name(name: str) -> None:
    problem = name_problem(name)
    if problem is None and len(name) > MAX_PROJECTION_NAME:
        problem = (
            f"{name!r} is too long: a projection's name is at most {MAX_PROJECTION_NAME} "
            f"characters, so that its consumer group {GROUP_PREFIX}<name> is a name"
        )
    if problem is not None:
        raise ValidationError([Problem(f"projection {problem}", field="name")])


def _position_of(delivery: Delivery) -> int | None:
    return None if delivery.position is None else int(delivery.position)


def _event_time(event: CloudEvent, now: float) -> float:
    """The event's own time, or when it was applied if it has none."""
    return event.time.timestamp() if event.time is not None else now


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), UTC)


def _time_or_none(epoch: float | None) -> datetime | None:
    return None if epoch is None else _time(epoch)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


__all__ = [
    "GROUP_PREFIX",
    "MAX_PROJECTION_NAME",
    "PAUSE_RETRY",
    "REBUILD_BATCH",
    "Apply",
    "Gap",
    "ProgressCallback",
    "Projection",
    "ProjectionError",
    "ProjectionGapError",
    "ProjectionInfo",
    "RebuildProgress",
    "RebuildResult",
    "Status",
    "Step",
    "get_projection",
    "list_projections",
    "load_projection",
]
