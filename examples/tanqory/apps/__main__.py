"""``python -m tanqory.apps [folder]``: run the reference services until Ctrl-C.

Each service keeps its SQLite file in ``folder`` (default ``.tanqory``), so data outlives a
restart; delete the folder to start fresh. analytics-reporting correlates with the
legacy-erp started here. WebSocket clients of notification-services may use any token (it is
taken as their user id): this runner is for local use only.

order-processing runs the order saga on a hybridmesh engine whose store is
``folder/mesh.db`` and whose registry (``examples/tanqory/services``) points at the
services started here; legacy batch files go to ``folder/exchange``. Everything shares one
event bus, the SQL log in that store: user-service publishes ``user.*`` to it through its
outbox, the engine its ``saga.*`` events, order-processing ``order.confirmed`` and
``order.cancelled`` through its outbox; notification-services and analytics-reporting
consume it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from hybridmesh.core.settings import Settings
from hybridmesh.events import EventBus
from hybridmesh.registry import ServiceRegistry
from hybridmesh.runtime import Runtime
from tanqory.apps import (
    EVENT_SERVICES,
    SERVICES,
    RunningService,
    ServiceStarter,
    analytics_reporting,
    legacy_erp,
    order_processing,
    payment_service,
    shipping_service,
    user_service,
)

#: The registry the order saga's engine reads, before it is pointed at local URLs.
SERVICES_DIR = Path(__file__).resolve().parents[1] / "services"
#: What the order saga calls besides the services of SERVICES and EVENT_SERVICES.
COMMERCE_SERVICES: dict[str, ServiceStarter] = {
    payment_service.NAME: payment_service.start,
    shipping_service.NAME: shipping_service.start,
}


def starters(
    bus: EventBus, urls: Mapping[str, str] | None = None
) -> dict[str, Callable[[Path], Awaitable[RunningService]]]:
    """Every service's ``start`` in :data:`SERVICES` and :data:`EVENT_SERVICES`, wired to
    ``bus``, in the order to start them. ``urls`` holds the URLs of the services started so
    far; analytics-reporting correlates with the legacy-erp found there."""
    wired: dict[str, Callable[[Path], Awaitable[RunningService]]] = dict(SERVICES)
    wired[user_service.NAME] = functools.partial(user_service.start, publish=bus.publish_many)
    for name, start in EVENT_SERVICES.items():
        wired[name] = functools.partial(start, bus=bus)
    started = urls if urls is not None else {}

    async def start_analytics(db_path: Path) -> RunningService:
        erp_url = started.get(legacy_erp.NAME)
        return await analytics_reporting.start(db_path, bus=bus, erp_url=erp_url)

    wired[analytics_reporting.NAME] = start_analytics
    return wired


async def open_runtime(folder: Path) -> Runtime:
    """The engine's process parts on ``folder/mesh.db``, with the bus the services share;
    point its registry at each service once it runs."""
    registry = ServiceRegistry.from_path(SERVICES_DIR)
    settings = Settings(database_url=f"sqlite:///{folder / 'mesh.db'}")
    return await Runtime.open(settings, registry=registry, exchange_dir=folder / "exchange")


async def run(folder: Path) -> None:
    """Starts every service on ``folder/<name>.db`` and serves until SIGINT or SIGTERM."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows; Ctrl-C then arrives as KeyboardInterrupt instead.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stopping.set)
    runtime = await open_runtime(folder)
    assert runtime.bus is not None
    started: list[RunningService] = []
    urls: dict[str, str] = {}
    order_service = functools.partial(order_processing.start, engine=runtime.engine)
    every: dict[str, Callable[[Path], Awaitable[RunningService]]] = {
        **starters(runtime.bus, urls),
        **COMMERCE_SERVICES,
        order_processing.NAME: order_service,
    }
    try:
        for name, start in every.items():
            service = await start(folder / f"{name}.db")
            started.append(service)
            urls[name] = service.url
            runtime.registry.with_base_url(name, service.url)
            print(f"{service.name:<22} {service.url}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        await stopping.wait()
    finally:
        for service in reversed(started):
            await service.stop()
        await runtime.close()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else Path(".tanqory")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(folder))


if __name__ == "__main__":
    main()
