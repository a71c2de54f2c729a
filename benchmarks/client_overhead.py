"""Client overhead: ``HybridClient.communicate()`` against a raw aiohttp call.

Both call the same local service (a separate process) with a REST query, at concurrency 1
and 32, alternating rounds so that drift on the machine hits both alike. The client runs
with everything on: strategy selection, circuit breaker, retry, timeout, bulkhead, trace
context and Prometheus metrics. It is measured twice: with the default tracing settings (no
exporter: trace ids are propagated, spans are not recorded) and with spans recorded and
handed to an exporter that drops them.

Goal: client p95 <= 1.10x raw's, client throughput >= 0.90x raw's, measured in the same run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from rich.progress import Progress

from benchmarks._report import LatencySummary, machine, write_json, write_section
from benchmarks._upstream import upstream
from hybridmesh.client import CommunicationRequest, HybridClient
from hybridmesh.observability import MeshMetrics, configure_tracing
from hybridmesh.registry import ServiceDefinition, ServiceRegistry

Call = Callable[[], Awaitable[Any]]


class _Discard(SpanExporter):
    """Receives every finished span and drops it: the cost of recording, not of shipping."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def _measure(call: Call, concurrency: int, total: int) -> LatencySummary:
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
    rounds = 2 if quick else 4
    configure_tracing()
    results: dict[str, Any] = {"benchmark": "client_overhead", "machine": machine(), "runs": {}}
    with upstream() as base_url:
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
                    task = progress.add_task("client overhead", total=3 * len(per_round) * rounds)
                    for concurrency, total in per_round.items():
                        samples: dict[str, list[LatencySummary]] = {
                            "raw": [],
                            "client": [],
                            "client_spans": [],
                        }
                        for _ in range(rounds):
                            for name, call in (
                                ("raw", raw),
                                ("client", hybrid),
                                ("client_spans", hybrid),
                            ):
                                if name == "client_spans":
                                    configure_tracing(exporter=_Discard())
                                samples[name].append(await _measure(call, concurrency, total))
                                if name == "client_spans":
                                    configure_tracing()
                                progress.advance(task)
                        results["runs"][f"c{concurrency}"] = _summarise(samples)
    write_json("client_overhead", results)
    write_section("client_overhead", _markdown(results, quick))
    return results


def _summarise(samples: dict[str, list[LatencySummary]]) -> dict[str, Any]:
    def pooled(runs: list[LatencySummary]) -> dict[str, float]:
        # Median of the rounds: robust against one disturbed round.
        def med(attr: str) -> float:
            return float(sorted(getattr(r, attr) for r in runs)[len(runs) // 2])

        return {
            "requests": sum(r.requests for r in runs),
            "throughput": med("throughput"),
            "p50_ms": med("p50_ms"),
            "p95_ms": med("p95_ms"),
            "p99_ms": med("p99_ms"),
        }

    raw, client = pooled(samples["raw"]), pooled(samples["client"])
    spans = pooled(samples["client_spans"])
    return {
        "raw": raw,
        "client": client,
        "client_spans": spans,
        "spans_p95_ratio": round(spans["p95_ms"] / raw["p95_ms"], 3),
        "spans_throughput_ratio": round(spans["throughput"] / raw["throughput"], 3),
        "p95_ratio": round(client["p95_ms"] / raw["p95_ms"], 3),
        "p50_ratio": round(client["p50_ms"] / raw["p50_ms"], 3),
        "throughput_ratio": round(client["throughput"] / raw["throughput"], 3),
        "rounds": [
            {"raw": r.as_dict(), "client": c.as_dict()}
            for r, c in zip(samples["raw"], samples["client"], strict=True)
        ],
    }


def _markdown(results: dict[str, Any], quick: bool) -> str:
    flag = " --quick" if quick else ""
    lines = [
        "## Client overhead (`benchmarks/client_overhead.py`)",
        "",
        "`HybridClient.communicate()` (REST query through strategy selection, breaker, retry, "
        "timeout, bulkhead, trace context and metrics, sent by the REST transport's own "
        "keep-alive HTTP/1.1 pool) against a raw aiohttp GET to the same local service, in "
        "one run. *client* uses the default tracing settings (no exporter: "
        "trace ids propagate, spans are not recorded); *client+spans* records both spans of "
        "every call and hands them to an exporter. "
        f"Command: `make bench` (`python -m benchmarks client_overhead{flag}`). "
        f"Machine: {results['machine']['cpus']} CPUs, Python {results['machine']['python']}, "
        f"{results['machine']['date']}.",
        "",
        "| concurrency | variant | p50 ms | p95 ms | req/s | p95 ratio (goal ≤ 1.10) "
        "| throughput ratio (goal ≥ 0.90) |",
        "|---|---|---|---|---|---|---|",
    ]

    def verdict(value: float, ok: bool) -> str:
        return f"{value:.2f} ({'met' if ok else 'missed'})"

    for key, run in results["runs"].items():
        raw = run["raw"]
        lines.append(
            f"| {key[1:]} | raw aiohttp | {raw['p50_ms']:.3f} | {raw['p95_ms']:.3f} "
            f"| {raw['throughput']:.0f} | 1.00 | 1.00 |"
        )
        for label, figures, p95, tput in (
            ("client", run["client"], run["p95_ratio"], run["throughput_ratio"]),
            (
                "client+spans",
                run["client_spans"],
                run["spans_p95_ratio"],
                run["spans_throughput_ratio"],
            ),
        ):
            lines.append(
                f"| {key[1:]} | {label} | {figures['p50_ms']:.3f} | {figures['p95_ms']:.3f} "
                f"| {figures['throughput']:.0f} | {verdict(p95, p95 <= 1.10)} "
                f"| {verdict(tput, tput >= 0.90)} |"
            )
    return "\n".join(lines)
