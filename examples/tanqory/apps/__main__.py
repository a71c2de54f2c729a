"""``python -m tanqory.apps [folder]``: run the three reference services until Ctrl-C.

Each service keeps its SQLite file in ``folder`` (default ``.tanqory``), so data outlives a
restart; delete the folder to start fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from tanqory.apps import SERVICES, RunningService


async def run(folder: Path) -> None:
    """Starts every service on ``folder/<name>.db`` and serves until SIGINT or SIGTERM."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows; Ctrl-C then arrives as KeyboardInterrupt instead.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stopping.set)
    started: list[RunningService] = []
    try:
        for name, start in SERVICES.items():
            service = await start(folder / f"{name}.db")
            started.append(service)
            print(f"{service.name:<22} {service.url}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        await stopping.wait()
    finally:
        for service in reversed(started):
            await service.stop()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else Path(".tanqory")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(folder))


if __name__ == "__main__":
    main()
