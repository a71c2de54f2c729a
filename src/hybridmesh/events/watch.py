"""Watching the bus live without a consumer group: the loop the WebSocket hub and the
control plane's event stream share.

A watcher reads with :meth:`EventBus.open_reader` from the newest event on: it needs no
acks, no replays of dead letters and no place kept across restarts, and leaves nothing in
the backend however the process ends. One watcher per process serves every client of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from hybridmesh.events.backend import Delivery, EventReader
from hybridmesh.events.bus import EventBus
from hybridmesh.observability import get_logger

log = get_logger("hybridmesh.events.watch")

READ_BATCH = 500  # events read from the bus at once
READ_WAIT = 1.0  # seconds one read waits for events
REOPEN_PAUSE = 0.5  # seconds before reading again after a failed read, doubling ...
MAX_REOPEN_PAUSE = 5.0  # ... up to this


async def watch_bus(
    bus: EventBus,
    pattern: str,
    reader: EventReader,
    handle: Callable[[Delivery], Awaitable[None]],
    *,
    name: str = "watcher",
) -> None:
    """Hand each delivery ``reader`` reads to ``handle`` until cancelled; close the reader
    then. A failed read (the backend is away) opens a new reader from the newest event
    after a pause: what was published meanwhile is missed, which a live view allows."""
    pause = REOPEN_PAUSE
    try:
        while True:
            try:
                deliveries = await reader.read(READ_BATCH, READ_WAIT)
            except Exception as error:
                log.warning("%s: reading the bus failed (%s); reading again", name, error)
                with contextlib.suppress(Exception):
                    await reader.close()
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_REOPEN_PAUSE)
                with contextlib.suppress(Exception):
                    reader = await bus.open_reader(pattern, start="latest")
                continue
            pause = REOPEN_PAUSE
            for delivery in deliveries:
                await handle(delivery)
    finally:
        with contextlib.suppress(Exception):
            await reader.close()


__all__ = ["watch_bus"]
