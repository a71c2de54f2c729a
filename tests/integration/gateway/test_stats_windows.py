"""Stats windows through real gateways: two replicas on one store (SQLite and PostgreSQL)
each write their per-second counts, and the window API and `routes stats` merge them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from tests.cli_in_process import run_cli
from tests.integration.gateway.mirror_rig import (
    Upstream,
    apply_routes,
    closed_port_url,
    replica,
    upstream,
)
from tests.waiting import eventually

from hybridmesh.gateway.state import GatewayState
from hybridmesh.gateway.stats import BUCKETS_PER_DECADE, WindowStats, window_stats
from hybridmesh.store import open_store

#: Seconds the slow backend takes to answer.
SLOW = 0.05

ROUTES = """
routes:
  - name: orders
    match: {{path: {{prefix: /orders}}}}
    backends:
      - {{name: fast, url: "{fast}", weight: 100}}
      - {{name: slow, url: "{slow}", weight: 0}}
      - {{name: broken, url: "{broken}", weight: 0}}
      - {{name: down, url: "{down}", weight: 0}}
    header_routes:
      - {{header: x-to, exact: slow, backend: slow}}
      - {{header: x-to, exact: broken, backend: broken}}
      - {{header: x-to, exact: down, backend: down}}
    retries: {{attempts: 0}}
    breaker: {{enabled: false}}
    outlier: {{consecutive_failures: 1000}}
"""


async def ok(request: web.Request) -> web.StreamResponse:
    return web.json_response({"ok": True})


async def slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(SLOW)
    return web.json_response({"ok": True})


async def broken(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": "boom"}, status=500)


class Backends:
    def __init__(self, fast: Upstream, slow: Upstream, broken: Upstream) -> None:
        self.fast, self.slow, self.broken = fast, slow, broken


@pytest.fixture
async def backends() -> AsyncIterator[Backends]:
    async with (
        upstream({"/": ok}) as fast_one,
        upstream({"/": slow}) as slow_one,
        upstream({"/": broken}) as broken_one,
    ):
        yield Backends(fast_one, slow_one, broken_one)


async def test_two_replicas_windows_merge_per_backend(
    backends: Backends, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with await open_store(database_url) as store:
        await store.upgrade()
        await apply_routes(
            store,
            ROUTES.format(
                fast=backends.fast.url,
                slow=backends.slow.url,
                broken=backends.broken.url,
                down=closed_port_url(),
            ),
        )
    sent = {
        "one": {"fast": 7, "slow": 3, "broken": 2, "down": 1},
        "two": {"fast": 5, "slow": 2, "broken": 4, "down": 2},
    }
    async with (
        replica(database_url, name="one") as one,
        replica(database_url, name="two") as two,
    ):
        for gw, name in ((one, "one"), (two, "two")):
            for backend, count in sent[name].items():
                headers = {} if backend == "fast" else {"x-to": backend}
                for _ in range(count):
                    status, _, _ = await gw.get("/orders/1", headers=headers)
                    expected = {"fast": 200, "slow": 200, "broken": 500, "down": 502}[backend]
                    assert status == expected
        total = sum(sum(counts.values()) for counts in sent.values())
        state = GatewayState(one.store)

        async def all_written() -> bool:
            stats = await state.window_stats("orders", 300)
            return stats.requests == total

        await eventually(all_written, what="both replicas' windows written")
        stats = await state.window_stats("orders", 300)
        assert stats.replicas == 2
        assert set(stats.backends) == {"fast", "slow", "broken", "down"}
        for backend, window in stats.backends.items():
            assert window.requests == sent["one"][backend] + sent["two"][backend]
        assert stats.backends["fast"].errors == 0
        assert stats.backends["fast"].error_rate == 0.0
        assert stats.backends["slow"].error_rate == 0.0
        assert stats.backends["broken"].error_rate == 1.0
        assert stats.backends["down"].error_rate == 1.0
        # The slow backend's latencies are at least SLOW; an estimate is within one
        # bucket (a factor of 10**(1/20)) of the truth.
        lowest = SLOW * 1000 / 10 ** (1 / BUCKETS_PER_DECADE)
        slow_window = stats.backends["slow"]
        for p in (slow_window.p50_ms, slow_window.p95_ms, slow_window.p99_ms):
            assert p is not None and p >= lowest
        assert slow_window.p50_ms <= slow_window.p95_ms <= slow_window.p99_ms  # type: ignore[operator]

        # The same store read with the plain function, and nothing outside the window.
        assert (await window_stats(one.store, "orders", 300)).requests == total
        later = await window_stats(one.store, "orders", 60, now=stats.until + 3600)
        assert later.requests == 0 and later.backends == {}

    code, out = await run_cli(
        capsys, database_url, "routes", "stats", "orders", "--window", "5m", "--json"
    )
    assert code == 0, out
    shown = json.loads(out)
    assert shown["route"] == "orders" and shown["window_seconds"] == 300
    assert shown["replicas"] == 2 and shown["requests"] == total
    by_name = {row["backend"]: row for row in shown["backends"]}
    assert by_name["broken"]["error_rate"] == 1.0
    assert by_name["fast"]["requests"] == sent["one"]["fast"] + sent["two"]["fast"]
    assert by_name["slow"]["p50_ms"] >= lowest

    code, out = await run_cli(capsys, database_url, "routes", "stats", "orders", "--window", "1h")
    assert code == 0, out
    assert "broken" in out and "100.00%" in out


async def test_stats_refuses_bad_windows_and_unknown_routes(
    backends: Backends, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with await open_store(sqlite_url) as store:
        await store.upgrade()
        await apply_routes(
            store,
            ROUTES.format(
                fast=backends.fast.url,
                slow=backends.slow.url,
                broken=backends.broken.url,
                down=closed_port_url(),
            ),
        )
    for bad in ("5x", "", "-1s", "0s", "2h", "1.5s", "250ms", "abc"):
        code, out = await run_cli(capsys, sqlite_url, "routes", "stats", "orders", "--window", bad)
        assert code == 2, (bad, out)
        assert "--window" in out
    code, out = await run_cli(capsys, sqlite_url, "routes", "stats", "nowhere", "--window", "30s")
    assert code == 1, out
    code, out = await run_cli(
        capsys, sqlite_url, "routes", "stats", "orders", "--window", "30s", "--json"
    )
    assert code == 0, out
    assert json.loads(out)["requests"] == 0


async def test_a_replica_writes_what_it_counted_when_it_closes(
    backends: Backends, sqlite_url: str
) -> None:
    async with await open_store(sqlite_url) as store:
        await store.upgrade()
        await apply_routes(
            store,
            ROUTES.format(
                fast=backends.fast.url,
                slow=backends.slow.url,
                broken=backends.broken.url,
                down=closed_port_url(),
            ),
        )
    # A flush interval no test waits for: only closing writes the counts.
    async with replica(sqlite_url, name="closing", flush_seconds=3600) as gw:
        for _ in range(4):
            await gw.get("/orders/1")
    async with await open_store(sqlite_url) as store:
        stats: WindowStats = await window_stats(store, "orders", 300, now=_after_now())
        assert stats.backends["fast"].requests == 4


def _after_now() -> float:
    import time

    return time.time() + 1


async def test_a_parallel_run_counts_the_candidates_answers_in_its_own_window(
    backends: Backends, sqlite_url: str
) -> None:
    async with await open_store(sqlite_url) as store:
        await store.upgrade()
        await apply_routes(
            store,
            f"""
