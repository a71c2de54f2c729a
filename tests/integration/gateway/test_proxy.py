"""The gateway in front of real upstreams on loopback: proxying, hygiene and failures."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.server import Gateway, GatewaySettings
from hybridmesh.gateway.state import GatewayState
from hybridmesh.store import open_store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Upstream:
    """A real HTTP server that records what reached it."""

    def __init__(
        self, name: str, handler: Handler | None = None, *, record_body: bool = True
    ) -> None:
        self.name = name
        self.handler = handler
        self.record_body = record_body  # False: the handler reads the body as it comes
        self.seen: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read() if self.record_body else b""
        self.seen.append(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": dict(request.headers),
                "body": body,
            }
        )
        if self.handler is not None:
            return await self.handler(request)
        return web.json_response({"who": self.name, "path": request.path_qs, "body": body.decode()})

    async def start(self) -> Upstream:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.upstreams: list[Upstream] = []
        self.gateway: Gateway | None = None
        self.state: GatewayState | None = None
        self.base = ""
        self._store: Any = None

    async def upstream(
        self, name: str, handler: Handler | None = None, *, record_body: bool = True
    ) -> Upstream:
        server = await Upstream(name, handler, record_body=record_body).start()
        self.upstreams.append(server)
        return server

    async def start(self, routes_yaml: str, settings: GatewaySettings | None = None) -> str:
        self._store = await open_store(f"sqlite:///{self.tmp_path / 'mesh.db'}")
        await self._store.upgrade()
        self.state = GatewayState(self._store)
        await self.state.apply(parse_routes(routes_yaml, "routes.yaml"))
        self.gateway = Gateway(settings or GatewaySettings(access_log=False))
        self.gateway.use(await self.state.snapshot())
        host, port = await self.gateway.start("127.0.0.1", 0)
        self.base = f"http://{host}:{port}"
        return self.base

    async def reload(self) -> None:
        assert self.gateway is not None and self.state is not None
        self.gateway.use(await self.state.snapshot())

    async def close(self) -> None:
        if self.gateway is not None:
            await self.gateway.close(grace=1)
        for server in self.upstreams:
            await server.close()
        if self._store is not None:
            await self._store.close()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        await h.close()


async def raw(base: str, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send ``data`` on a new connection and read until the gateway closes it."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(-1), read_timeout)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def one_backend(url: str, extra: str = "", name: str = "app", match: str = "{prefix: /}") -> str:
    return f"""
