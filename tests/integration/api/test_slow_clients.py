"""Slow clients cannot hold the server: a real ``run_server`` on loopback, with the header and
body timeouts shortened, and raw sockets that send part of a request and then nothing.

No test measures time: each waits for the server to act (close, answer) with a bound far
above the shortened timeouts, and fails only if the server never acts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from tests.waiting import HANG

from hybridmesh.api import run_server
from hybridmesh.api._deadlines import HeadDeadline
from hybridmesh.api.websocket import WebSocketHub, allow_any
from hybridmesh.core.settings import Settings
from hybridmesh.events.backends.memory import MemoryEventBackend
from hybridmesh.events.bus import EventBus
from hybridmesh.events.envelope import STRUCTURED_CONTENT_TYPE, CloudEvent
from hybridmesh.observability import MeshMetrics

SHORT = 0.5  # seconds: the shortened timeouts


@dataclass
class Server:
    url: str
    host: str
    port: int


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    metrics = MeshMetrics()
    bus = EventBus(MemoryEventBackend(), metrics=metrics, poll_wait=0.05)
    settings = Settings(http_header_timeout=SHORT, http_body_timeout=SHORT)
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_server(
            settings,
            bus=bus,
            host="127.0.0.1",
            port=0,
            hub=WebSocketHub(allow_any, metrics=metrics),
            metrics=metrics,
            ready=ready.set_result,
        )
    )
    url = await asyncio.wait_for(ready, HANG)
    port = int(url.rsplit(":", 1)[1])
    try:
        yield Server(url, "127.0.0.1", port)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (fails if it never does)."""
    return await asyncio.wait_for(reader.read(), HANG)


async def connect(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(server.host, server.port)


async def test_a_partial_request_line_is_closed_after_the_header_timeout(server: Server) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /heal")
    await writer.drain()

    assert await closed_by_server(reader) == b""
    writer.close()


async def test_unfinished_headers_are_closed_after_the_header_timeout(server: Server) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
    await writer.drain()

    assert await closed_by_server(reader) == b""
    writer.close()


async def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    reader, writer = await connect(server)

    assert await closed_by_server(reader) == b""
    writer.close()


async def test_after_an_answer_a_second_unfinished_head_is_closed_too(server: Server) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()

    received = await closed_by_server(reader)

    assert received.startswith(b"HTTP/1.1 200 ")
    assert received.count(b"HTTP/1.1 ") == 1  # the second request never came whole
    writer.close()


async def test_a_body_that_does_not_arrive_is_answered_408_and_the_connection_closed(
    server: Server,
) -> None:
    reader, writer = await connect(server)
    writer.write(
        b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: "
        + STRUCTURED_CONTENT_TYPE.encode()
        + b'\r\nContent-Length: 1000\r\n\r\n{"specversion": '
    )
    await writer.drain()

    received = await closed_by_server(reader)

    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"Connection: close" in head
    assert b"application/problem+json" in head
    assert "did not arrive within 0.5 s" in json.loads(body)["detail"]
    writer.close()


async def test_normal_clients_are_unaffected(server: Server) -> None:
    # A raw request in pieces, each sent at once, is answered.
    reader, writer = await connect(server)
    for piece in (b"GET /hea", b"lthz HTTP/1.1\r\nHo", b"st: x\r\nConnection: close\r\n\r\n"):
        writer.write(piece)
        await writer.drain()
    assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 200 ")
    writer.close()

    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(server.url + "/healthz") as response:
            assert response.status == 200
        event = CloudEvent.create("user.registered", "/users", {"user_id": "42"})
        async with http.post(
            server.url + "/events",
            data=json.dumps(event.to_dict()),
            headers={"Content-Type": STRUCTURED_CONTENT_TYPE},
        ) as response:
            assert response.status == 202

        # A WebSocket outlives the header timeout: once a slow connection opened after it
        # has been closed for its late head, the WebSocket still answers.
        ws = await http.ws_connect(server.url.replace("http", "ws") + "/ws/events?token=42")
        assert (await ws.receive_json(timeout=HANG))["type"] == "welcome"
        slow_reader, slow_writer = await connect(server)
        assert await closed_by_server(slow_reader) == b""
        slow_writer.close()
        await ws.send_json({"action": "ping"})
        assert (await ws.receive_json(timeout=HANG))["type"] == "pong"
        await ws.close()


@pytest.mark.parametrize("field", ["http_header_timeout", "http_body_timeout"])
def test_the_timeouts_are_settings_that_must_be_positive(field: str) -> None:
    assert Settings().http_header_timeout == 10.0
    assert Settings().http_body_timeout == 30.0
    with pytest.raises(ValueError, match="must be more than 0 seconds"):
        Settings(**{field: 0})
    for endless in ("inf", "nan"):
        with pytest.raises(ValueError, match="must be a finite number"):
            Settings(**{field: float(endless)})


class Echo(asyncio.Protocol):
    """A protocol that sends back what it receives (standing in for aiohttp's)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def test_the_head_deadline_closes_only_connections_whose_head_is_late() -> None:
    # Whatever aiohttp's version does with its keep-alive timer, the deadline closes a
    # connection whose first head is late, and leaves one whose head came alone.
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: HeadDeadline(Echo(), SHORT), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        prompt_reader, prompt = await asyncio.open_connection("127.0.0.1", port)
        prompt.write(b"GET / HTTP/1.1\r\nHost: x\r")
        prompt.write(b"\n\r\n")  # the empty line split over two reads
        await prompt.drain()
        assert await prompt_reader.readexactly(27) == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

        late_reader, late = await asyncio.open_connection("127.0.0.1", port)
        late.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        await late.drain()
        assert await asyncio.wait_for(late_reader.read(), HANG) == b"GET / HTTP/1.1\r\nHost: x\r\n"
        late.close()

        # The late connection, opened after the prompt one, is closed: the prompt one
        # has outlived the deadline, and still answers.
        prompt.write(b"ping")
        await prompt.drain()
        assert await asyncio.wait_for(prompt_reader.readexactly(4), HANG) == b"ping"
        prompt.close()
    finally:
        listener.close()
        await listener.wait_closed()
