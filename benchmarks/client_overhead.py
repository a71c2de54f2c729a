"""Client overhead: ``HybridClient.communicate()`` against a raw aiohttp call.

Both call the same local service (a separate process) with a REST query, at concurrency 1
and 32, in rounds whose order rotates so that drift on the machine hits every variant alike.
The client runs with everything on: strategy selection, circuit breaker, retry, timeout,
bulkhead, trace context and Prometheus metrics. It is measured with the default tracing
settings (no exporter: trace ids are propagated, spans are not recorded), and with spans
recorded and exported over OTLP/HTTP to a stand-in collector (another process on loopback
that decodes every export and counts its spans), sampling every trace and one in ten
(``OTEL_TRACES_SAMPLER=parentbased_traceidratio``, ``OTEL_TRACES_SAMPLER_ARG=0.1``).

Goals, measured in the same run: client p95 <= 1.10x raw's and throughput >= 0.90x raw's;
with spans recorded and exported, p95 <= 1.25x raw's and throughput >= 0.80x raw's.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from rich.progress import Progress

from benchmarks._collector import collector, spans_received
from benchmarks._report import LatencySummary, machine, write_json, write_section
from benchmarks._upstream import upstream
from hybridmesh.client import CommunicationRequest, HybridClient
from hybridmesh.core.settings import Settings
from hybridmesh.observability import MeshMetrics, configure_tracing
from hybridmesh.registry import ServiceDefinition, ServiceRegistry

Call = Callable[[], Awaitable[Any]]

#: Variant name, label, tracing settings (None: the defaults), goals (p95, throughput).
VARIANTS: list[tuple[str, str, dict[str, Any] | None, tuple[float, float] | None]] = [
    ("raw", "raw aiohttp", None, None),
    ("client", "client", None, (1.10, 0.90)),
    (
        "client_spans",
        "client + spans, all sampled",
        {"otel_traces_sampler": "parentbased_always_on"},
        (1.25, 0.80),
    ),
    (
        "client_spans_10",
        "client + spans, 10 % sampled",
        {"otel_traces_sampler": "parentbased_traceidratio", "otel_traces_sampler_arg": "0.1"},
        (1.25, 0.80),
    ),
]


async def _measure(
    call: Call, concurrency: int, total: int, finish: Callable[[], object] = lambda: None
) -> LatencySummary:
    """``total`` calls from ``concurrency`` workers; the time includes ``finish()`` (the
    export of the spans still queued when the last call returns)."""
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            began = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    finish()
    return LatencySummary.of(latencies, time.perf_counter() - began)


def _registry(base_url: str) -> ServiceRegistry:
    def service(name: str) -> ServiceDefinition:
        return ServiceDefinition.model_validate(
            {
                "name": name,
                "architecture": "microservice",
                "base_url": base_url,
                "version": "v1",
                "capabilities": {"synchronous": True},
            }
        )

    return ServiceRegistry([service("bench-caller"), service("bench-target")])


async def run(*, quick: bool = False) -> dict[str, Any]:
    """Run the benchmark, write its JSON and its section of docs/benchmarks.md."""
    per_round = {1: 400 if quick else 2_000, 32: 1_000 if quick else 8_000}
    rounds = 2 if quick else 7
    configure_tracing()
    results: dict[str, Any] = {"benchmark": "client_overhead", "machine": machine(), "runs": {}}
    # The load is kept with the figures: other work on the machine moves them.
    results["load_before"] = [round(x, 2) for x in os.getloadavg()]
    with upstream() as base_url, collector() as collector_url:
        exporting = Settings(otel_exporter="otlp", otlp_endpoint=f"{collector_url}/v1/traces")
        url = f"{base_url}/users/1"
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def raw() -> Any:
                async with session.get(url, headers={"Accept": "application/json"}) as resp:
                    return await resp.json()

            client = HybridClient(_registry(base_url), metrics=MeshMetrics())
            request = CommunicationRequest(type="query", method="GET", endpoint="/users/1")

            async def hybrid() -> Any:
                return (await client.communicate("bench-caller", "bench-target", request)).data

            async with client:
                for _ in range(200):  # warm both paths: connections, caches, JIT-free warmup
                    await raw()
                    await hybrid()
                with Progress(transient=True) as progress:
                    task = progress.add_task(
                        "client overhead", total=len(VARIANTS) * len(per_round) * rounds
                    )
                    for concurrency, total in per_round.items():
                        samples: dict[str, list[LatencySummary]] = {v[0]: [] for v in VARIANTS}
                        exported: dict[str, int] = {v[0]: 0 for v in VARIANTS}
                        for number in range(rounds):
                            shift = number % len(VARIANTS)
                            for name, _, tracing, _ in VARIANTS[shift:] + VARIANTS[:shift]:
                                before = spans_received(collector_url)
                                if tracing is not None:
                                    configure_tracing(exporting.model_copy(update=tracing))
                                call = raw if name == "raw" else hybrid
                                # The round ends when its spans are sent: the next
                                # configuration flushes the exporter and stops it.
                                samples[name].append(
                                    await _measure(call, concurrency, total, configure_tracing)
                                )
                                exported[name] += spans_received(collector_url) - before
                                progress.advance(task)
                        results["runs"][f"c{concurrency}"] = _summarise(samples, exported)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    write_json("client_overhead", results)
    write_section("client_overhead", _markdown(results, quick))
    return results


def _summarise(
    samples: dict[str, list[LatencySummary]], exported: dict[str, int]
) -> dict[str, Any]:
    def med(runs: list[LatencySummary], attr: str) -> float:
        # Median of the rounds: robust against one disturbed round.
        return float(statistics.median(getattr(r, attr) for r in runs))

    raw = samples["raw"]
    summary: dict[str, Any] = {}
    for name, _, _, _ in VARIANTS:
        runs = samples[name]
        # Ratios are taken round by round, against raw in the same round, then the median.
        throughput = [r.throughput / w.throughput for r, w in zip(runs, raw, strict=True)]
        p95 = [r.p95_ms / w.p95_ms for r, w in zip(runs, raw, strict=True)]
        summary[name] = {
            "requests": sum(r.requests for r in runs),
            "spans_exported": exported[name],
            "throughput": med(runs, "throughput"),
            "p50_ms": med(runs, "p50_ms"),
            "p95_ms": med(runs, "p95_ms"),
            "p99_ms": med(runs, "p99_ms"),
            "throughput_ratio": round(statistics.median(throughput), 3),
            "p95_ratio": round(statistics.median(p95), 3),
            "round_throughput_ratios": [round(x, 3) for x in throughput],
            "round_p95_ratios": [round(x, 3) for x in p95],
            "rounds": [r.as_dict() for r in runs],
        }
    return summary


def _markdown(results: dict[str, Any], quick: bool) -> str:
    flag = " --quick" if quick else ""
    lines = [
        "## Client overhead (`benchmarks/client_overhead.py`)",
        "",
        "`HybridClient.communicate()` (REST query through strategy selection, breaker, retry, "
        "timeout, bulkhead, trace context and metrics, sent by the REST transport's own "
        "keep-alive HTTP/1.1 pool) against a raw aiohttp GET to the same local service, in "
        "one run. *client* uses the default tracing settings (no exporter: trace ids "
        "propagate and log lines carry them, spans are not recorded). *client + spans* "
        "records the call's span and its attempt's span and exports them over OTLP/HTTP "
        "(binary protobuf, batched from a thread) to a stand-in collector in another "
        "process on loopback, which decodes every export and counts its spans (*spans "
        "exported*); *all sampled* is `OTEL_TRACES_SAMPLER=parentbased_always_on`, *10 % "
        "sampled* is `parentbased_traceidratio` with `OTEL_TRACES_SAMPLER_ARG=0.1`. The "
        "variants run in rounds of rotating order; figures are the median round, and a "
        "ratio is the median over the rounds of the variant's figure over raw's in the same "
        f"round. Command: `make bench` (`python -m benchmarks client_overhead{flag}`). "
        f"Machine: {results['machine']['cpus']} CPUs, Python {results['machine']['python']}, "
        f"{results['machine']['date']}; load average {results['load_before'][0]:.2f} "
        f"before, {results['load_after'][0]:.2f} after.",
        "",
        "| concurrency | variant | p50 ms | p95 ms | req/s | spans exported "
        "| p95 ratio (goal) | throughput ratio (goal) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, run in results["runs"].items():
        for name, label, _, goals in VARIANTS:
            row = run[name]
            if goals is None:
                p95, tput = "1.00", "1.00"
            else:
                p95 = _verdict(row["p95_ratio"], goals[0], row["p95_ratio"] <= goals[0])
                tput = _verdict(
                    row["throughput_ratio"], goals[1], row["throughput_ratio"] >= goals[1]
                )
            lines.append(
                f"| {key[1:]} | {label} | {row['p50_ms']:.3f} | {row['p95_ms']:.3f} "
                f"| {row['throughput']:.0f} | {row['spans_exported']:,} | {p95} | {tput} |"
            )
    return "\n".join(lines)


def _verdict(value: float, goal: float, ok: bool) -> str:
    sign = "≤" if goal > 1 else "≥"
    return f"{value:.2f} ({sign} {goal:.2f}: {'met' if ok else 'missed'})"
