"""Writing results: JSON per benchmark, and one section per benchmark in docs/benchmarks.md."""

from __future__ import annotations

import json
import platform
import re
import statistics
import traceback
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"

_HEADER = """# Benchmarks

Every figure here comes from `make bench`, which runs each benchmark and its peer side by side
in one run on the same machine, writes `benchmarks/results/<name>.json`, and rewrites its own
section below. A speed goal is a ratio against a peer measured in the same run, never an
absolute timing, so a machine that runs faster or slower moves both sides alike. The goals:

- **Client overhead:** `HybridClient.communicate()` against a raw aiohttp GET to the same
  service: p95 latency at most 1.10 times raw's, throughput at least 0.90 times raw's; with
  every call's spans recorded and exported over OTLP, at most 1.25 times and at least 0.80
  times, at concurrency 32.
- **Event bus:** on NATS JetStream, throughput at least 0.85 times raw nats-py's and at least
  1.00 times FastStream's, on the same server; on Kafka, at least 0.85 times raw aiokafka's
  and at least 1.00 times FastStream's, on the same broker. The SQL log has no broker peer;
  its reference is its own database: throughput at least 0.50 times that of a plain loop
  (`sqlite3` for SQLite, asyncpg for PostgreSQL) that appends the same rows in the same
  batches and reads them back in order, on SQLite and on PostgreSQL. A consumer group that
  wants one type: its p95 latency beside 1,500 events/s of other types at most 2.0 times its
  p95 with no other traffic, and catching up past 50,000 events of other types in under
  0.5 s (an absolute bound: what it replaces took tens of seconds), on SQLite and on
  PostgreSQL.
- **Saga engine:** peak throughput of five-step sagas at least 0.50 times that of the same
  five calls made through raw aiohttp with nothing saved, on SQLite and on PostgreSQL; on
  PostgreSQL also at least 1.00 times DBOS Transact's on the same server.
- **Gateway:** one `hybridmesh gateway` process against one nginx worker, both proxying to
  the same upstream with keep-alive, driven by wrk: throughput at least 0.5 times nginx's
  at 64 connections, and at most 1 ms added to the direct call's p50 at one connection;
  during a live 0 to 100 % weight shift under load, no failed request and no sticky user
  sent back to the old side.
- **Reliability** (outcomes, not speed): with faults injected and one of two workers killed,
  every one of 1,000 order sagas ends completed or compensated and none is left half done;
  the stock held by reservations equals the units of the completed orders; at least 99.5 %
  complete; no order is charged twice or charged without completing.
- **Migration plans** (outcomes and one time): a plan driven by `hybridmesh migrate runner`
  processes through a real gateway under load completes although its runner is killed
  mid-window, with no step started twice and the gateway's weight never apart from the
  plan's; a target that starts failing is rolled back to 0 % within one gate interval + 1 s;
  a healthy plan from 0 to 100 % fails no request.
"""


@dataclass(frozen=True)
class LatencySummary:
    """Latency percentiles (milliseconds) and throughput of one measured run."""

    requests: int
    seconds: float
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @classmethod
    def of(cls, latencies: list[float], seconds: float) -> LatencySummary:
        ordered = sorted(latencies)
        q = statistics.quantiles(ordered, n=100, method="inclusive")
        return cls(
            requests=len(ordered),
            seconds=round(seconds, 4),
            throughput=round(len(ordered) / seconds, 1),
            p50_ms=round(q[49] * 1000, 4),
            p95_ms=round(q[94] * 1000, 4),
            p99_ms=round(q[98] * 1000, 4),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def alternating(names: list[str], rounds: int) -> list[str]:
    """``names`` ``rounds`` times over, every other round reversed, so no section always
    runs first (or right after a heavy one)."""
    schedule: list[str] = []
    for r in range(rounds):
        schedule += names if r % 2 == 0 else names[::-1]
    return schedule


def failed_round(error: BaseException) -> dict[str, Any]:
    """What a round that raised records instead of figures (call it in the ``except``)."""
    return {
        "error": f"{type(error).__name__}: {error}".strip(),
        "traceback": traceback.format_exc(),
    }


def best_rounds(attempts: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each section's round with the highest throughput (its last failure if none worked),
    with every round kept under ``rounds`` when there were several."""
    runs: dict[str, dict[str, Any]] = {}
    for name, tries in attempts.items():
        good = [t for t in tries if "error" not in t]
        best = max(good, key=lambda t: float(t["throughput"])) if good else tries[-1]
        runs[name] = {**best, "rounds": tries} if len(tries) > 1 else best
    return runs


def median_rounds(attempts: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each section's median round by throughput (of an even number, the higher of the
    middle two; its last failure if none worked), with every round kept under ``rounds``
    when there were several."""
    runs: dict[str, dict[str, Any]] = {}
    for name, tries in attempts.items():
        good = sorted((t for t in tries if "error" not in t), key=lambda t: float(t["throughput"]))
        middle = good[len(good) // 2] if good else tries[-1]
        runs[name] = {**middle, "rounds": tries} if len(tries) > 1 else middle
    return runs


def paired_ratios(
    attempts: dict[str, list[dict[str, Any]]], name: str, peer: str, key: str = "throughput"
) -> list[float]:
    """Round by round, ``name``'s figure ``key`` (throughput) over ``peer``'s in the same
    round (rounds in which either failed or has none left out). Rows measured in one round
    ran minutes apart at most, so a machine that drifts in speed moves both figures of a
    pair alike."""
    pairs = zip(attempts.get(name, []), attempts.get(peer, []), strict=False)
    return [
        round(float(ours[key]) / float(theirs[key]), 3)
        for ours, theirs in pairs
        if "error" not in ours and "error" not in theirs and ours.get(key) and theirs.get(key)
    ]


def figure(runs: dict[str, Any], name: str, key: str = "throughput") -> float | None:
    """A section's figure, or None when it failed or has none."""
    value = runs.get(name, {}).get(key)
    return float(value) if value else None


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """``ours / theirs`` to three places, or None when either is missing."""
    return round(ours / theirs, 3) if ours and theirs else None


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def write_section(name: str, markdown: str) -> None:
    """Replace (or append) the section of ``name`` in docs/benchmarks.md."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else _HEADER
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _m: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    DOC.write_text(text)
