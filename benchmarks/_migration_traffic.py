"""The traffic of the migration benchmark: its two services, and the load through the gateway.

Each runs in a process of its own (``python -m benchmarks._migration_traffic ...``) so that
neither shares an event loop or a core with the gateway, the runner or the benchmark:

- ``upstream NAME PORT``: an aiohttp service answering every GET with ``NAME`` (200), or
  with ``NAME failing`` (500) once ``POST /_fail`` switched it; ``POST /_heal`` switches it
  back. Both answer ``{"at": <Unix time of the switch>}``, so the benchmark knows to the
  microsecond when the service began to fail.
- ``load URL RATE CONNECTIONS OUT``: GET requests to ``URL`` at a fixed ``RATE`` a second
  (open loop: request *i* leaves at ``i / RATE`` seconds, or at once when it is late) over
  at most ``CONNECTIONS`` keep-alive connections, until SIGTERM; then it writes what it saw
  to ``OUT`` as JSON: requests by status and by side (the first word of the answer), socket
  errors, and the time of every failure (a status other than 2xx, or no answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

#: Most failures whose time and kind the load generator keeps (their count is exact).
MAX_FAILURES_KEPT = 20_000


def _upstream_app(name: str) -> web.Application:
    failing = False

    async def answer(_request: web.Request) -> web.Response:
        if failing:
            return web.Response(status=500, text=f"{name} failing")
        return web.Response(text=name)

    async def switch(request: web.Request) -> web.Response:
        nonlocal failing
        failing = request.match_info["what"] == "fail"
        return web.json_response({"at": time.time(), "failing": failing})

    app = web.Application()
    app.router.add_post("/_{what:fail|heal}", switch)
    app.router.add_get("/{tail:.*}", answer)
    return app


def upstream(name: str, port: int) -> None:
    web.run_app(
        _upstream_app(name),
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        handle_signals=True,
    )


class _Tally:
    def __init__(self) -> None:
        self.requests = 0
        self.statuses: Counter[str] = Counter()
        self.sides: Counter[str] = Counter()
        self.socket_errors = 0
        self.failures: list[tuple[float, str, str]] = []
        self.failed = 0
        self.latencies: list[float] = []

    def fail(self, at: float, what: str, side: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append((round(at, 4), what, side))

    def to_dict(self, seconds: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def percentile(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

        non_2xx = sum(n for status, n in self.statuses.items() if not status.startswith("2"))
        return {
            "requests": self.requests,
            "seconds": round(seconds, 3),
            "throughput": round(self.requests / seconds, 1) if seconds else None,
            "statuses": dict(self.statuses),
            "sides": dict(self.sides),
            "non_2xx": non_2xx,
            "socket_errors": self.socket_errors,
            "failed": self.failed,
            "failures": self.failures,
            "p50_ms": percentile(0.50),
            "p99_ms": percentile(0.99),
        }


async def _load(url: str, rate: float, connections: int) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tally = _Tally()
    counter = 0
    began = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal counter
            while not stop.is_set():
                index, counter = counter, counter + 1
                delay = began + index / rate - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        return
                sent = time.monotonic()
                tally.requests += 1
                try:
                    async with session.get(url) as response:
                        body = await response.text()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as error:
                    tally.socket_errors += 1
                    tally.fail(time.time(), type(error).__name__, "?")
                    continue
                tally.latencies.append(time.monotonic() - sent)
                side = body.split(" ", 1)[0] if body else "?"
                tally.statuses[str(status)] += 1
                tally.sides[side] += 1
                if not 200 <= status < 300:
                    tally.fail(time.time(), str(status), side)

        await asyncio.gather(*(worker() for _ in range(connections)))
    return tally.to_dict(time.monotonic() - began)


def main(argv: list[str]) -> None:
    if argv[:1] == ["upstream"] and len(argv) == 3:
        upstream(argv[1], int(argv[2]))
    elif argv[:1] == ["load"] and len(argv) == 5:
        figures = asyncio.run(_load(argv[1], float(argv[2]), int(argv[3])))
        Path(argv[4]).write_text(json.dumps(figures))
    else:
        raise SystemExit(
            "usage: python -m benchmarks._migration_traffic upstream NAME PORT\n"
            "       python -m benchmarks._migration_traffic load URL RATE CONNECTIONS OUT"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
