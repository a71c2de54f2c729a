"""Deadlines for what clients send, so a slow client cannot hold the server's connections.

aiohttp closes a keep-alive connection that sends no complete request head within its
``keepalive_timeout`` of the previous answer, but whether it does so for the *first* request
of a connection depends on its version. :class:`HeadDeadline` closes a connection whose
first request head has not fully arrived within the header timeout of opening, whatever
the version; :func:`~hybridmesh.api.server.run_server` sets ``keepalive_timeout`` to the
same number for the requests after it. Bodies have their own deadline where they are read
(:func:`hybridmesh.api.events.read_body`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

# A request head ends at an empty line: CRLF CRLF, or LF LF from lenient clients. Both
# contain one of these, and a head cannot contain either before its end.
_HEAD_ENDS = (b"\n\r\n", b"\n\n")


class HeadDeadline(asyncio.Protocol):
    """One server connection: aiohttp's protocol for it, and a timer that closes the
    connection unless the first request head is complete within ``timeout`` seconds."""

    def __init__(self, inner: asyncio.Protocol, timeout: float) -> None:
        self._inner = inner
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._tail = b""  # the last bytes seen, in case the empty line spans two reads

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expire)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            seen = self._tail + data
            if any(end in seen for end in _HEAD_ENDS):
                self._cancel()
            else:
                self._tail = seen[-2:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None:
            self._transport.close()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class DeadlineTCPSite(web.BaseSite):
    """A TCP site whose connections each get a :class:`HeadDeadline` of ``header_timeout``
    seconds (otherwise as :class:`aiohttp.web.TCPSite`)."""

    __slots__ = ("_header_timeout", "_host", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str | None, port: int, *, header_timeout: float
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._header_timeout = header_timeout

    @property
    def name(self) -> str:
        return f"http://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # BaseSite refuses a runner that is not set up
        factory: Callable[[], Any] = server
        timeout = self._header_timeout
        self._server = await asyncio.get_running_loop().create_server(
            lambda: HeadDeadline(factory(), timeout),
            self._host,
            self._port,
            backlog=self._backlog,
        )


__all__ = ["DeadlineTCPSite", "HeadDeadline"]
