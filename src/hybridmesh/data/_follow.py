"""The loop that keeps a consumer of a change log (a replicator, an event bridge) going: it
steps while asked to run, holds while paused, waits out an unreachable database, and reports
its status now and then."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from hybridmesh.core.errors import StoreUnavailableError

S = TypeVar("S")

#: Seconds between looks at what is asked (run, pause, stop).
ASK_EVERY = 0.5
#: Seconds to wait before trying an unreachable database again.
RETRY_AFTER = 0.5


async def follow(
    step: Callable[[], Awaitable[int]],
    *,
    reset: Callable[[], None],
    status: Callable[[], Awaitable[S]],
    desired: Callable[[], Awaitable[str]] | None = None,
    report: Callable[[S], Awaitable[None]] | None = None,
    report_every: float = 1.0,
    until_caught_up: bool = False,
    settled: Callable[[], bool] = lambda: True,
    idle: float = 0.05,
    housekeeping: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Call ``step`` (which returns how many changes it read) until ``desired()`` says
    ``stopped``, or, with ``until_caught_up``, until a step reads nothing and ``settled()``
    (a backfill, say, is done). ``paused`` holds. A step that finds a database unreachable
    is retried after ``reset()``; a status that cannot be read is skipped. ``housekeeping``
    (telling the source how far it has read, pruning its log) runs as often as a report."""
    loop = asyncio.get_running_loop()
    last_ask = last_report = -ASK_EVERY - report_every
    state = "running"
    while True:
        now = loop.time()
        if desired is not None and now - last_ask >= ASK_EVERY:
            last_ask = now
            state = await desired()
        if state == "stopped":
            break
        read = 0
        if state == "running":
            try:
                read = await step()
            except StoreUnavailableError:
                reset()
                await asyncio.sleep(RETRY_AFTER)
                continue
        if now - last_report >= report_every:
            last_report = now
            with contextlib.suppress(StoreUnavailableError):
                if housekeeping is not None:
                    await housekeeping()
                if report is not None:
                    await report(await status())
        if until_caught_up and not read and settled():
            break
        if not read:
            await asyncio.sleep(idle)
    if report is not None:
        with contextlib.suppress(StoreUnavailableError):
            await report(await status())


__all__ = ["follow"]
