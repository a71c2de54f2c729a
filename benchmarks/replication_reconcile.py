"""Reconciliation of two large PostgreSQL tables, against reladiff on the same tables.

Two databases on the local server each get a table ``items`` of ``rows`` rows (a bigint
key, text with some NULLs, an integer, a numeric and a timestamp), made with ``INSERT ...
SELECT generate_series``. Then 0.1 % of the rows are made to differ, spread over the
whole key range, in three equal parts: rows updated in the target (one column changed),
rows deleted from the target (missing), and rows that only the target has (extra: the
source's rows with those keys are deleted).

Each round times, in an order that alternates from round to round:

- *hybridmesh*: :func:`hybridmesh.data.reconcile.compare_table` over the two databases
  (opening and closing them included), every column compared, default settings
  (``segment_rows`` 64);
- *reladiff*: ``reladiff.connect_to_table`` on each database and ``diff_tables`` with
  every column as an extra column, consumed to the end (connecting included), with
  reladiff's defaults (hash diff, bisection factor 32, threshold 16,384 rows, threaded
  with one thread per database);
- *reladiff, 4 threads*: the same with ``thread_count=4`` per database and
  ``max_threadpool_size=8``, as reladiff's documentation recommends: as many queries at
  once per database as hybridmesh runs (it runs up to 4 per side).

Every system must find exactly the keys that were made to differ, each of the right kind.
Figures are each system's median time; the goal is hybridmesh at least 1.0 times
reladiff's speed (its default settings), i.e. reladiff's median time over hybridmesh's.

``python -m benchmarks.replication_reconcile [--rows N] [--rounds N]`` runs it alone,
``python -m benchmarks replication_reconcile`` with the 1,000,000 rows of the goal
(``--quick``: 100,000); both write ``benchmarks/results/replication_reconcile.json``.
Needs reladiff (a dev dependency) and the local PostgreSQL server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from benchmarks._postgres import fresh_database
from benchmarks._report import alternating, failed_round, machine, write_json
from hybridmesh.data.databases import open_database
from hybridmesh.data.mapping import TableMapping
from hybridmesh.data.reconcile import compare_table

ROWS = 1_000_000
QUICK_ROWS = 100_000
ROUNDS = 3
#: One row in this many differs; a third of them updated, deleted and inserted each.
EVERY = 1_000
COLUMNS = ("name", "email", "qty", "price", "updated_at")
SYSTEMS = ["hybridmesh", "reladiff", "reladiff_threads"]
LABELS = {
    "hybridmesh": "hybridmesh compare_table (segment_rows 64)",
    "reladiff": "reladiff diff_tables (defaults: factor 32, threshold 16384, 1 thread per db)",
    "reladiff_threads": "reladiff diff_tables (4 threads per db, pool of 8)",
}

_TABLE = """
CREATE TABLE items (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT,
    qty INTEGER NOT NULL,
    price NUMERIC(12, 2) NOT NULL,
    updated_at TIMESTAMP NOT NULL
)
"""
_FILL = """
INSERT INTO items
SELECT g, 'item ' || g,
       CASE WHEN g % 13 = 0 THEN NULL ELSE 'user' || g || '@example.com' END,
       g % 1000, (g % 100000) / 100.0,
       timestamp '2024-01-01' + g * interval '1 second'
FROM generate_series(1, $1::bigint) AS g
"""


async def _setup(source_url: str, target_url: str, rows: int) -> dict[str, set[int]]:
    """Fill both tables and make them differ; the keys of each kind of difference."""
    # Which rows differ: a third of a step of EVERY rows each, scattered by a hash of
    # the key so that they fall anywhere in the range.
    pick = f"abs(hashint8(id)) % {EVERY * 3}"
    expected: dict[str, set[int]] = {}
    for url in (source_url, target_url):
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(_TABLE)
            await conn.execute(_FILL, rows)
            if url == source_url:  # the target alone has these: extra
                found = await conn.fetch(f"DELETE FROM items WHERE {pick} = 0 RETURNING id")
                expected["extra"] = {r["id"] for r in found}
            else:
                found = await conn.fetch(f"DELETE FROM items WHERE {pick} = 1 RETURNING id")
                expected["missing"] = {r["id"] for r in found}
                found = await conn.fetch(
                    f"UPDATE items SET qty = qty + 1 WHERE {pick} = 2 RETURNING id"
                )
                expected["different"] = {r["id"] for r in found}
            await conn.execute("VACUUM ANALYZE items")
        finally:
            await conn.close()
    return expected


async def _hybridmesh(source_url: str, target_url: str, samples: int) -> dict[str, set[Any]]:
    source = await open_database(source_url)
    target = await open_database(target_url)
    try:
        report = await compare_table(
            source, target, TableMapping("items", "items", ("id",)), sample_limit=samples
        )
    finally:
        await source.close()
        await target.close()
    if max(report.missing, report.extra, report.different) > samples:
        raise AssertionError("more differences than the sample holds: cannot check them")
    return {
        "missing": {k["id"] for k in report.missing_keys},
        "extra": {k["id"] for k in report.extra_keys},
        "different": {d.key["id"] for d in report.differences},
    }


def _reladiff(source_url: str, target_url: str, threads: int | None) -> dict[str, set[Any]]:
    """reladiff's hash diff; its '-' rows are the source's, '+' rows the target's."""
    import reladiff

    options: dict[str, Any] = {}
    if threads:
        options["max_threadpool_size"] = threads * 2
    tables = [
        reladiff.connect_to_table(
            url, "items", "id", thread_count=threads or 1, extra_columns=COLUMNS
        )
        for url in (source_url, target_url)
    ]
    minus: set[int] = set()
    plus: set[int] = set()
    with reladiff.diff_tables(*tables, **options) as diff:
        for sign, row in diff:
            (minus if sign == "-" else plus).add(int(row[0]))
    for table in tables:
        with contextlib.suppress(Exception):
            table.database.close()
    return {"missing": minus - plus, "extra": plus - minus, "different": minus & plus}


