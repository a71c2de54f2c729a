"""The rate_limit policy through a real gateway: N requests pass, the next is 429 with
Retry-After and never reaches the backend; callers are counted apart; the RateLimit headers
(draft-ietf-httpapi-ratelimit-headers-11) are on every answer; replicas count together in
Redis, and let requests through when Redis cannot be reached."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio
from tests.integration.gateway.policy_harness import Upstream, gateways

from hybridmesh.core.errors import ValidationError
from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.policies import rate_limit

#: A fixed time: every request of a test falls in the same windows, which end 1770 s (the
#: hour), 30 s (the minute) and 1 s (the second) later.
HOUR_START = 1_750_000_000 // 3600 * 3600
NOW = HOUR_START + 1830.0


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rate_limit, "wall_clock", lambda: NOW)


def routes(upstream: Upstream, policy: str, name: str = "orders") -> str:
    return f"""
routes:
  - name: {name}
    match: {{path: {{prefix: /orders}}}}
    backends: [{{name: legacy, url: "{upstream.url}", weight: 100}}]
    policies:
      rate_limit: {policy}
"""


async def test_n_requests_pass_then_429_with_retry_after_never_reaching_the_backend(
    tmp_path: Path,
) -> None:
    async with (
        Upstream().running() as upstream,
        gateways(tmp_path, routes(upstream, "{limit: 3, per: hour, by: ip}")) as gw,
        aiohttp.ClientSession() as http,
    ):
        for remaining in (2, 1, 0):
            async with http.get(gw.url + "/orders/1") as answer:
                assert answer.status == 200
                assert answer.headers["RateLimit-Policy"] == '"default";q=3;w=3600'
                assert answer.headers["RateLimit"] == f'"default";r={remaining};t=1770'
                assert "Retry-After" not in answer.headers
        async with http.get(gw.url + "/orders/1") as refused:
            assert refused.status == 429
            assert refused.headers["Content-Type"] == "application/problem+json"
            assert refused.headers["Retry-After"] == "1770"
            assert refused.headers["RateLimit-Policy"] == '"default";q=3;w=3600'
            assert refused.headers["RateLimit"] == '"default";r=0;t=1770'
            problem = await refused.json(content_type=None)
        assert len(upstream.seen) == 3
    assert problem["status"] == 429
    assert problem["type"] == "https://iana.org/assignments/http-problem-types#quota-exceeded"
    assert problem["violated-policies"] == ["default"]
    assert problem["request_id"] == refused.headers["X-Request-ID"]


async def test_a_second_window_resets_on_the_next_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [NOW]
    monkeypatch.setattr(rate_limit, "wall_clock", lambda: now[0])
    async with (
        Upstream().running() as upstream,
        gateways(tmp_path, routes(upstream, "{limit: 1, per: second, by: ip}")) as gw,
        aiohttp.ClientSession() as http,
    ):
        statuses = []
        for _ in range(2):
            async with http.get(gw.url + "/orders") as answer:
                statuses.append(answer.status)
                retry_after = answer.headers.get("Retry-After")
        now[0] += 1  # the next second: a new window
        async with http.get(gw.url + "/orders") as answer:
            statuses.append(answer.status)
    assert statuses == [200, 429, 200]
    assert retry_after == "1"
    assert len(upstream.seen) == 2


@pytest.mark.parametrize("by", ["ip", "consumer", "credential"])
async def test_each_client_address_is_counted_apart(tmp_path: Path, by: str) -> None:
    """``by: ip``, and ``consumer``/``credential`` for requests no authentication named
    (they fall back to the address)."""
    async with (
        Upstream().running() as upstream,
        gateways(tmp_path, routes(upstream, f"{{limit: 1, per: minute, by: {by}}}")) as gw,
        aiohttp.ClientSession() as first,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        ) as second,
    ):
        statuses = []
        for http in (first, first, second, second):
            async with http.get(gw.url + "/orders") as answer:
                statuses.append(answer.status)
    assert statuses == [200, 429, 200, 429]
    assert [seen.headers["X-Forwarded-For"] for seen in upstream.seen] == [
        "127.0.0.1",
        "127.0.0.2",
    ]


async def test_by_header_counts_each_value_and_requests_without_it_by_address(
    tmp_path: Path,
) -> None:
    policy = "{limit: 1, per: minute, by: header, header: X-Tenant}"
    async with (
        Upstream().running() as upstream,
        gateways(tmp_path, routes(upstream, policy)) as gw,
        aiohttp.ClientSession() as http,
    ):
        statuses = []
        for tenant in ("a", "a", "b", None, None, "c" * 1000, "c" * 1000):
            headers = {"X-Tenant": tenant} if tenant is not None else {}
            async with http.get(gw.url + "/orders", headers=headers) as answer:
                statuses.append(answer.status)
    assert statuses == [200, 429, 200, 200, 429, 200, 429]
    assert len(upstream.seen) == 4


async def test_by_path_counts_each_path(tmp_path: Path) -> None:
    async with (
        Upstream().running() as upstream,
        gateways(tmp_path, routes(upstream, "{limit: 1, per: minute, by: path}")) as gw,
        aiohttp.ClientSession() as http,
    ):
        statuses = []
        for path in ("/orders/1", "/orders/1", "/orders/2", "/orders/1?page=2"):
            async with http.get(gw.url + path) as answer:
                statuses.append(answer.status)
    assert statuses == [200, 429, 200, 429]
    assert [seen.path for seen in upstream.seen] == ["/orders/1", "/orders/2"]


async def test_hide_headers_and_a_named_policy(tmp_path: Path) -> None:
    async with (
        Upstream().running() as upstream,
        gateways(
            tmp_path,
            routes(upstream, "{limit: 1, per: minute, by: ip, hide_headers: true}", "a")
            + routes(upstream, "{limit: 5, per: minute, by: ip, name: erp-min}", "b")
            .replace("routes:\n", "")
            .replace("/orders", "/stock"),
        ) as gw,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(gw.url + "/orders") as hidden:
            assert "RateLimit" not in hidden.headers
            assert "RateLimit-Policy" not in hidden.headers
        async with http.get(gw.url + "/orders") as refused:
            assert refused.status == 429
            assert refused.headers["Retry-After"] == "30"
            assert "RateLimit" not in refused.headers
        async with http.get(gw.url + "/stock") as named:
            assert named.headers["RateLimit-Policy"] == '"erp-min";q=5;w=60'
            assert named.headers["RateLimit"] == '"erp-min";r=4;t=30'


async def test_counts_go_on_across_route_revisions(tmp_path: Path) -> None:
    """Creating a key or changing any route rebuilds every route's policies: a caller's
    count must not start again."""
    async with (
        Upstream().running() as upstream,
        gateways(tmp_path, routes(upstream, "{limit: 2, per: hour, by: ip}")) as gw,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(gw.url + "/orders") as answer:
            assert answer.status == 200
        await gw.state.create_key("alice")
        await gw.reload()
        statuses = []
        for _ in range(2):
            async with http.get(gw.url + "/orders") as answer:
                statuses.append(answer.status)
    assert statuses == [200, 429]
    assert len(upstream.seen) == 2


def test_by_header_needs_the_header_name() -> None:
    text = """