routes:
  - name: {name}
    match: {{path: {match}}}
    backends:
      - {{name: main, url: "{url}", weight: 100}}
{extra}
"""


async def test_requests_reach_the_backend_as_sent_with_forwarding_headers(harness: Harness) -> None:
    app = await harness.upstream("app")
    base = await harness.start(
        one_backend(app.url + "/base", "    strip_prefix: true\n", match="{prefix: /shop}")
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            base + "/shop/orders?x=1&y=2",
            data=b'{"n": 1}',
            headers={
                "Host": "shop.example.com",
                "X-Request-ID": "req-123",
                "X-Forwarded-For": "203.0.113.9",
                "Connection": "keep-alive, x-secret",
                "X-Secret": "hop",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            },
        ) as response,
    ):
        assert response.status == 200
        assert response.headers["X-Request-ID"] == "req-123"
        assert await response.json() == {
            "who": "app",
            "path": "/base/orders?x=1&y=2",
            "body": '{"n": 1}',
        }
    [seen] = app.seen
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-forwarded-host"] == "shop.example.com"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-request-id"] == "req-123"
    assert headers["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert "x-secret" not in headers  # named in Connection: hop-by-hop
    assert headers["host"] == app.url.removeprefix("http://")


async def test_a_request_without_trace_or_id_gets_both(harness: Harness) -> None:
    app = await harness.upstream("app")
    base = await harness.start(one_backend(app.url))
    async with aiohttp.ClientSession() as session, session.get(base + "/x") as response:
        request_id = response.headers["X-Request-ID"]
    headers = {k.lower(): v for k, v in app.seen[0]["headers"].items()}
    assert headers["x-request-id"] == request_id and len(request_id) == 32
    assert headers["traceparent"].startswith("00-") and len(headers["traceparent"]) == 55


async def test_keep_alive_serves_many_requests_on_one_connection(harness: Harness) -> None:
    app = await harness.upstream("app")
    base = await harness.start(one_backend(app.url))
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for n in range(20):
            async with session.get(f"{base}/n/{n}") as response:
                assert (await response.json())["path"] == f"/n/{n}"
    assert len(app.seen) == 20


async def test_large_answers_stream_through_intact(harness: Harness) -> None:
    payload = bytes(range(256)) * (20 * 1024)  # 5 MiB

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no length known up front
        await response.prepare(request)
        for start in range(0, len(payload), 65536):
            await response.write(payload[start : start + 65536])
        await response.write_eof()
        return response

    app = await harness.upstream("app", big)
    base = await harness.start(one_backend(app.url))
    async with aiohttp.ClientSession() as session, session.get(base + "/file") as response:
        assert response.headers.get("Transfer-Encoding") == "chunked"
        assert await response.read() == payload
    async with (
        aiohttp.ClientSession() as session,
        session.post(base + "/upload", data=payload) as response,
    ):
        assert response.status == 200
    assert app.seen[-1]["body"] == payload


async def test_no_route_is_404_problem_json(harness: Harness) -> None:
    app = await harness.upstream("app")
    base = await harness.start(one_backend(app.url, match="{prefix: /api}"))
    async with aiohttp.ClientSession() as session, session.get(base + "/other") as response:
        assert response.status == 404
        assert response.headers["Content-Type"] == "application/problem+json"
        body = await response.json()
        assert body["request_id"] == response.headers["X-Request-ID"]
    assert app.seen == []


@pytest.mark.parametrize("path", ["/api/../admin", "/api/%2e%2e/admin", "/api/./x"])
async def test_dot_segments_never_reach_a_backend(harness: Harness, path: str) -> None:
    app = await harness.upstream("app")
    base = await harness.start(one_backend(app.url, match="{prefix: /api}"))
    answer = await raw(
        base, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert app.seen == []


async def test_bodies_over_the_route_limit_are_413(harness: Harness) -> None:
    app = await harness.upstream("app")
    base = await harness.start(one_backend(app.url, "    max_body_bytes: 1000\n"))
    async with aiohttp.ClientSession() as session:
        async with session.post(base + "/x", data=b"x" * 1001) as response:
            assert response.status == 413
        async with session.post(base + "/x", data=b"x" * 1000) as response:
            assert response.status == 200
    assert len(app.seen) == 1


async def test_malformed_and_oversized_heads_are_refused(harness: Harness) -> None:
    app = await harness.upstream("app")
    base = await harness.start(one_backend(app.url))
    assert (await raw(base, b"NOT HTTP AT ALL\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    flood = "".join(f"X-H{n}: {'v' * 50}\r\n" for n in range(200))
    assert (await raw(base, f"GET / HTTP/1.1\r\nHost: x\r\n{flood}\r\n".encode())).startswith(
        b"HTTP/1.1 431 "
    )
    long_target = "/" + "a" * 9000
    assert (await raw(base, f"GET {long_target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())).startswith(
        b"HTTP/1.1 414 "
    )
    smuggle = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    assert (await raw(base, smuggle)).startswith(b"HTTP/1.1 400 ")
    assert app.seen == []


async def test_slow_clients_get_408_and_idle_connections_close(harness: Harness) -> None:
    app = await harness.upstream("app")
    base = await harness.start(
        one_backend(app.url),
        GatewaySettings(header_timeout=0.3, body_timeout=0.3, access_log=False),
    )
    answer = await raw(base, b"GET / HTTP/1.1\r\nHost: x\r\n")  # the head never ends
    assert answer.startswith(b"HTTP/1.1 408 ")
    answer = await raw(base, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert await raw(base, b"") == b""  # opened and never used: closed without a word
    assert app.seen == []


async def test_a_backend_down_is_a_quick_502(harness: Harness) -> None:
    sock_holder = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = sock_holder.sockets[0].getsockname()[1]
    sock_holder.close()
    await sock_holder.wait_closed()
    base = await harness.start(one_backend(f"http://127.0.0.1:{port}"))
    async with aiohttp.ClientSession() as session:
        began = asyncio.get_running_loop().time()
        async with session.get(base + "/x") as response:
            assert response.status == 502
            assert response.headers["Content-Type"] == "application/problem+json"
            assert "cannot connect" in (await response.json())["detail"]
        assert asyncio.get_running_loop().time() - began < 5


async def test_a_slow_backend_is_504_at_the_read_timeout(harness: Harness) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.Response(text="late")

    app = await harness.upstream("app", slow)
    base = await harness.start(
        one_backend(app.url, "    timeouts: {read: 0.3}\n    retries: {attempts: 0}\n")
    )
    async with aiohttp.ClientSession() as session, session.get(base + "/x") as response:
        assert response.status == 504
        assert "within 0.3 s" in (await response.json())["detail"]


async def test_idempotent_requests_are_retried_and_others_are_not(harness: Harness) -> None:
    calls = {"n": 0}

    async def flaky(request: web.Request) -> web.StreamResponse:
        calls["n"] += 1
        return web.Response(status=503 if calls["n"] % 2 else 200, text="ok")

    app = await harness.upstream("app", flaky)
    base = await harness.start(one_backend(app.url, "    retries: {attempts: 1}\n"))
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/x") as response:
            assert response.status == 200  # 503, then retried: 200
        async with session.post(base + "/x", data=b"{}") as response:
            assert response.status == 503  # a POST is not repeated
    assert [s["method"] for s in app.seen] == ["GET", "GET", "POST"]


async def test_a_failing_backend_is_ejected_and_traffic_moves_to_the_other(
    harness: Harness,
) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text="boom")

    bad = await harness.upstream("bad", broken)
    good = await harness.upstream("good")
    base = await harness.start(
        f"""
