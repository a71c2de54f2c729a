"""The legacy application of the replication benchmark: paced writes to its ``orders`` table.

Runs in a process of its own (``python -m benchmarks._replication_load DIALECT URL RATE
WRITERS KEYS FIRST_NEW OUT``), as the legacy system does, so that its writes share neither
an event loop nor a core with the replicator. ``WRITERS`` tasks (a connection each on
PostgreSQL; SQLite has one writer at a time, so one there) write ``RATE`` statements a
second between them, open loop: statement *i* is due at ``i / RATE`` seconds, or at once
when it is late. Each statement is its own transaction (autocommit), picked at random:

- 50 % ``UPDATE`` of a random key in ``1..KEYS`` (a new amount, ``paid`` flipped);
- 30 % ``INSERT`` of a new key (``FIRST_NEW`` on, each used once);
- 20 % ``DELETE`` of a random key in ``1..KEYS``.

An update or delete of a key deleted before changes nothing (and captures nothing), as in
a real workload. It prints ``ready`` once connected, writes until SIGTERM, then writes to
``OUT`` as JSON what it did: statements by kind, rows changed, seconds, the achieved rate
and the statements' latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from hybridmesh.store.sqlite import sqlite_path

#: A statement: its kind and its arguments, run on one connection; returns rows changed.
Write = Callable[[str, tuple[Any, ...]], Awaitable[int]]

UPDATE = "UPDATE orders SET amount = {p1}, paid = NOT paid WHERE id = {p2}"
INSERT = (
    "INSERT INTO orders (id, customer, amount, weight, placed_at, paid) "
    "VALUES ({p1}, {p2}, {p3}, {p4}, {p5}, {p6})"
)
DELETE = "DELETE FROM orders WHERE id = {p1}"


def _sql(template: str, dialect: str) -> str:
    marks = {f"p{i}": (f"${i}" if dialect == "postgresql" else "?") for i in range(1, 7)}
    return template.format(**marks)


def _statement(
    rng: random.Random, keys: int, next_key: Callable[[], int], dialect: str
) -> tuple[str, tuple[Any, ...]]:
    """The next statement: its kind and arguments."""
    pick = rng.random()
    amount = _amount(rng.randrange(100, 10_000_000), dialect)
    if pick < 0.5:
        return "update", (amount, rng.randint(1, keys))
    if pick < 0.8:
        key = next_key()
        placed: Any = "2024-06-01 12:00:00"
        if dialect == "postgresql":
            placed = datetime.fromisoformat(placed)
        return "insert", (key, f"customer-{key}", amount, key % 997 / 4, placed, True)
    return "delete", (rng.randint(1, keys),)


def _amount(cents: int, dialect: str) -> Any:
    """An amount of ``cents``: a Decimal for PostgreSQL's NUMERIC, a float for SQLite."""
    return Decimal(cents) / 100 if dialect == "postgresql" else cents / 100


class _Tally:
    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.changed = 0
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()

    def to_dict(self, seconds: float, rate: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def percentile(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

        writes = sum(self.kinds.values())
        return {
            "writes": writes,
            "rows_changed": self.changed,
            "kinds": dict(self.kinds),
            "errors": dict(self.errors),
            "seconds": round(seconds, 3),
            "rate_asked": rate,
            "rate": round(writes / seconds, 1) if seconds else None,
            "p50_ms": percentile(0.50),
            "p99_ms": percentile(0.99),
        }


async def _postgres_writers(url: str, count: int) -> tuple[list[Write], Callable[[], Any]]:
    import asyncpg

    conns = [await asyncpg.connect(url) for _ in range(count)]
    sql = {
        "update": _sql(UPDATE, "postgresql"),
        "insert": _sql(INSERT, "postgresql"),
        "delete": _sql(DELETE, "postgresql"),
    }

    def writer(conn: Any) -> Write:
        async def write(kind: str, args: tuple[Any, ...]) -> int:
            status: str = await conn.execute(sql[kind], *args)
            return int(status.split()[-1])

        return write

    async def close() -> None:
        for conn in conns:
            await conn.close()

    return [writer(conn) for conn in conns], close


async def _sqlite_writers(url: str) -> tuple[list[Write], Callable[[], Any]]:
    path = sqlite_path(url)
    # The application's own connection, with the settings hybridmesh's store uses.
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    sql = {
        "update": _sql(UPDATE, "sqlite"),
        "insert": _sql(INSERT, "sqlite"),
        "delete": _sql(DELETE, "sqlite"),
    }

    async def write(kind: str, args: tuple[Any, ...]) -> int:
        return conn.execute(sql[kind], args).rowcount

    async def close() -> None:
        conn.close()

    return [write], close


async def _run(
    dialect: str, url: str, rate: float, writers: int, keys: int, first_new: int
) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if dialect == "postgresql":
        writes, close = await _postgres_writers(url, writers)
    else:
        writes, close = await _sqlite_writers(url)
    tally = _Tally()
    counter = 0
    new_keys = iter(range(first_new, sys.maxsize))
    print("ready", flush=True)
    began = time.monotonic()

    async def worker(write: Write, seed: int) -> None:
        nonlocal counter
        rng = random.Random(seed)
        while not stop.is_set():
            index, counter = counter, counter + 1
            delay = began + index / rate - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return
            kind, args = _statement(rng, keys, lambda: next(new_keys), dialect)
            sent = time.monotonic()
            try:
                changed = await write(kind, args)
            except Exception as error:  # a lost statement is counted, the load goes on
                tally.errors[type(error).__name__] += 1
                continue
            tally.latencies.append(time.monotonic() - sent)
            tally.kinds[kind] += 1
            tally.changed += changed

    try:
        await asyncio.gather(*(worker(write, seed) for seed, write in enumerate(writes)))
    finally:
        await close()
    return tally.to_dict(time.monotonic() - began, rate)


def main(argv: list[str]) -> None:
    if len(argv) != 7 or argv[0] not in ("sqlite", "postgresql"):
        raise SystemExit(
            "usage: python -m benchmarks._replication_load sqlite|postgresql URL RATE "
            "WRITERS KEYS FIRST_NEW OUT"
        )
    dialect, url, rate, writers, keys, first_new, out = argv
    figures = asyncio.run(_run(dialect, url, float(rate), int(writers), int(keys), int(first_new)))
    Path(out).write_text(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv[1:])
