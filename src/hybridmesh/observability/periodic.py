"""A background writer of counts kept in memory: every few seconds it writes them to the
store, and now and then it deletes rows past their retention.

Counting happens on every request or call and must cost only a dictionary update; the
store is written a few times a minute. A write that fails (the store is away) is logged
and tried again at the next round, with the counts kept by whoever counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from hybridmesh.observability.logs import get_logger

log = get_logger("hybridmesh.observability.periodic")


class PeriodicWriter:
    """Calls ``write`` every ``flush_seconds`` and ``prune`` every ``prune_seconds``, in a
    task; on :meth:`close`, stops and calls ``last_write`` (``write`` unless given) once
    more. ``label`` names the writer in log lines ("gateway stats")."""

    def __init__(
        self,
        label: str,
        *,
        write: Callable[[], Awaitable[object]],
        prune: Callable[[], Awaitable[object]],
        flush_seconds: float,
        prune_seconds: float,
        last_write: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.label = label
        self.write = write
        self.prune = prune
        self.last_write = last_write or write
        self.flush_seconds = flush_seconds
        self.prune_seconds = prune_seconds
        self._task: asyncio.Task[None] | None = None
        self._last_prune = 0.0

    def start(self) -> None:
        """Start writing in the background (inside a running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"writer:{self.label}")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.write()
                now = time.monotonic()
                if now - self._last_prune >= self.prune_seconds:
                    self._last_prune = now
                    await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the store is away: keep counting, write later
                log.warning("%s: writing failed: %s", self.label, error)

    async def close(self) -> None:
        """Stop the task and write what is left (a failure is logged, not raised)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.last_write()
        except Exception as error:
            log.warning("%s: writing the last counts failed: %s", self.label, error)


__all__ = ["PeriodicWriter"]
