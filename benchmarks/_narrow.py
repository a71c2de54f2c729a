"""A narrow consumer group beside other traffic, on the SQL log (SQLite and PostgreSQL).

The group wants one type (``needle.*``); this process publishes it at ``NEEDLE_RATE`` a
second, each event carrying its publish time, and measures publish→handled latency. In
the phases *beside*, another process (a second service on the same database) publishes
``NOISE_RATE`` events a second of another type and consumes them with a group of its own
(``noise.*``); in the phases *alone* it is not running; in the phases *elsewhere* it
runs the same on another database (another file, or another database of the same
server), which shows what sharing the machine costs apart from sharing the log. Goal:
the narrow group's p95 beside the traffic is at most ``P95_GOAL`` times its p95 alone.

Catch-up: on a fresh database, ``CATCH_UP_NOISE`` events of another type and then one
``needle.found``; then the time until a new group from the earliest event has handled
it, and until a read without a group (``hybridmesh events tail``) has it. Goal: each
under ``CATCH_UP_GOAL`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmarks._postgres import fresh_database
from hybridmesh.events.bus import EventBus
from hybridmesh.events.envelope import CloudEvent

NOISE_RATE = 1_500  # events a second of another type, from another process
NEEDLE_RATE = 20  # events a second the narrow group wants
NEEDLES = 100  # per phase
# Each condition pools its phases; the order turns around halfway, so a machine whose
# speed drifts (other work on it) moves every condition alike.
PHASES = ("alone", "beside", "elsewhere", "elsewhere", "beside", "alone") * 2
CATCH_UP_NOISE = 50_000
P95_GOAL = 2.0
CATCH_UP_GOAL = 0.5  # seconds
SOURCE = "/benchmarks/narrow"
_STALL = 60.0

# The other service: publishes noise.z at a steady rate in ticks of 20 ms, consumes it as
# group "noise", and when a line arrives on its stdin stops and prints what it did.
_NOISE = """
import asyncio, json, statistics, sys, time
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.sql import SqlEventBackend

