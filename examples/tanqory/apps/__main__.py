"""``python -m tanqory.apps [folder]``: run the five reference services until Ctrl-C.

Each service keeps its SQLite file in ``folder`` (default ``.tanqory``), so data outlives a
restart; delete the folder to start fresh. The services share one event bus, the SQL log in
``folder/events.db``: user-service publishes to it through its outbox, notification-services
and analytics-reporting consume it. WebSocket clients of notification-services may use any
token (it is taken as their user id): this runner is for local use only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from hybridmesh.events import EventBus
from hybridmesh.events.backends.sql import SqlEventBackend
from tanqory.apps import EVENT_SERVICES, SERVICES, RunningService, user_service


def starters(bus: EventBus) -> dict[str, Callable[[Path], Awaitable[RunningService]]]:
    """Every service's ``start``, wired to ``bus``."""
    wired: dict[str, Callable[[Path], Awaitable[RunningService]]] = dict(SERVICES)
    wired[user_service.NAME] = functools.partial(user_service.start, publish=bus.publish_many)
    for name, start in EVENT_SERVICES.items():
        wired[name] = functools.partial(start, bus=bus)
    return wired


async def run(folder: Path) -> None:
    """Starts every service on ``folder/<name>.db`` and serves until SIGINT or SIGTERM."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows; Ctrl-C then arrives as KeyboardInterrupt instead.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stopping.set)
    bus = EventBus(await SqlEventBackend.open(f"sqlite:///{folder / 'events.db'}"))
    started: list[RunningService] = []
    try:
        for name, start in starters(bus).items():
            service = await start(folder / f"{name}.db")
            started.append(service)
            print(f"{service.name:<22} {service.url}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        await stopping.wait()
    finally:
        for service in reversed(started):
            await service.stop()
        await bus.close()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else Path(".tanqory")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(folder))


if __name__ == "__main__":
    main()