routes:
  - name: app
    backends:
      - {{name: bad, url: "{bad.url}", weight: 50}}
      - {{name: good, url: "{good.url}", weight: 50}}
    retries: {{attempts: 0}}
    outlier: {{consecutive_failures: 3, base_ejection: 30}}
"""
    )
    async with aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(60):
            async with session.get(base + "/x") as response:
                statuses.append(response.status)
    assert statuses.count(500) == 3  # then ejected: every later request goes to good
    assert statuses[-20:] == [200] * 20
    assert harness.gateway is not None
    assert (
        harness.gateway.metrics.sample(
            "hybridmesh_gateway_ejections_total", route="app", backend="bad"
        )
        == 1
    )


async def test_a_weight_change_applies_to_new_requests_without_a_restart(harness: Harness) -> None:
    old = await harness.upstream("old")
    new = await harness.upstream("new")
    base = await harness.start(
        f"""
routes:
  - name: app
    sticky: {{header: x-user}}
    backends:
      - {{name: old, url: "{old.url}", weight: 100}}
      - {{name: new, url: "{new.url}", weight: 0}}
"""
    )
    assert harness.state is not None
    async with aiohttp.ClientSession() as session:

        async def who(user: str) -> str:
            async with session.get(base + "/x", headers={"x-user": user}) as response:
                return str((await response.json())["who"])

        users = [f"u{n}" for n in range(200)]
        assert {await who(u) for u in users} == {"old"}
        await harness.state.set_weight("app", "new", 30)
        await harness.reload()
        on_new = {u for u in users if await who(u) == "new"}
        assert 20 < len(on_new) < 100
        await harness.state.set_weight("app", "new", 60)
        await harness.reload()
        later = {u for u in users if await who(u) == "new"}
        assert on_new < later


async def test_faults_abort_a_share_of_requests_only_with_their_header(harness: Harness) -> None:
    app = await harness.upstream("app")
    base = await harness.start(
        one_backend(
            app.url,
            "    policies:\n      faults: {abort: {percent: 100, status: 503}, header: x-chaos}\n",
        )
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/x", headers={"x-chaos": "1"}) as response:
            assert response.status == 503
            assert "fault injected" in (await response.json())["detail"]
        async with session.get(base + "/x") as response:
            assert response.status == 200
    assert len(app.seen) == 1


async def test_faults_can_hit_one_backend_of_a_split(harness: Harness) -> None:
    old = await harness.upstream("old")
    new = await harness.upstream("new")
    base = await harness.start(
        f"""
routes:
  - name: app
    sticky: {{header: x-user}}
    backends:
      - {{name: old, url: "{old.url}", weight: 50}}
      - {{name: new, url: "{new.url}", weight: 50}}
    policies:
      faults: {{abort: {{percent: 100, status: 502}}, backends: [new]}}