async def _timed(work: Callable[[], Any]) -> tuple[float, dict[str, set[Any]]]:
    started = time.perf_counter()
    found = await work()
    return time.perf_counter() - started, found


async def run_reconcile_bench(rows: int = ROWS, *, rounds: int = ROUNDS) -> dict[str, Any]:
    """Make the two tables, time each system ``rounds`` times, check what each found;
    the figures (times in seconds, the ratio of reladiff's median time over ours)."""
    results: dict[str, Any] = {
        "benchmark": "replication_reconcile",
        "machine": machine(),
        "rows": rows,
        "rounds": rounds,
        "systems": LABELS,
    }
    async with fresh_database() as source_url, fresh_database() as target_url:
        started = time.perf_counter()
        expected = await _setup(source_url, target_url, rows)
        results["setup_s"] = round(time.perf_counter() - started, 2)
        results["differences"] = {kind: len(keys) for kind, keys in expected.items()}
        samples = max(len(keys) for keys in expected.values()) + 1
        work: dict[str, Callable[[], Any]] = {
            "hybridmesh": lambda: _hybridmesh(source_url, target_url, samples),
            "reladiff": lambda: asyncio.to_thread(_reladiff, source_url, target_url, None),
            "reladiff_threads": lambda: asyncio.to_thread(_reladiff, source_url, target_url, 4),
        }
        attempts: dict[str, list[dict[str, Any]]] = {name: [] for name in SYSTEMS}
        for name in alternating(SYSTEMS, rounds):
            try:
                seconds, found = await _timed(work[name])
            except Exception as error:
                attempts[name].append(failed_round(error))
                continue
            attempts[name].append(
                {
                    "seconds": round(seconds, 3),
                    "found": {kind: len(keys) for kind, keys in found.items()},
                    "exact": found == expected,
                }
            )
    results["runs"] = {name: _summary(tries) for name, tries in attempts.items()}
    ours = results["runs"]["hybridmesh"].get("median_s")
    for peer in ("reladiff", "reladiff_threads"):
        theirs = results["runs"][peer].get("median_s")
        results[f"speed_vs_{peer}"] = round(theirs / ours, 3) if ours and theirs else None
    results["goal"] = {
        "speed_vs_reladiff_at_least": 1.0,
        "met": bool(results["speed_vs_reladiff"] and results["speed_vs_reladiff"] >= 1.0)
        and all(r.get("exact") for r in results["runs"].values()),
    }
    return results


def _summary(tries: list[dict[str, Any]]) -> dict[str, Any]:
    good = [t for t in tries if "error" not in t]
    if not good:
        return {"rounds": tries}
    return {
        "median_s": round(statistics.median(t["seconds"] for t in good), 3),
        "found": good[-1]["found"],
        "exact": all(t["exact"] for t in good),
        "rounds": tries,
    }


def _print(results: dict[str, Any]) -> None:
    print(f"{results['rows']:,} rows, differences made: {results['differences']}")
    for name, run in results["runs"].items():
        figure = f"{run['median_s']:.3f} s" if "median_s" in run else "failed"
        exact = "every difference found" if run.get("exact") else "NOT EXACT"
        print(f"  {LABELS[name]}: {figure}, found {run.get('found')}: {exact}")
    print(
        f"  speed vs reladiff (defaults): {results['speed_vs_reladiff']}x, "
        f"vs reladiff with 4 threads: {results['speed_vs_reladiff_threads']}x"
    )


def _write(results: dict[str, Any]) -> None:
    write_json("replication_reconcile", results)
    _print(results)


async def run(*, quick: bool = False) -> dict[str, Any]:
    """``python -m benchmarks replication_reconcile``: the benchmark at 1,000,000 rows
    (100,000 with ``quick``), its JSON written to ``benchmarks/results``."""
    results = await run_reconcile_bench(QUICK_ROWS if quick else ROWS)
    results["quick"] = quick
    _write(results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    results = asyncio.run(run_reconcile_bench(args.rows, rounds=args.rounds))
    results["quick"] = args.rows < ROWS
    _write(results)


if __name__ == "__main__":
    main()
