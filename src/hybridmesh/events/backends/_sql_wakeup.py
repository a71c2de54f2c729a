"""Waking fetches that wait for events: in this process, and via PostgreSQL LISTEN/NOTIFY.

A publish in this process fires the :class:`Wakeup` at once. On PostgreSQL every publish
also sends a NOTIFY, which a :class:`PostgresListener` (one dedicated connection) turns into
the same wakeup in every other process. On SQLite other processes are seen by polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from hybridmesh.core.clock import Clock

log = logging.getLogger("hybridmesh.events.sql")

# After a failed LISTEN connection, fetches poll only, and the next try waits this long.
_RECONNECT_AFTER = 5.0


class Wakeup:
    """A signal that wakes every waiter once per :meth:`fire`.

    Take :meth:`waiter` *before* looking for work, then wait on it: a fire that happens in
    between is not missed.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def waiter(self) -> asyncio.Event:
        return self._event

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


async def wait_for(waiter: asyncio.Event, seconds: float) -> None:
    """Return when ``waiter`` is set or ``seconds`` (real time) have passed."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(waiter.wait(), seconds)


class PostgresListener:
    """One connection that LISTENs on ``channel`` and fires ``wakeup`` per notification
    whose payload ``wanted`` accepts (every one by default).

    Best effort: when the connection cannot be made or drops, fetches keep polling, and
    :meth:`ensure` tries again a few seconds later.
    """

    def __init__(
        self,
        url: str,
        channel: str,
        wakeup: Wakeup,
        clock: Clock,
        wanted: Callable[[str], bool] | None = None,
    ) -> None:
        self._url = url
        self._clock = clock
        self._channel = channel
        self._wakeup = wakeup
        self._wanted = wanted
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._next_try = 0.0

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def ensure(self) -> None:
        """Connect and LISTEN unless already listening (or a recent try failed)."""
        if self.connected or self._clock.monotonic() < self._next_try:
            return
        async with self._lock:
            if self.connected:
                return
            try:
                conn = await asyncpg.connect(self._url, timeout=10)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                self._next_try = self._clock.monotonic() + _RECONNECT_AFTER
                log.warning("LISTEN connection failed (%s); waiting fetches poll instead", e)
                return
            try:
                await conn.add_listener(self._channel, self._notified)
            except BaseException:
                await conn.close()
                raise
            conn.add_termination_listener(self._terminated)
            self._conn = conn

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await asyncio.wait_for(conn.close(), timeout=5)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if self._wanted is None or self._wanted(payload):
            self._wakeup.fire()

    def _terminated(self, *_: Any) -> None:
        self._conn = None
        self._wakeup.fire()  # waiters look once more, then poll until reconnected


__all__ = ["PostgresListener", "Wakeup", "wait_for"]