"""
    )
    async with aiohttp.ClientSession() as session:
        statuses = []
        for n in range(60):
            async with session.get(base + "/x", headers={"x-user": f"u{n}"}) as response:
                statuses.append(response.status)
    assert set(statuses) == {200, 502}
    assert len(old.seen) == statuses.count(200)
    assert new.seen == []  # every request for new was aborted before it left


async def test_with_spans_on_each_request_is_a_server_span_in_the_callers_trace(
    harness: Harness,
) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from hybridmesh.observability import configure_tracing, shutdown_tracing

    exporter = InMemorySpanExporter()
    configure_tracing(exporter=exporter)
    try:
        app = await harness.upstream("app")
        base = await harness.start(one_backend(app.url, name="traced"))
        caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        async with (
            aiohttp.ClientSession() as session,
            session.get(base + "/x", headers={"traceparent": caller}) as response,
        ):
            assert response.status == 200
        [span] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
        assert f"{span.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
        assert span.parent is not None and f"{span.parent.span_id:016x}" == "b7ad6b7169203331"
        assert span.attributes is not None and span.attributes["http.route"] == "traced"
        sent = {k.lower(): v for k, v in app.seen[0]["headers"].items()}["traceparent"]
        assert sent.split("-")[1:3] == [
            f"{span.context.trace_id:032x}",
            f"{span.context.span_id:016x}",
        ]
    finally:
        shutdown_tracing()


async def test_each_request_is_one_json_access_line(harness: Harness) -> None:
    import io
    import json

    from hybridmesh.gateway.access_log import AccessLog

    app = await harness.upstream("app")
    base = await harness.start(one_backend(app.url, name="logged"))
    assert harness.gateway is not None
    stream = io.StringIO()
    harness.gateway.access = AccessLog(stream)
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/a?secret=1", headers={"traceparent": caller}) as response:
            request_id = response.headers["X-Request-ID"]
        async with session.get(base + "/b") as response:
            second_id = response.headers["X-Request-ID"]
    harness.gateway.access.flush()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["logger"] == "hybridmesh.gateway.access" and first["level"] == "INFO"
    assert first["message"].startswith("GET /a 200 ")  # never the query string
    assert (first["request_id"], first["trace_id"]) == (
        request_id,
        "0af7651916cd43dd8448eb211c80319c",
    )
    assert (first["route"], first["backend"], first["client_ip"]) == ("logged", "main", "127.0.0.1")
    assert second["request_id"] == second_id and len(second["trace_id"]) == 32
    assert first["time"].endswith("Z") and len(first["time"]) == 24


async def test_a_body_over_the_route_limit_is_refused_before_it_is_read(harness: Harness) -> None:
    app = await harness.upstream("app")
    base = await harness.start(one_backend(app.url, "    max_body_bytes: 1000\n"))
    # The head announces 50 MB and no byte of it is sent: the answer comes at once.
    answer = await raw(
        base, b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n", read_timeout=3
    )
    assert answer.startswith(b"HTTP/1.1 413 ") and b"over 1000 bytes" in answer
    # Chunked, with no length announced: refused as soon as the chunks pass the limit.
    chunks = b"".join(b"%x\r\n%s\r\n" % (400, b"y" * 400) for _ in range(3))
    answer = await raw(
        base,
        b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks,
        read_timeout=3,
    )
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert app.seen == []


async def _open(base: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = base.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


async def test_a_large_body_reaches_the_backend_while_the_client_is_still_sending(
    harness: Harness,
) -> None:
    first_part_seen = asyncio.Event()

    async def consume(request: web.Request) -> web.StreamResponse:
        total = 0
        async for data in request.content.iter_any():
            total += len(data)
            first_part_seen.set()
        return web.json_response({"bytes": total})

    app = await harness.upstream("app", consume, record_body=False)
    base = await harness.start(one_backend(app.url))
    reader, writer = await _open(base)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    writer.write(_chunk(b"a" * 100_000))
    await writer.drain()
    # Were the body read whole before the request went on, this would wait forever.
    await asyncio.wait_for(first_part_seen.wait(), 5)
    writer.write(_chunk(b"b" * 150_000) + b"0\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int(
        next(
            v
            for k, v in (line.split(b": ", 1) for line in head.split(b"\r\n")[1:-2])
            if k == b"content-length"
        )
    )
    assert json.loads(await reader.readexactly(length)) == {"bytes": 250_000}
    writer.close()


async def test_a_streamed_body_that_stalls_is_408_and_the_backend_call_ends(
    harness: Harness,
) -> None:
    ended = asyncio.Event()

    async def consume(request: web.Request) -> web.StreamResponse:
        try:
            await request.read()
        finally:
            ended.set()
        return web.Response(text="never complete")

    app = await harness.upstream("app", consume, record_body=False)
    base = await harness.start(
        one_backend(app.url),
        GatewaySettings(header_timeout=5, body_timeout=0.3, access_log=False),
    )
    answer = await raw(
        base,
        b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n" + b"z" * 100_000,
    )
    assert answer.startswith(b"HTTP/1.1 408 ")
    await asyncio.wait_for(ended.wait(), 5)  # the backend's half-sent request was cut


async def test_a_backend_answering_before_the_body_is_sent_is_relayed_and_the_rest_dropped(
    harness: Harness,
) -> None:
    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "quota"}, status=403)  # without reading the body

    app = await harness.upstream("app", refuse, record_body=False)
    base = await harness.start(one_backend(app.url))
    reader, writer = await _open(base)
    writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    writer.write(_chunk(b"c" * 80_000))
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(-1), 5)  # the gateway closes after it
    assert answer.startswith(b"HTTP/1.1 403 ") and b"connection: close" in answer.lower()
    writer.close()


async def test_a_streamed_body_for_a_backend_that_is_down_gets_502_and_the_connection_closes(
    harness: Harness,
) -> None:
    base = await harness.start(one_backend(await _closed_port_url()))
    reader, writer = await _open(base)
    writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    writer.write(_chunk(b"d" * 80_000))
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(-1), 5)
    assert answer.startswith(b"HTTP/1.1 502 ") and b"connection: close" in answer.lower()
    writer.close()


async def _closed_port_url() -> str:
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return f"http://127.0.0.1:{port}"
