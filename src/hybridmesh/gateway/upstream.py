"""The gateway's side towards backends: keep-alive HTTP/1.1 connections that pass answers
through untouched (headers as sent, body not decoded), streaming them to the client.

Unlike the client's :class:`~hybridmesh.transports.http1.Http1Pool`, which reads whole
answers and decodes them for the code that called, a proxy hands each answer on as it
comes: its head as soon as it is parsed, then its body piece by piece, so a large download
is never held in memory, and reading from the backend pauses while the client is slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools

#: Idle upstream connections kept per origin.
MAX_IDLE_PER_ORIGIN = 128
#: Seconds an idle upstream connection is kept.
IDLE_SECONDS = 30.0


class UpstreamError(OSError):
    """No answer from the backend: it refused or dropped the connection, or answered with
    something that is not HTTP. ``sent`` tells whether any byte of the request left."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return cls(scheme, parts.hostname or "", parts.port or (443 if scheme == "https" else 80))

    @property
    def authority(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


class BodySink:
    """Where an answer's body goes as it arrives (the client's connection)."""

    def write(self, chunk: bytes) -> None:
        raise NotImplementedError

    @property
    def paused(self) -> bool:
        return False


@dataclass(slots=True)
class UpstreamResponse:
    """An answer's head, and its body as it arrives."""

    status: int
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    #: The body so far, while nothing takes it (then everything, when buffered).
    chunks: list[bytes] = field(default_factory=list)
    length: int | None = None
    done: asyncio.Future[None] | None = None


class UpstreamConnection(asyncio.Protocol):
    """One connection to a backend, one exchange at a time."""

    def __init__(self, pool: UpstreamPool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._head: asyncio.Future[UpstreamResponse] | None = None
        self._response: UpstreamResponse | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._sink: BodySink | None = None
        self._received_any = False
        #: The last answer ended cleanly on a connection that stays open.
        self.reusable = False
        #: Set while the send buffer is full (a streamed request body waits on it).
        self._writable: asyncio.Event | None = None
        #: The backend answered before the request was all sent: never reuse it.
        self.dirty = False
        #: When the exchange under way gives up (loop time; 0: none). The gateway's sweep
        #: fails it with TimeoutError once passed: one periodic check instead of a timer
        #: per request.
        self.deadline = 0.0

    # -- the exchange ----------------------------------------------------------------------

    def send(
        self, message: bytes, head_only: bool, deadline: float = 0.0
    ) -> asyncio.Future[UpstreamResponse]:
        loop = asyncio.get_running_loop()
        self.deadline = deadline
        self.pool.busy.add(self)
        self._head = loop.create_future()
        self._response = None
        self._headers = []
        self._sink = None
        self._received_any = False
        self.reusable = False
        self._head_only = head_only
        assert self.transport is not None
        self.transport.write(message)
        return self._head

    def attach(self, sink: BodySink) -> None:
        """Send the rest of the body to ``sink`` (and what came already)."""
        response = self._response
        assert response is not None
        for chunk in response.chunks:
            sink.write(chunk)
        response.chunks = []
        self._sink = sink

    def write(self, data: bytes) -> None:
        """More of the request (a streamed body) on the connection."""
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def drained(self) -> None:
        """Wait while the connection's send buffer is over its high-water mark."""
        if self._writable is not None:
            await self._writable.wait()

    def pause_writing(self) -> None:
        self._writable = asyncio.Event()

    def resume_writing(self) -> None:
        if self._writable is not None:
            self._writable.set()
            self._writable = None

    def pause(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("the backend switched protocols", sent=True))
            self.abort()
        except httptools.HttpParserError as error:
            self._fail(UpstreamError(f"the backend's answer is not HTTP: {error}", sent=True))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.resume_writing()
        self.pool.forget(self)
        response = self._response
        if response is not None and response.done is not None and not response.done.done():
            if response.length is None and not self.parser.should_keep_alive():
                # An answer without a length ends with the connection.
                response.done.set_result(None)
            else:
                response.done.set_exception(
                    UpstreamError("the backend closed the connection mid-answer", sent=True)
                )
        elif self._head is not None and not self._head.done():
            reason = f": {exc}" if exc else ""
            self._head.set_exception(
                UpstreamError(f"the backend closed the connection{reason}", sent=True)
            )

    # -- httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        loop = asyncio.get_running_loop()
        length = None
        for name, value in self._headers:
            if name.lower() == b"content-length":
                with contextlib.suppress(ValueError):
                    length = int(value)
        response = UpstreamResponse(
            self.parser.get_status_code(),
            self._headers,
            self.parser.should_keep_alive(),
            length=length,
            done=loop.create_future(),
        )
        self._response = response
        if self._head is not None and not self._head.done():
            self._head.set_result(response)
        if self._head_only:
            # llhttp cannot be told that a HEAD answer has no body: it ends here.
            self._complete()

    def on_body(self, body: bytes) -> None:
        if self._sink is not None:
            self._sink.write(body)
            if self._sink.paused:
                self.pause()
        elif self._response is not None:
            self._response.chunks.append(body)

    def on_message_complete(self) -> None:
        if not self._head_only:
            self._complete()

    def _complete(self) -> None:
        response = self._response
        if response is None or response.done is None or response.done.done():
            return
        # Whoever sent the request gives the connection back (UpstreamPool.release) once it
        # has taken the answer: parked here, another request could take it first.
        self.reusable = response.keep_alive and not self._head_only and not self.dirty
        response.done.set_result(None)

    def expire(self) -> None:
        """Give up the exchange under way: its waiter gets TimeoutError."""
        self._fail(TimeoutError("the backend did not answer in time"))
        self.abort()

    def _fail(self, error: Exception) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        elif (
            self._response is not None
            and self._response.done is not None
            and not self._response.done.done()
        ):
            self._response.done.set_exception(error)


class UpstreamPool:
    """Idle keep-alive connections per origin."""

    def __init__(self) -> None:
        self._idle: dict[Origin, deque[UpstreamConnection]] = {}
        self._all: set[UpstreamConnection] = set()
        #: Connections with an exchange under way (their deadlines are swept).
        self.busy: set[UpstreamConnection] = set()

    def idle(self, origin: Origin) -> UpstreamConnection | None:
        """An idle connection to ``origin`` that is still open, if any (no waiting)."""
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        return None

    def sweep(self, now: float) -> None:
        """Fail every exchange whose deadline has passed."""
        for connection in [c for c in self.busy if c.deadline and c.deadline <= now]:
            self.busy.discard(connection)
            connection.expire()

    async def connection(
        self, origin: Origin, connect_timeout: float
    ) -> tuple[UpstreamConnection, bool]:
        """A connection to ``origin``: an idle one (``True``: reused) or a new one."""
        connection = self.idle(origin)
        if connection is not None:
            return connection, True
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: UpstreamConnection(self, origin),
                    origin.host,
                    origin.port,
                    ssl=origin.scheme == "https" or None,
                )
        except TimeoutError:
            raise UpstreamError(
                f"connecting to {origin.authority} took over {connect_timeout:g} s", sent=False
            ) from None
        except OSError as error:
            raise UpstreamError(
                f"cannot connect to {origin.authority}: {error}", sent=False
            ) from None
        self._all.add(protocol)
        return protocol, False

    def release(self, connection: UpstreamConnection) -> None:
        """Take back a connection whose answer was read: kept for the next request when
        the answer ended cleanly and the connection stays open, closed otherwise."""
        self.busy.discard(connection)
        connection.deadline = 0.0
        if connection.reusable and not connection.closed:
            self.park(connection)
        else:
            connection.close()

    def park(self, connection: UpstreamConnection) -> None:
        if connection.closed:
            return
        idle = self._idle.setdefault(connection.origin, deque())
        if len(idle) >= MAX_IDLE_PER_ORIGIN:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle.append(connection)

    def forget(self, connection: UpstreamConnection) -> None:
        self._all.discard(connection)
        self.busy.discard(connection)
        idle = self._idle.get(connection.origin)
        if idle is not None:
            with contextlib.suppress(ValueError):
                idle.remove(connection)

    def close(self) -> None:
        for connection in list(self._all):
            connection.abort()
        self._all.clear()
        self._idle.clear()


OnClose = Callable[[], None]

__all__ = [
    "BodySink",
    "Origin",
    "UpstreamConnection",
    "UpstreamError",
    "UpstreamPool",
    "UpstreamResponse",
]
