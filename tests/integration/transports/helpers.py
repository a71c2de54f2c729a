"""Servers on loopback for the HTTP/1.1 pool tests: a recording aiohttp app and raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

#: The largest request body the recording app accepts.
LARGEST_BODY = 32 * 1024 * 1024


def pattern_bytes(size: int) -> bytes:
    """``size`` bytes that are not all alike, so a body cut or shifted shows."""
    block = bytes(range(251))  # a prime length: no power-of-two buffer lines up with it
    return (block * (size // len(block) + 1))[:size]


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    peer: Any


@dataclass
class Recorder:
    """An aiohttp app that records every request and answers by path."""

    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=LARGEST_BODY)
        app.router.add_route("*", "/chunked", self.chunked)
        app.router.add_route("*", "/digest", self.digest)
        app.router.add_route("*", "/large/{size}", self.large)
        app.router.add_route("*", "/gzip", self.gzipped)
        app.router.add_route("*", "/close", self.close)
        app.router.add_route("*", "/empty", self.empty)
        app.router.add_route("*", "/slow", self.slow)
        app.router.add_route("*", "/missing", self.missing)
        app.router.add_route("*", "/busy", self.busy)
        app.router.add_route("*", "/moved", self.moved)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        return app

    @property
    def peers(self) -> set[Any]:
        return {seen.peer for seen in self.seen}

    async def _record(self, request: web.Request) -> None:
        self.seen.append(
            Seen(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=await request.read(),
                peer=request.transport.get_extra_info("peername") if request.transport else None,
            )
        )

    async def echo(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0)
        self.in_flight -= 1
        return web.json_response({"path": request.path, "n": len(self.seen)})

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"one ", b"two ", b"three"):
            await response.write(part)
        await response.write_eof()
        return response

    async def digest(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        body = self.seen[-1].body
        return web.json_response({"size": len(body), "sha256": hashlib.sha256(body).hexdigest()})

    async def large(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        return web.Response(body=pattern_bytes(int(request.match_info["size"])))

    async def gzipped(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        body = gzip.compress(b'{"packed": true}')
        return web.Response(
            body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )

    async def close(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        response = web.json_response({"closing": True})
        response.force_close()
        return response

    async def empty(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        return web.Response(status=204)

    async def slow(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        await asyncio.sleep(0.5)
        return web.json_response({"slow": True})

    async def missing(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        return web.json_response({"title": "no such thing"}, status=404)

    async def busy(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        return web.json_response(
            {"title": "slow down"},
            status=429,
            headers={"Retry-After": "3"},
            content_type="application/problem+json",
        )

    async def moved(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        return web.Response(status=302, headers={"Location": "/elsewhere"})


Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawServer:
    """A socket server whose ``answer`` speaks for each connection; counts connections."""

    url: str
    connections: int = 0


@contextlib.asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[RawServer]:
    """Serve ``answer`` on 127.0.0.1; on exit, hang up on every client and await handlers."""
    handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
    raw: RawServer | None = None

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert raw is not None
        raw.connections += 1
        task = asyncio.current_task()
        assert task is not None
        handlers[task] = writer  # type: ignore[index]
        try:
            await answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    raw = RawServer(f"http://127.0.0.1:{port}")
    try:
        yield raw
    finally:
        server.close()
        for writer in handlers.values():
            writer.close()  # a handler waiting for a request sees the end of the stream
        await asyncio.gather(*handlers)
        await server.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """One request head (the tests send no bodies to raw servers)."""
    return await reader.readuntil(b"\r\n\r\n")
