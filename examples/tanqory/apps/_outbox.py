"""A service's transactional outbox: events written with the rows they announce, then relayed.

A service writes its events with :func:`add_events` inside the same
:meth:`~tanqory.apps._database.ServiceDatabase.run` transaction as its own rows, so an event
exists exactly when the change it announces does, in the service's own SQLite file. An
:class:`OutboxRelay` then publishes the pending rows, oldest first, with the service's
``publish`` callable, and deletes them only after it has returned.

When publishing fails the relay keeps the rows (counting the attempt and the error, for
``GET /_admin/outbox``), waits with exponential backoff and tries the same rows again; rows
outlive a restart, so nothing is lost. A row may be published twice (the service dies between
publishing and deleting): the bus drops an event whose (source, id) it has seen, and
idempotent consumers drop what gets through.

A service passes :func:`outbox` as ``configure`` to :func:`~tanqory.apps._base.serve`: it
adds ``GET /_admin/outbox`` and, given ``publish``, runs the relay while the service runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hybridmesh.events import CloudEvent
from tanqory.apps._base import database, utc_now
from tanqory.apps._database import ServiceDatabase
from tanqory.apps._idempotency import DATABASE

__all__ = [
    "OUTBOX_SCHEMA",
    "RELAY",
    "OutboxRelay",
    "Publish",
    "RelaySettings",
    "add_events",
    "outbox",
    "pending_events",
    "relay_of",
]

_log = logging.getLogger(__name__)

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
"""

#: Hands events to the bus (``EventBus.publish_many`` fits); returns once they are durable.
Publish = Callable[[Sequence[CloudEvent]], Awaitable[object]]


@dataclass(frozen=True)
class RelaySettings:
    """How an :class:`OutboxRelay` works.

    ``batch_size`` (default 100) rows are published per call. After a failed call the relay
    waits ``backoff_initial`` seconds (default 0.5), doubling per consecutive failure up to
    ``backoff_max`` (default 30). Besides being woken after each commit that wrote events, it
    looks for rows every ``poll_interval`` seconds (default 1).
    """

    batch_size: int = 100
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    poll_interval: float = 1.0

    def backoff(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failed publishes."""
        return min(self.backoff_max, self.backoff_initial * 2.0 ** (failures - 1))


def add_events(conn: sqlite3.Connection, events: Iterable[CloudEvent]) -> None:
    """Queue ``events`` (validated) in the caller's transaction."""
    now = utc_now()
    conn.executemany(
        "INSERT INTO outbox (event_id, type, body, created_at) VALUES (?, ?, ?, ?)",
        [(e.validate().id, e.type, e.to_json().decode(), now) for e in events],
    )


def pending_events(conn: sqlite3.Connection, limit: int = 500) -> list[dict[str, Any]]:
    """The rows waiting to be published, oldest first, for ``GET /_admin/outbox``."""
    rows = conn.execute(
        "SELECT seq, event_id, type, created_at, attempts, last_error FROM outbox"
        " ORDER BY seq LIMIT ?",
        (limit,),
    ).fetchall()
    return [dict(row) for row in rows]


def _oldest(conn: sqlite3.Connection, limit: int) -> list[tuple[int, str]]:
    rows = conn.execute("SELECT seq, body FROM outbox ORDER BY seq LIMIT ?", (limit,)).fetchall()
    return [(int(row["seq"]), str(row["body"])) for row in rows]


def _delete(conn: sqlite3.Connection, seqs: list[int]) -> None:
    conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])


def _failed(conn: sqlite3.Connection, seqs: list[int], error: str) -> None:
    conn.executemany(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
        [(error, s) for s in seqs],
    )


class OutboxRelay:
    """Publishes a service's outbox rows in the background; start with the service, stop
    before its database closes. At least once: see the module docstring."""

    def __init__(
        self, db: ServiceDatabase, publish: Publish, settings: RelaySettings | None = None
    ) -> None:
        self.db = db
        self.publish = publish
        self.settings = settings or RelaySettings()
        self.published = 0
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Look for rows now: call after committing a transaction that added events."""
        self._wake.set()

    def start(self) -> None:
        """Start relaying (rows left from before a restart go first)."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name=f"outbox-relay:{self.db.path}")

    async def stop(self) -> None:
        """Stop relaying; a publish in progress is cancelled and its rows stay. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def relay_once(self) -> int:
        """Publish one batch and delete it; returns how many rows it moved.

        Raises what ``publish`` raised, after counting the attempt on the rows.
        """
        rows = await self.db.run(_oldest, self.settings.batch_size)
        if not rows:
            return 0
        seqs = [seq for seq, _ in rows]
        try:
            await self.publish([CloudEvent.from_json(body) for _, body in rows])
        except Exception as error:
            await self.db.run(_failed, seqs, f"{type(error).__name__}: {error}")
            raise
        await self.db.run(_delete, seqs)
        self.published += len(seqs)
        return len(seqs)

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                moved = await self.relay_once()
            except Exception as error:
                failures += 1
                wait = self.settings.backoff(failures)
                _log.warning("outbox relay: publishing failed (%s); retrying in %.2fs", error, wait)
                await self._pause(wait, wakeable=False)
                continue
            failures = 0
            if moved < self.settings.batch_size:
                await self._pause(self.settings.poll_interval, wakeable=True)

    async def _pause(self, seconds: float, *, wakeable: bool) -> None:
        """Sleep up to ``seconds``; ended early by :meth:`stop`, and by :meth:`wake` when
        ``wakeable`` (a backoff is not cut short by new rows)."""
        waiters = [asyncio.ensure_future(self._stopping.wait())]
        if wakeable:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


RELAY = web.AppKey("outbox_relay", OutboxRelay)


def relay_of(request: web.Request) -> OutboxRelay | None:
    """The relay of the service handling ``request``; None when it does not publish."""
    return request.app.get(RELAY)


async def _get_outbox(request: web.Request) -> web.Response:
    relay = relay_of(request)
    return web.json_response(
        {
            "publishing": relay is not None,
            "published": relay.published if relay is not None else 0,
            "pending": await database(request).run(pending_events),
        }
    )


def outbox(
    publish: Publish | None, settings: RelaySettings | None = None
) -> Callable[[web.Application], None]:
    """A ``configure`` for :func:`~tanqory.apps._base.serve`: ``GET /_admin/outbox`` (whether
    the service publishes, how many events it has published, and the pending rows with their
    failed attempts), and with ``publish`` an :class:`OutboxRelay` from startup to shutdown."""

    def configure(app: web.Application) -> None:
        app.router.add_get("/_admin/outbox", _get_outbox)
        if publish is None:
            return
        relay = OutboxRelay(app[DATABASE], publish, settings)
        app[RELAY] = relay

        async def start_relay(app: web.Application) -> None:
            relay.start()

        async def stop_relay(app: web.Application) -> None:
            await relay.stop()

        app.on_startup.append(start_relay)
        app.on_shutdown.append(stop_relay)

    return configure