routes:
  - name: orders
    match: {{path: {{prefix: /orders}}}}
    backends:
      - {{name: fast, url: "{backends.fast.url}", weight: 100}}
      - {{name: broken, url: "{backends.broken.url}", weight: 0}}
    mirror: {{backend: broken, percent: 100}}
""",
        )
    async with replica(sqlite_url, name="one") as one:
        for _ in range(4):
            status, _, _ = await one.get("/orders/1")
            assert status == 200  # the client only ever sees the primary
        state = GatewayState(one.store)

        async def counted() -> bool:
            stats = await state.window_stats("orders", 300)
            return stats.backends.get("mirror:broken") is not None and (
                stats.backends["mirror:broken"].requests == 4
            )

        await eventually(counted, what="the copies counted")
        stats = await state.window_stats("orders", 300)
        assert stats.backends["fast"].error_rate == 0.0
        assert stats.backends["mirror:broken"].error_rate == 1.0


async def test_an_ejected_backends_share_counts_against_it_not_the_one_that_answered(
    backends: Backends, database_url: str
) -> None:
    """While a failing backend is ejected, the gateway sends its share elsewhere; the
    windows still count that share against the failing backend, so a migration gate does
    not see a dead new service as a healthy one with a few errors."""
    routes = f"""
routes:
  - name: split
    match: {{path: {{prefix: /orders}}}}
    backends:
      - {{name: old, url: "{backends.fast.url}", weight: 50}}
      - {{name: new, url: "{backends.broken.url}", weight: 50}}
    retries: {{attempts: 0}}
    breaker: {{enabled: false}}
    outlier: {{consecutive_failures: 2, base_ejection: 60}}
"""
    async with await open_store(database_url) as store:
        await store.upgrade()
        await apply_routes(store, routes)
    async with replica(database_url, name="one") as gw:
        statuses = [(await gw.get("/orders/1"))[0] for _ in range(60)]
        state = GatewayState(gw.store)

        async def written() -> bool:
            return (await state.window_stats("split", 300)).requests == 60

        await eventually(written, what="the windows written")
        stats = await state.window_stats("split", 300)
    assert statuses.count(500) == 2  # new answered twice, then was ejected
    new, old = stats.backends["new"], stats.backends["old"]
    assert new.requests > 10 and new.error_rate == 1.0
    assert old.errors == 0 and old.requests + new.requests == 60
