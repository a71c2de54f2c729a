"""The floor of a Python proxy on this machine: a forwarder with nothing but forwarding.

The same parts as the gateway (uvloop, llhttp through ``httptools`` on both sides, keep-alive
both ways) and none of its work: no routing, policies, metrics, access log, deadlines or
trace context; one upstream, answers buffered whole, callbacks only (no task per request).
The gateway benchmark runs it beside nginx and the gateway, so the gap between it and the
gateway is what the gateway's own per-request Python costs.

Run: ``python -m benchmarks._bare_forwarder PORT UPSTREAM_PORT``.
"""

from __future__ import annotations

import asyncio
import sys

import httptools
import uvloop

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length"})


class Upstream(asyncio.Protocol):
    """A keep-alive connection to the upstream; one exchange at a time."""

    def __init__(self, idle: list[Upstream]) -> None:
        self.idle = idle
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: Client | None = None
        self.headers: list[bytes] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.headers, self.body = [], []

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in HOP_BY_HOP:
            self.headers.append(b"%s: %s\r\n" % (name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        head = b"HTTP/1.1 %d OK\r\n%scontent-length: %d\r\n\r\n" % (
            self.parser.get_status_code(),
            b"".join(self.headers),
            len(body),
        )
        client, self.client = self.client, None
        self.idle.append(self)
        transport = client.transport if client is not None else None
        if transport is not None and not transport.is_closing():
            transport.write(head + body)


class Client(asyncio.Protocol):
    """A client connection; each request goes to an idle upstream connection (or a new one)."""

    def __init__(self, upstream: tuple[str, int], idle: list[Upstream]) -> None:
        self.upstream = upstream
        self.idle = idle
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[bytes] = []
        self.connecting: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.url, self.headers = b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in HOP_BY_HOP:
            self.headers.append(b"%s: %s\r\n" % (name, value))

    def on_message_complete(self) -> None:
        message = b"%s %s HTTP/1.1\r\n%s\r\n" % (
            self.parser.get_method(),
            self.url,
            b"".join(self.headers),
        )
        if self.idle:
            self.send(self.idle.pop(), message)
        else:
            task = asyncio.ensure_future(self.connect(message))
            self.connecting.add(task)
            task.add_done_callback(self.connecting.discard)

    async def connect(self, message: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, upstream = await loop.create_connection(lambda: Upstream(self.idle), *self.upstream)
        self.send(upstream, message)

    def send(self, upstream: Upstream, message: bytes) -> None:
        upstream.client = self
        assert upstream.transport is not None
        upstream.transport.write(message)


async def serve(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    idle: list[Upstream] = []
    upstream = ("127.0.0.1", upstream_port)
    server = await loop.create_server(lambda: Client(upstream, idle), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), int(sys.argv[2])))