routes:
  - name: orders
    backends: [{name: legacy, url: "http://127.0.0.1:9", weight: 100}]
    policies:
      rate_limit: {limit: 1, per: minute, by: header}
"""
    with pytest.raises(ValidationError) as raised:
        parse_routes(text, "routes.yaml")
    [problem] = raised.value.problems
    assert (problem.file, problem.line, problem.field) == ("routes.yaml", 6, "policies.rate_limit")
    assert "header" in problem.message


# -- shared through Redis --------------------------------------------------------------------


@pytest.fixture
def route_name(redis_url: str) -> Iterator[str]:
    """A route name of this test's own, so its Redis keys (``hybridmesh:rl:NAME:...``) are
    too; they are removed afterwards."""
    name = f"rl-{uuid.uuid4().hex[:12]}"
    yield name

    async def clean() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            keys = [key async for key in client.scan_iter(f"{rate_limit.KEY_PREFIX}:{name}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    asyncio.run(clean())


@pytest.mark.redis
async def test_two_replicas_share_one_limit_through_redis(
    tmp_path: Path, redis_url: str, route_name: str
) -> None:
    limit = 10
    async with (
        Upstream().running() as upstream,
        gateways(
            tmp_path,
            routes(upstream, f"{{limit: {limit}, per: hour, by: ip}}", route_name),
            replicas=2,
            redis_url=redis_url,
        ) as gw,
        aiohttp.ClientSession() as http,
    ):

        async def call(url: str) -> int:
            async with http.get(url + "/orders") as answer:
                await answer.read()
                return answer.status

        # Both replicas at once, three times the limit in all.
        statuses = await asyncio.gather(*(call(url) for url in gw.urls * (3 * limit // 2)))
    # The count is one atomic increment per request in Redis: within a window the replicas
    # allow exactly the limit between them (no tolerance needed).
    assert statuses.count(200) == limit
    assert statuses.count(429) == 2 * limit
    assert len(upstream.seen) == limit


async def test_requests_pass_unchecked_when_redis_cannot_be_reached(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.WARNING, logger="hybridmesh.gateway.rate_limit")
    async with (
        Upstream().running() as upstream,
        gateways(
            tmp_path,
            routes(upstream, "{limit: 1, per: hour, by: ip}"),
            redis_url=f"redis://127.0.0.1:{port}/0",
        ) as gw,
        aiohttp.ClientSession() as http,
    ):
        statuses = []
        for _ in range(3):
            async with http.get(gw.url + "/orders") as answer:
                statuses.append(answer.status)
                assert "RateLimit" not in answer.headers
        failed_open = gw.replicas[0].metrics.sample(
            "hybridmesh_gateway_fail_open_total", route="orders", policy="rate_limit"
        )
    assert statuses == [200, 200, 200]
    assert len(upstream.seen) == 3
    assert failed_open == 3
    warnings = [r.getMessage() for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per request
