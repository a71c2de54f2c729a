"""What each piece of the gateway's per-request work costs, measured in this process.

Each piece runs on its own in a loop, with the benchmark's route (two weighted backends, a
sticky header, key auth, a rate limit that does not trip) and a request as wrk sends it;
the figure is microseconds of CPU per call, the best of three loops. They add up to the
least the gateway's Python spends on a request besides parsing and the socket writes, which
the bare forwarder pays too.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

CALLS = 20_000

ROUTES = """
routes:
  - name: bench
    match: {path: {prefix: /users}}
    backends:
      - {name: a, url: "http://127.0.0.1:9", weight: 50}
      - {name: b, url: "http://127.0.0.1:9", weight: 50}
    sticky: {header: x-user}
    policies:
      key_auth: {}
      rate_limit: {limit: 100000000, per: second, by: consumer}
"""


def _finish(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """The result of a coroutine that never suspends (the policies' checks here)."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("the check suspended")


def _per_call(work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(3):
        began = time.process_time()
        for _ in range(CALLS):
            work()
        best = min(best, time.process_time() - began)
    return best / CALLS * 1e6


async def measure() -> list[tuple[str, float]]:
    """(piece, microseconds per call), in the order a request meets them."""
    from hybridmesh.core.ids import new_request_id
    from hybridmesh.gateway.access_log import AccessLog
    from hybridmesh.gateway.config import parse_routes
    from hybridmesh.gateway.connection import Incoming
    from hybridmesh.gateway.http import Headers, ProxyRequest
    from hybridmesh.gateway.routing import RouteTable, sticky_key
    from hybridmesh.gateway.server import Gateway, GatewaySettings
    from hybridmesh.gateway.snapshot import ApiKey, Snapshot, key_digest
    from hybridmesh.gateway.stats import WindowRecorder

    secret = "hm_" + "k" * 43
    routes = [loaded.route for loaded in parse_routes(ROUTES, "bench-routes.yaml")]
    keys = {key_digest(secret): ApiKey("key-1", "bench", None, secret[:8], 0.0)}
    snapshot = Snapshot(1, RouteTable(routes), {}, keys)
    gateway = Gateway(GatewaySettings(access_log=False))
    gateway.use(snapshot)
    runtime = gateway.routes["bench"]
    compiled = runtime.compiled
    key_auth, rate_limit = runtime.policies
    backend = runtime.backends["a"]
    pairs = [("host", "127.0.0.1:8800"), ("x-user", "u17"), ("apikey", secret)]
    headers = Headers()
    headers.pairs = pairs
    rng = random.Random(1)

    def request() -> ProxyRequest:
        return ProxyRequest(
            method="GET",
            path="/users/1",
            query="",
            headers=headers,
            body=b"",
            client_ip="127.0.0.1",
            request_id=new_request_id(),
            captures={},
            route="bench",
        )

    checked = request()
    _finish(key_auth.request(checked))
    incoming = Incoming("GET", "/users/1", "", pairs, b"", True, 1)

    class Peer:
        client_ip = "127.0.0.1"

    access = AccessLog(io.StringIO())
    windows = WindowRecorder(None)  # type: ignore[arg-type]  # observe only counts in memory

    pieces: list[tuple[str, Callable[[], object]]] = [
        ("route match", lambda: snapshot.table.match("GET", "127.0.0.1", "/users/1", headers)),
        ("request object and id", request),
        ("key auth", lambda: _finish(key_auth.request(checked))),
        ("rate limit", lambda: _finish(rate_limit.request(checked))),
        (
            "sticky backend choice",
            lambda: compiled.choose(
                sticky_key(compiled.route, headers, "127.0.0.1", None), headers, rng
            ),
        ),
        (
            "forwarded request (headers, trace context)",
            lambda: gateway._message(Peer, incoming, checked, backend),  # type: ignore[arg-type]
        ),
        ("breaker and outlier count", lambda: gateway._answered(compiled.route, backend, 200, 0)),
        ("metrics", lambda: gateway.metrics.observe("bench", "a", 200, 0.001)),
        ("stats window", lambda: windows.observe("bench", "a", 200, 0.001)),
        (
            "access line",
            lambda: access.write(
                method="GET",
                path="/users/1",
                status=200,
                seconds=0.001,
                request_id="r",
                route="bench",
                backend="a",
                client_ip="127.0.0.1",
                trace_id="0" * 32,
            ),
        ),
    ]
    results = [(name, round(_per_call(work), 2)) for name, work in pieces]
    access.flush()
    await gateway.close(grace=0)
    return results


if __name__ == "__main__":
    for name, micros in asyncio.run(measure()):
        print(f"{micros:6.2f} µs  {name}")
