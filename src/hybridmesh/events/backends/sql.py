"""The event log in the state store: SQLite (the embedded default) and PostgreSQL.

Events are rows of ``event_log`` (migration 2), numbered by an ever-growing ``seq`` and
spread over ``partitions`` partitions by their ``partitionkey`` (or id). Each consumer group
keeps, per partition, a row in ``event_positions``: the last seq it is done with, the
attempts made on the next event, when a retry may run, and who holds the partition's lease.

- **publish** appends a whole batch in one transaction. ``(source, id)`` is unique among
  retained events, so a second publish of the same event is ignored; replays bypass that.
  On PostgreSQL publishers take an advisory lock, so sequence numbers commit in order (a
  reader never passes a seq that commits later), and NOTIFY waiting fetches: all of it
  one statement, so one round trip.
- **fetch** looks at the group's free partitions that have events past their position in
  one UPDATE (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so processes share the work): each
  gets a range from its first pending seq (``scan_span`` seqs at most, up to the newest
  committed seq), the group's pattern is tested on the ``type`` column of that range in SQL
  (``_sql_queries.type_filter``, through index entries alone), and a partition holding
  something the group wants is leased while one holding nothing of it is moved to the end
  of its range at once. Then one SELECT reads the leased partitions' events. So a group
  that wants one type in a thousand passes over the other 999 in bulk, without leasing or
  reading them, and is served as promptly as one that wants them all.
- **settle** moves the position with an UPDATE that only applies while the batch's lease is
  still the partition's current one: a consumer whose lease expired and was taken over
  changes nothing.

Publishes and settles that are in flight together are written together (group commit), so
a busy consumer pays about one round trip per fetch and one per round of settles.

Every process that shares a database must use the same number of partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, Literal, TypeVar

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import (
    ConfigurationError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    ValidationError,
)
from hybridmesh.core.ids import new_id
from hybridmesh.events.backend import (
    BackendUnavailableError,
    DeadLetter,
    Delivery,
    GroupSpec,
    LogSpan,
    PartitionBatch,
    Settlement,
)
from hybridmesh.events.backends import _sql_queries as q
from hybridmesh.events.backends._sql_batches import (
    NOTHING,
    Lease,
    Look,
    Scan,
    SettleWrite,
    given_back,
    plan_batches,
    settle_rows,
)
from hybridmesh.events.backends._sql_log import LogRecorder, LogRow, SettleRow
from hybridmesh.events.backends._sql_postgres import PostgresLogRecorder
from hybridmesh.events.backends._sql_reader import Found, SqlLogReader
from hybridmesh.events.backends._sql_retention import TRIM_BATCH, Retention, trim_log
from hybridmesh.events.backends._sql_sqlite import SqliteLogRecorder
from hybridmesh.events.backends._sql_wakeup import Wakeup, wait_for
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.events.subjects import matches, validate_pattern
from hybridmesh.observability import get_logger
from hybridmesh.store import Store, Transaction, open_store
from hybridmesh.store.group_commit import GroupCommit

log = get_logger("hybridmesh.events.sql")
T = TypeVar("T")

#: Fetches start a background :meth:`SqlEventBackend.trim` at most this often (seconds).
TRIM_EVERY = 60.0
# An append that lost its connection is made again after these pauses (seconds, doubling).
_FIRST_PAUSE = 0.05
_MAX_PAUSE = 1.0
_CHECK_TIMEOUT = 2.0  # seconds a health check waits for the database
#: A look reads at most this many seqs of a partition: what a look costs a group that
#: wants few of the log's types is bounded (tens of milliseconds), and a fetch goes on
#: looking at once while it passes over more.
SCAN_SPAN = 65_536


class SqlEventBackend:
    """An :class:`~hybridmesh.events.backend.EventBackend` on a :class:`Store`.

    ``partitions`` (default 16) bounds how many consumers of one group work in parallel.
    ``poll_interval`` (default 0.05 s) is how often a waiting fetch looks again by itself:
    it sees other processes' SQLite writes that way, and leases that expired on both
    databases (publishes in this process, NOTIFY on PostgreSQL and retries of this
    process's consumers falling due wake it at once). While a group's looks keep finding
    nothing, each waits twice as long as the one before, up to ``idle_poll_interval``
    (default 0.5 s): an idle consumer costs a few queries a second, not twenty. A look that
    passes over events of other types is not idle: the next waits ``poll_interval`` again.
    ``scan_span`` (default :data:`SCAN_SPAN`) bounds the seqs of a partition one look reads.
    ``retention`` (default: keep everything) is applied by :meth:`trim`, which fetches
    start in the background at most once a minute. ``publish_timeout`` (default 10 s) is
    how long a publish or a settle keeps trying when the database connection is lost.

    The backend uses the store but does not close it, unless it was opened by :meth:`open`.
    """

    name = "sql"

    def __init__(
        self,
        store: Store,
        *,
        partitions: int = 16,
        clock: Clock = SYSTEM_CLOCK,
        poll_interval: float = 0.05,
        retention: Retention | None = None,
        idle_poll_interval: float = 0.5,
        publish_timeout: float = 10.0,
        scan_span: int = SCAN_SPAN,
    ) -> None:
        if partitions < 1:
            raise ConfigurationError("an event log needs at least one partition")
        if poll_interval <= 0:
            raise ConfigurationError("poll_interval must be more than 0 seconds")
        if scan_span < 1:
            raise ConfigurationError("scan_span must be at least 1")
        self.scan_span = scan_span
        self.store = store
        self.partitions = partitions
        self.publish_timeout = publish_timeout
        self.clock = clock
        self.poll_interval = poll_interval
        self.idle_poll_interval = max(idle_poll_interval, poll_interval)
        self._idle: dict[str, float] = {}  # a group's next wait, while its looks find nothing
        self.retention = retention
        self.recorder = recorder_for(store)
        self._publishes: GroupCommit[list[LogRow], None] = GroupCommit(
            self._write_events, "hybridmesh-events-publish"
        )
        self._settles: GroupCommit[SettleWrite, None] = GroupCommit(
            self._write_settles, "hybridmesh-events-settle"
        )
        self._wakeup = Wakeup()
        self._listener = self.recorder.listener(store.url, self._wakeup, clock, self._wants)
        self._fetching: dict[str, int] = {}  # the patterns of the fetches in progress
        self._groups: set[str] = set()
        self._owns_store = False
        self._closed = False
        self._last_trim: float | None = None
        self._trim_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        url: str | None = None,
        *,
        partitions: int = 16,
        clock: Clock = SYSTEM_CLOCK,
        poll_interval: float = 0.05,
        retention: Retention | None = None,
        idle_poll_interval: float = 0.5,
        publish_timeout: float = 10.0,
        scan_span: int = SCAN_SPAN,
    ) -> SqlEventBackend:
        """Open the store at ``url`` (default: the embedded SQLite file), upgrade its
        schema, and return a backend that closes the store when it is closed."""
        store = await open_store(url)
        try:
            await store.upgrade()
            backend = cls(
                store,
                partitions=partitions,
                clock=clock,
                poll_interval=poll_interval,
                retention=retention,
                idle_poll_interval=idle_poll_interval,
                publish_timeout=publish_timeout,
                scan_span=scan_span,
            )
        except BaseException:
            await store.close()
            raise
        backend._owns_store = True
        return backend

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the event tables if they are missing (the store's migrations); on
        PostgreSQL, start listening for publishes. Idempotent."""
        await self.store.upgrade()
        if self._listener is not None:
            await self._listener.ensure()

    async def check(self) -> None:
        """Raise :class:`BackendUnavailableError` unless the database answers now."""
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT):
                await self.store.fetch_value("SELECT 1")
        except (StoreError, TimeoutError) as error:
            raise BackendUnavailableError(
                f"the event log's database did not answer: {type(error).__name__}: {error}"
            ) from error

    async def close(self) -> None:
        """Stop listening and trimming; close the store if :meth:`open` opened it."""
        if self._closed:
            return
        self._closed = True
        self._wakeup.fire()
        await self._publishes.drain()
        await self._settles.drain()
        if self._trim_task is not None:
            self._trim_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._trim_task
        if self._listener is not None:
            await self._listener.close()
        if self._owns_store:
            await self.store.close()

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, events: Sequence[CloudEvent], *, group: str | None = None) -> None:
        """Append ``events`` in one transaction (see the module docstring for dedupe)."""
        if not events:
            return
        for event in events:
            event.validate()
        now = self._now()
        await self._publishes.submit([self._row(event, group, now) for event in events])
        if any(self._wanted_type(t) for t in {event.type for event in events}):
            self._wakeup.fire()

    def log_rows(self, events: Sequence[CloudEvent], *, group: str | None = None) -> list[LogRow]:
        """The rows that append ``events`` (already validated, as the bus does), for a
        writer that appends them within its own writes to this backend's store through
        :attr:`recorder`; call :meth:`appended` once they committed."""
        now = self._now()
        return [self._row(event, group, now) for event in events]

    def appended(self) -> None:
        """Events of :meth:`log_rows` were committed: wake local consumers."""
        self._wakeup.fire()

    def _wants(self, types: str) -> bool:
        """Whether a fetch in progress here takes one of ``types`` (a NOTIFY's payload:
        space-separated; empty means they are unknown, so yes)."""
        return not types or any(self._wanted_type(t) for t in types.split())

    def _wanted_type(self, event_type: str) -> bool:
        return any(matches(pattern, event_type) for pattern in self._fetching)

    async def _write_events(self, batches: list[list[LogRow]]) -> None:
        rows = [row for batch in batches for row in batch]
        # One round trip (or hop), one commit.
        await self._retrying(lambda: self._append(self.store, rows), "take the events")

    async def _retrying(self, write: Callable[[], Awaitable[None]], what: str) -> None:
        """Run ``write``; when the connection is lost (PostgreSQL restarted, or terminated
        the session), run it again on a new connection, backing off, until
        ``publish_timeout`` has passed; then :class:`BackendUnavailableError`.

        Only for writes that are safe to make twice, in case the lost attempt committed:
        appends (an event's (source, id) keeps it from being stored twice) and settles
        (they apply only while the batch's lease is current, and a committed settle ended
        it). So a publish returns only once its events are stored, or fails.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        pause = _FIRST_PAUSE
        while True:
            try:
                await write()
                return
            except StoreUnavailableError as error:
                if loop.time() + pause > deadline:
                    raise BackendUnavailableError(
                        f"the event log's database did not {what} within "
                        f"{self.publish_timeout:g} s: {error}"
                    ) from error
                log.warning("event log: the database connection was lost (%s); trying again", error)
                await asyncio.sleep(pause)
                pause = min(pause * 2, _MAX_PAUSE)

    def _row(self, event: CloudEvent, group: str | None, now: float) -> LogRow:
        partition = q.partition_of(event, self.partitions)
        body = event.to_json().decode()
        return LogRow(event.id, event.source, event.type, partition, group, body, now)

    async def _append(self, queries: Transaction, rows: list[LogRow]) -> None:
        await self.recorder.append(queries, rows)

    # -- groups ----------------------------------------------------------------------------

    async def delete_group(self, name: str) -> None:
        """Forget group ``name`` and its positions; its dead letters stay."""
        async with self.store.transaction() as tx:
            await tx.execute("DELETE FROM event_positions WHERE group_name = ?", name)
            await tx.execute("DELETE FROM event_groups WHERE name = ?", name)

    async def ensure_group(self, spec: GroupSpec) -> None:
        """Create the group (at the oldest retained event, or after the newest, as
        ``spec.start`` says) or update its settings. Idempotent."""
        validate_pattern(spec.pattern)
        now = self._now()
        async with self.store.transaction() as tx:
            await tx.execute(
                q.UPSERT_GROUP,
                spec.name,
                spec.pattern,
                spec.start,
                spec.max_deliveries,
                float(spec.ack_wait),
                now,
                now,
            )
            existing = int(
                await tx.fetch_value(
                    "SELECT COUNT(*) FROM event_positions WHERE group_name = ?", spec.name
                )
            )
            if existing == 0:
                start = 0
                if spec.start == "latest":
                    start = int(await tx.fetch_value("SELECT COALESCE(MAX(seq), 0) FROM event_log"))
                rows = [(spec.name, partition, start) for partition in range(self.partitions)]
                await tx.executemany(q.INSERT_POSITION, rows)
            elif existing != self.partitions:
                raise ConfigurationError(
                    f"group {spec.name!r} has {existing} partitions in the database but this "
                    f"backend uses {self.partitions}: every process must use the same number"
                )
        self._groups.add(spec.name)

    async def _check_group(self, name: str) -> None:
        if name in self._groups:
            return
        if await self.store.fetch_value("SELECT 1 FROM event_groups WHERE name = ?", name) is None:
            raise NotFoundError(f"consumer group {name!r} does not exist; ensure_group creates it")
        self._groups.add(name)

    # -- reading without a group -----------------------------------------------------------

    async def open_reader(
        self, pattern: str, *, start: Literal["earliest", "latest"] = "latest"
    ) -> SqlLogReader:
        """A reader of the events whose type matches ``pattern``, from the oldest retained
        one or after the newest, that keeps its place in this process only (see
        :class:`~hybridmesh.events.backend.EventReader`)."""
        validate_pattern(pattern)
        position = 0
        if start == "latest":
            position = int(await self.store.fetch_value(q.NEWEST_SEQ))
        return SqlLogReader(self, pattern, position)

    async def log_span(self) -> LogSpan:
        """The oldest and newest seq the log holds now (retention trims the oldest)."""
        row = await self.store.fetch_one(
            "SELECT MIN(seq) AS first, MAX(seq) AS last FROM event_log"
        )
        if row is None or row["first"] is None:
            return LogSpan(None, None)
        return LogSpan(int(row["first"]), int(row["last"]))

    async def _read_log(self, reader: SqlLogReader, max_events: int, wait: float) -> list[Delivery]:
        async def look() -> Found[Delivery]:
            return await reader.look(self.store, self.recorder, max_events, self.scan_span)

        return await self._look_until(reader.key, reader.pattern, wait, look)

    def _forget(self, reader: SqlLogReader) -> None:
        self._idle.pop(reader.key, None)

    # -- consuming -------------------------------------------------------------------------

    async def fetch(
        self, spec: GroupSpec, consumer: str, *, max_events: int, wait: float
    ) -> list[PartitionBatch]:
        """Lease up to ``max_events`` events, in batches of one partition each, waiting up
        to ``wait`` seconds (real time) for some. Raises ``NotFoundError`` for a group that
        :meth:`ensure_group` never created."""
        await self._check_group(spec.name)
        if max_events < 1:
            return []
        self._maybe_trim()

        async def look() -> Found[PartitionBatch]:
            found = await self._lease(spec, consumer, max_events)
            return Found(found.batches, found.passed_over, found.cut_short)

        return await self._look_until(spec.name, spec.pattern, wait, look)

    async def _look_until(
        self, idle_key: str, pattern: str, wait: float, look: Callable[[], Awaitable[Found[T]]]
    ) -> list[T]:
        """Look (``look()``) until something is found or ``wait`` seconds (real time) have
        passed, pausing between looks that found nothing until a publish of a type that
        ``pattern`` matches wakes this process, or the pause (kept under ``idle_key``) ends."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait, 0.0)
        if wait > 0 and self._listener is not None:
            await self._listener.ensure()
        # Publishes wake this fetch only for the events it takes, from now on.
        self._fetching[pattern] = self._fetching.get(pattern, 0) + 1
        try:
            while True:
                waiter = self._wakeup.waiter()  # before looking, so no publish slips through
                found = await look()
                if found.items:
                    self._idle.pop(idle_key, None)
                    return found.items
                if found.passed_over:
                    # Events of other types flow: the reader is not idle, and what it
                    # wants may come any moment. A look cut short goes on at once.
                    self._idle.pop(idle_key, None)
                    if found.cut_short:
                        continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                # Each look that finds nothing makes the next one wait twice as long, up to
                # idle_poll_interval; a wake-up starts over at poll_interval.
                interval = self._idle.get(idle_key, self.poll_interval)
                await wait_for(waiter, min(remaining, interval))
                if self._closed:
                    return []
                if waiter.is_set():
                    self._idle.pop(idle_key, None)
                else:
                    self._idle[idle_key] = min(interval * 2, self.idle_poll_interval)
        finally:
            left = self._fetching[pattern] - 1
            if left:
                self._fetching[pattern] = left
            else:
                del self._fetching[pattern]

    async def _lease(self, spec: GroupSpec, consumer: str, max_events: int) -> Look:
        """One look: lease the partitions with events the group wants, move the others
        past what they hold (one write, :func:`~._sql_queries.look_sql`), and read what
        the leased ones hold for the group."""
        now = self._now()
        token = new_id()
        narrowing, narrowing_args = q.type_filter(spec.pattern, self.recorder.wildcard_match)
        taken = await self.store.fetch_all(
            q.look_sql(self.recorder.lease_lock, narrowing),
            spec.name,
            *narrowing_args,
            self.scan_span,
            self.scan_span,
            spec.name,
            now,
            now,
            max_events,
            consumer,
            token,
            now + spec.ack_wait,
            spec.name,
        )
        if not taken:
            return NOTHING
        leased = [row for row in taken if row["lease_token"] == token]
        moved = [row for row in taken if row["lease_token"] != token]
        # A partition moved short of the newest seq has more to pass over; so may the
        # partitions a look could not take for want of room.
        more = len(taken) == max_events or any(r["position"] < r["newest"] for r in moved)
        passed = Look([], [], passed_over=bool(moved), cut_short=bool(moved) and more)
        if not leased:
            return passed
        each, extra = divmod(max_events, len(leased))
        scans = [
            Scan.of(row, each + (1 if index < extra else 0), self.scan_span)
            for index, row in enumerate(leased)
        ]
        try:
            rows = await self._read(spec, scans)
        except BaseException:
            # Cancelled or failed between lease and delivery: give the partitions back now
            # rather than after ack_wait (as they were: a taken-over head keeps its count).
            back = given_back(spec.name, token, leased)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._settle(back))
            raise
        look = plan_batches(spec, token, scans, rows)
        if look.releases:
            await self._settle(look.releases)
        return Look(
            look.batches,
            look.releases,
            passed_over=look.passed_over or passed.passed_over,
            cut_short=look.cut_short or passed.cut_short,
        )

    async def _settle(self, rows: list[SettleRow]) -> None:
        await self.recorder.settle(self.store, rows)

    async def _read(self, spec: GroupSpec, scans: list[Scan]) -> list[dict[str, Any]]:
        """What the group wants of each scan's range, in one statement."""
        narrowing, narrowing_args = q.type_filter(spec.pattern, self.recorder.wildcard_match)
        args: list[Any] = []
        for scan in scans:
            args += (scan.partition, scan.position, scan.upto, spec.name, *narrowing_args)
            args.append(scan.limit)
        return await self.store.fetch_all(q.read_events_sql(len(scans), narrowing), *args)

    async def settle(self, batch: PartitionBatch, settlement: Settlement) -> None:
        """Move the partition's position as ``settlement`` says and release the lease; a
        no-op when the lease was lost (it expired and another consumer took it)."""
        if not isinstance(batch.token, Lease):
            raise ValidationError("this batch was not fetched from a SqlEventBackend")
        await self._settles.submit(settle_rows(batch, settlement, self._now()))
        if settlement.retry_after is None and settlement.handled < len(batch.deliveries):
            self._wakeup.fire()  # the rest of the batch is ready again
        elif settlement.retry_after is not None:
            # Look again when the retry falls due, not at the next idle look.
            asyncio.get_running_loop().call_later(
                max(settlement.retry_after, 0.0), self._wakeup.fire
            )

    async def _write_settles(self, writes: list[SettleWrite]) -> None:
        settles = [write.row for write in writes]
        letters = [write.dead_letter for write in writes if write.dead_letter is not None]

        async def write() -> None:
            if not letters:
                await self._settle(settles)  # one hop, one commit
                return
            async with self.store.transaction() as tx:
                # Before SETTLE ends the leases the dead letters are written under.
                await tx.executemany(q.INSERT_DEAD_LETTER, [d.values() for d in letters])
                await self.recorder.settle(tx, settles)

        await self._retrying(write, "settle the batches")

    # -- dead letters ----------------------------------------------------------------------

    async def dead_letters(self, *, group: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The dead letters (of one group, or all), newest first, including those of every
        settle already made through this backend."""
        await self._settles.drain()
        where = " WHERE group_name = ?" if group is not None else ""
        args = (group,) if group is not None else ()
        rows = await self.store.fetch_all(
            f"SELECT {q.DEAD_LETTER_COLUMNS} FROM event_dead_letters{where} "
            "ORDER BY failed_at DESC, id DESC LIMIT ?",
            *args,
            limit,
        )
        return [q.dead_letter_from_row(row) for row in rows]

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter:
        """One dead letter; raises ``NotFoundError``."""
        await self._settles.drain()
        row = await self.store.fetch_one(_SELECT_DEAD_LETTER, dead_letter_id)
        if row is None:
            raise NotFoundError(f"no dead letter {dead_letter_id!r}")
        return q.dead_letter_from_row(row)

    async def replay(self, dead_letter_id: str) -> DeadLetter:
        """Append the dead letter's event again, for its group only (no dedupe), and mark
        it replayed, in one transaction. Raises ``NotFoundError``, and ``ValidationError``
        when the stored body is not a CloudEvent."""
        await self._settles.drain()
        now = self._now()
        async with self.store.transaction() as tx:
            row = await tx.fetch_one(_SELECT_DEAD_LETTER, dead_letter_id)
            if row is None:
                raise NotFoundError(f"no dead letter {dead_letter_id!r}")
            letter = q.dead_letter_from_row(row)
            event = letter.event or CloudEvent.from_json(row["body"])  # raises why it is not
            await self._append(tx, [self._row(event, letter.group, now)])
            await tx.execute(
                "UPDATE event_dead_letters SET replayed_at = ? WHERE id = ?", now, dead_letter_id
            )
        self._wakeup.fire()
        return replace(letter, replayed_at=q.epoch_to_datetime(now))

    async def purge(self, *, group: str | None = None) -> int:
        """Delete the dead letters (of one group, or all); returns how many."""
        await self._settles.drain()
        if group is None:
            return await self.store.execute("DELETE FROM event_dead_letters")
        return await self.store.execute(
            "DELETE FROM event_dead_letters WHERE group_name = ?", group
        )

    # -- retention -------------------------------------------------------------------------

    async def trim(self) -> int:
        """Delete the events that :attr:`retention` no longer keeps, oldest first, in
        batches of :data:`TRIM_BATCH`; returns how many. Without retention, does nothing."""
        if self.retention is None:
            return 0
        return await trim_log(self.store, self.retention, self._now())

    def _maybe_trim(self) -> None:
        if self.retention is None or self._closed:
            return
        if self._trim_task is not None and not self._trim_task.done():
            return
        now = self.clock.monotonic()
        if self._last_trim is not None and now - self._last_trim < TRIM_EVERY:
            return
        self._last_trim = now
        self._trim_task = asyncio.create_task(self._trim_quietly(), name="hybridmesh-events-trim")

    async def _trim_quietly(self) -> None:
        try:
            deleted = await self.trim()
        except Exception:
            log.exception("trimming the event log failed; trying again in %.0fs", TRIM_EVERY)
            return
        if deleted:
            log.info("trimmed %d events from the log", deleted)

    # -- plumbing --------------------------------------------------------------------------

    def _now(self) -> float:
        # Wall-clock epoch seconds: leases and retry times are compared across processes.
        return self.clock.now().timestamp()

    def __repr__(self) -> str:
        return f"<SqlEventBackend {self.store.display_url} partitions={self.partitions}>"


_SELECT_DEAD_LETTER = f"SELECT {q.DEAD_LETTER_COLUMNS} FROM event_dead_letters WHERE id = ?"

#: The event log's recorder for each dialect a store may have.
_RECORDERS: dict[str, type[LogRecorder]] = {
    "sqlite": SqliteLogRecorder,
    "postgresql": PostgresLogRecorder,
}


def recorder_for(store: Store) -> LogRecorder:
    """The event log's :class:`LogRecorder` for ``store``'s database."""
    try:
        return _RECORDERS[store.dialect]()
    except KeyError:
        raise ConfigurationError(f"the SQL event log does not run on {store.dialect}") from None


__all__ = [
    "SCAN_SPAN",
    "TRIM_BATCH",
    "TRIM_EVERY",
    "LogRecorder",
    "LogRow",
    "Retention",
    "SqlEventBackend",
    "SqlLogReader",
    "recorder_for",
]