async def main(url, rate):
    bus = EventBus(await SqlEventBackend.open(url))
    latencies = []

    async def handler(event):
        latencies.append(time.time() - event.data["ts"])

    bus.subscribe("noise.*", handler, group="noise", start="latest")
    async with bus:
        stop = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
        print("ready", flush=True)
        tick, sent, began = 0.02, 0, time.monotonic()
        while not stop.done():
            due = began + tick * (sent // round(rate * tick))
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            ts = time.time()
            size = round(rate * tick)
            await bus.publish_many(
                [CloudEvent.create("noise.z", "/noise", {"ts": ts}) for _ in range(size)]
            )
            sent += size
        seconds = time.monotonic() - began
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    print(json.dumps({"published": sent, "rate": round(sent / seconds, 1),
                      "p95_ms": round(q[94] * 1000, 1)}), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


@contextlib.asynccontextmanager
async def _database(dialect: str) -> AsyncIterator[str]:
    if dialect == "postgresql":
        async with fresh_database() as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="hm-bench-") as folder:
        yield f"sqlite:///{Path(folder) / 'events.db'}"


class _Needles:
    """The narrow group's handler: one latency per needle, by phase."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.handled = asyncio.Event()
        self.expected = 0

    async def __call__(self, event: CloudEvent) -> None:
        self.latencies.append(time.time() - event.data["ts"])
        if len(self.latencies) >= self.expected:
            self.handled.set()

    async def phase(self, bus: EventBus) -> list[float]:
        """Publish ``NEEDLES`` needles at ``NEEDLE_RATE``; their latencies once handled."""
        self.latencies, self.expected = [], NEEDLES
        self.handled.clear()
        began = time.monotonic()
        for n in range(NEEDLES):
            await asyncio.sleep(max(0.0, began + n / NEEDLE_RATE - time.monotonic()))
            await bus.publish(CloudEvent.create("needle.found", SOURCE, {"ts": time.time()}))
        await asyncio.wait_for(self.handled.wait(), _STALL)
        return self.latencies


async def _beside_noise(url: str, needles: _Needles, bus: EventBus) -> tuple[list[float], dict]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _NOISE,
        url,
        str(NOISE_RATE),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        ready = await asyncio.wait_for(child.stdout.readline(), _STALL)
        if ready.strip() != b"ready":
            raise RuntimeError("the noise process did not start")
        await asyncio.sleep(1.0)  # let the noise reach its rate first
        latencies = await needles.phase(bus)
        child.stdin.write(b"stop\n")
        await child.stdin.drain()
        noise = json.loads(await asyncio.wait_for(child.stdout.readline(), _STALL))
    finally:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
        await child.wait()
    return latencies, noise


def _percentiles(latencies: list[float]) -> dict[str, float]:
    q = statistics.quantiles(sorted(latencies), n=100, method="inclusive")
    return {"p50_ms": round(q[49] * 1000, 2), "p95_ms": round(q[94] * 1000, 2)}


async def steady(dialect: str) -> dict[str, Any]:
    """The narrow group's latency alone and beside the noise (see the module docstring)."""
    from hybridmesh.events.backends.sql import SqlEventBackend

    pooled: dict[str, list[float]] = {"alone": [], "beside": [], "elsewhere": []}
    noise: list[dict[str, Any]] = []
    async with _database(dialect) as url, _database(dialect) as other:
        backend = await SqlEventBackend.open(url)
        bus = EventBus(backend)
        needles = _Needles()
        bus.subscribe("needle.*", needles, group="needles", start="latest")
        async with bus:
            for phase in PHASES:
                if phase == "alone":
                    pooled["alone"] += await needles.phase(bus)
                    continue
                where = url if phase == "beside" else other
                latencies, seen = await _beside_noise(where, needles, bus)
                pooled[phase] += latencies
                if phase == "beside":
                    noise.append(seen)
    shown = {condition: _percentiles(latencies) for condition, latencies in pooled.items()}
    alone = shown["alone"]["p95_ms"]
    return {
        "needles": sum(len(latencies) for latencies in pooled.values()),
        **shown,
        "p95_ratio": round(shown["beside"]["p95_ms"] / alone, 3) if alone else None,
        "elsewhere_p95_ratio": round(shown["elsewhere"]["p95_ms"] / alone, 3) if alone else None,
        "noise_rate": round(statistics.mean(float(n["rate"]) for n in noise), 1),
        "noise_group_p95_ms": max(float(n["p95_ms"]) for n in noise),
    }


async def catch_up(dialect: str) -> dict[str, Any]:
    """Seconds until a new narrow group, and a read without a group, reach the one event
    they want past ``CATCH_UP_NOISE`` others."""
    from hybridmesh.events.backends.sql import SqlEventBackend

    async with _database(dialect) as url:
        backend = await SqlEventBackend.open(url)
        try:
            for start in range(0, CATCH_UP_NOISE, 1_000):
                size = min(1_000, CATCH_UP_NOISE - start)
                await backend.publish(
                    [CloudEvent.create("noise.x", "/noise", {"n": n}) for n in range(size)]
                )
            await backend.publish([CloudEvent.create("needle.found", SOURCE, {"ts": 0.0})])

            bus = EventBus(backend, owns_backend=False)
            found = asyncio.Event()

            async def handler(event: CloudEvent) -> None:
                found.set()

            began = time.perf_counter()
            bus.subscribe("needle.*", handler, group="late", start="earliest")
            async with bus:
                await asyncio.wait_for(found.wait(), _STALL)
                group_seconds = time.perf_counter() - began

            began = time.perf_counter()
            reader = await backend.open_reader("needle.*", start="earliest")
            try:
                while not await reader.read(1, wait=_STALL):
                    pass
            finally:
                await reader.close()
            reader_seconds = time.perf_counter() - began
        finally:
            await backend.close()
    return {
        "other_events": CATCH_UP_NOISE,
        "group_seconds": round(group_seconds, 4),
        "reader_seconds": round(reader_seconds, 4),
    }


async def run_dialect(dialect: str) -> dict[str, Any]:
    return {"steady": await steady(dialect), "catch_up": await catch_up(dialect)}


__all__ = ["CATCH_UP_GOAL", "NEEDLES", "NEEDLE_RATE", "NOISE_RATE", "P95_GOAL", "run_dialect"]
