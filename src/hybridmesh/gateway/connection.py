"""One client connection of the gateway: llhttp parses its requests, which are answered one
after another (pipelined requests wait their turn), and the limits a client must keep.

A request is handed to the gateway (:class:`Front`, which
:class:`~hybridmesh.gateway.server.Gateway` is) when it is complete, or at its head when
its body is large or chunked and its route passes bodies on as they arrive
(:class:`BodyStream`). Limits: a request line over :data:`MAX_REQUEST_LINE` is 414, a head
over :data:`MAX_HEAD_BYTES` or :data:`MAX_HEADERS` is 431, a body over its route's limit
is 413 from its first byte, a head or body not complete in time is 408, and anything llhttp
cannot parse is 400; each of these answers closes the connection. An upgrade request
(WebSocket) is handed over whole and, once the backend agrees, the connection becomes a
:class:`~hybridmesh.gateway.tunnel.Tunnel`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

import httptools

from hybridmesh.core.ids import new_request_id
from hybridmesh.gateway.http import Answer, Headers, problem
from hybridmesh.gateway.metrics import GatewayMetrics, refusal_reason
from hybridmesh.gateway.settings import GatewaySettings
from hybridmesh.gateway.tunnel import Tunnel
from hybridmesh.gateway.upstream import BodySink, UpstreamConnection

MAX_REQUEST_LINE = 8 * 1024
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
#: Requests parsed ahead of the one being answered before reading pauses.
MAX_PIPELINED = 16
#: Request bodies larger than this (or chunked) are passed on as they arrive, on routes
#: whose policies do not read the body; smaller ones are read first (one write upstream).
STREAM_THRESHOLD = 64 * 1024
#: Bytes of a streamed body waiting for the backend before reading from the client pauses.
STREAM_HIGH_WATER = 1024 * 1024
#: Answers that never have a body.
NO_BODY_STATUSES = frozenset({204, 304})


class Front(Protocol):
    """What a connection needs of the gateway it serves."""

    settings: GatewaySettings
    metrics: GatewayMetrics

    def accept(self, connection: ClientConnection) -> None: ...

    def forget(self, connection: ClientConnection) -> None: ...

    def body_limit(self, method: str, host: str, path: str, headers: Headers) -> tuple[int, bool]:
        """The largest body the request's route takes, and whether it streams bodies."""
        ...

    async def handle(self, connection: ClientConnection, incoming: Incoming) -> bool: ...

    async def upgrade(
        self, connection: ClientConnection, incoming: Incoming, initial: bytes
    ) -> None: ...


@dataclass(slots=True)
class Incoming:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    keep_alive: bool
    http_minor: int
    #: The client's address as the route's rules judged it (X-Forwarded-For through
    #: trusted proxies), once known; the trace the backend was sent.
    client_ip: str = ""
    trace_id: str | None = None
    #: The body, when it is passed on as it arrives rather than read first.
    stream: BodyStream | None = None
    #: The protocol an upgrade request asks for (``websocket``); None for other requests.
    upgrade: str | None = None
    #: The backend chosen for the request when it was ejected and another answered: the
    #: stats windows count the request against it (a gate judges the share it could not
    #: take), not against the one that answered.
    rerouted_from: str | None = None


class BodyError(Exception):
    """A streamed request body that will not be completed: the client was too slow
    (``status`` 408) or went away (``status`` 0: nobody to answer)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class BodyStream:
    """A request body passed on as it arrives: the client's connection feeds it, the call
    to the backend reads it. Reading from the client pauses while more than
    :data:`STREAM_HIGH_WATER` bytes wait here, and resumes below a quarter of that."""

    def __init__(self, connection: ClientConnection, length: int | None) -> None:
        self.connection = connection
        #: The Content-Length announced (None: chunked).
        self.length = length
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: BodyError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        #: Whether the whole body was read (False when the backend answered first).
        self.complete = False

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > STREAM_HIGH_WATER and not self._paused:
            self._paused = True
            if self.connection.transport is not None:
                self.connection.transport.pause_reading()
        self._wake()

    def finish(self) -> None:
        self._done = True
        self._wake()

    def fail(self, error: BodyError) -> None:
        self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered < STREAM_HIGH_WATER // 4:
                    self._paused = False
                    if self.connection.transport is not None and not self.connection.closing:
                        self.connection.transport.resume_reading()
                return chunk
            if self._error is not None:
                raise self._error
            if self._done:
                self.complete = True
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None


class _Refuse(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


class ClientConnection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order."""

    def __init__(self, gateway: Front) -> None:
        self.gateway = gateway
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.closing = False
        self.busy = False
        self.paused_writing = False
        self._queue: deque[Incoming] = deque()
        self._worker: asyncio.Task[None] | None = None
        #: When the head or body under way is due (time.monotonic(); 0: nothing due).
        self.deadline = 0.0
        self._deadline_body = False
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._limit = gateway.settings.max_body_bytes
        #: The body of the request under way, when it is passed on as it arrives.
        self._stream: BodyStream | None = None
        #: An upgrade request, between its end and llhttp stopping at it; then the tunnel.
        self._upgrading: Incoming | None = None
        self.tunnel: Tunnel | None = None
        self._started = False  # a request's first byte has come
        self._writers: list[_ClientSink] = []

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else ""
        self.gateway.accept(self)
        self._arm(self.gateway.settings.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.gateway.forget(self)
        if self.tunnel is not None:
            self.tunnel.client_lost()
        if self._stream is not None:
            self._stream.fail(BodyError(0, "the client went away"))
            self._stream = None
        self._disarm()
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.tunnel is not None:
            self.tunnel.to_backend(data)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            incoming, self._upgrading = self._upgrading, None
            if incoming is None or self.busy or self._queue:
                self._refuse(400, "an upgrade must be the only request under way")
                return
            offset = upgrade.args[0] if upgrade.args else len(data)
            self._disarm()
            self.busy = True
            self._worker = asyncio.get_running_loop().create_task(
                self._upgrade(incoming, data[offset:])
            )
        except httptools.HttpParserError as error:
            # llhttp wraps what a callback raised; a refusal of ours comes back as its cause.
            refused = error.__context__
            if isinstance(refused, _Refuse):
                self._refuse(refused.status, refused.detail)
            else:
                self._refuse(400, f"malformed HTTP request: {error}")

    def pause_writing(self) -> None:
        self.paused_writing = True
        if self.tunnel is not None:
            self.tunnel.pause_client()

    def resume_writing(self) -> None:
        self.paused_writing = False
        for sink in self._writers:
            sink.upstream.resume()
        if self.tunnel is not None:
            self.tunnel.resume_client()

    async def _upgrade(self, incoming: Incoming, initial: bytes) -> None:
        try:
            await self.gateway.upgrade(self, incoming, initial)
        finally:
            self.busy = False

    def join(self, tunnel: Tunnel) -> None:
        """From now on, what the client sends goes to the backend through ``tunnel``."""
        self.tunnel = tunnel

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._body = []
        self._body_size = 0
        self._limit = self.gateway.settings.max_body_bytes
        if not self._started:
            self._started = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_REQUEST_LINE:
            raise _Refuse(414, f"the request target is over {MAX_REQUEST_LINE} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES or len(self._headers) >= MAX_HEADERS:
            raise _Refuse(
                431, f"the request head is over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} headers"
            )
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        settings = self.gateway.settings
        self._limit = settings.max_body_bytes
        size: int | None = None
        has_body = False
        for name, value in self._headers:
            if name == "content-length":
                try:
                    size = int(value)
                except ValueError:
                    raise _Refuse(400, "malformed Content-Length") from None
                has_body = size > 0
            elif name == "transfer-encoding":
                has_body = True
        streams = False
        if has_body:
            # A body is bounded by its route's limit from its first byte, so a large upload
            # is refused before it is read rather than held in memory and refused after.
            limit, streams = self._route_limit()
            self._limit = min(self._limit, limit)
            if size is not None and size > self._limit:
                raise _Refuse(413, f"the body is over {self._limit} bytes")
        self._disarm()
        self._arm(settings.body_timeout, body=True)
        large = size is None or size > STREAM_THRESHOLD
        if streams and large and not self._queue and not self.busy:
            self._stream = BodyStream(self, size)
            self._dispatch(self._incoming(b"", self._stream))

    def _route_limit(self) -> tuple[int, bool]:
        """``max_body_bytes`` of the route this request's head matches (the gateway's own
        limit when none does: the request will be a 404 anyway), and whether the route
        passes request bodies on as they arrive."""
        headers = Headers()
        headers.pairs = self._headers
        path = self._url.split(b"?", 1)[0].decode("latin-1")
        method = self.parser.get_method().decode("ascii", "replace")
        return self.gateway.body_limit(method, headers.get("host") or "", path, headers)

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._limit:
            if self._stream is not None:  # its request is under way: end it, and the connection
                self._stream.fail(BodyError(413, f"the body is over {self._limit} bytes"))
                self._stream = None
            raise _Refuse(413, f"the body is over {self._limit} bytes")
        if self._stream is not None:
            self._stream.feed(body)
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._started = False
        if self.parser.should_upgrade():  # joined to the backend once llhttp stops here
            self._upgrading = self._incoming(b"", None)
            asked = [value for name, value in self._headers if name == "upgrade"]
            self._upgrading.upgrade = asked[0] if asked else "websocket"
            return
        if self._stream is not None:  # dispatched at its head; its body is all here now
            self._stream.finish()
            self._stream = None
            return
        self._dispatch(self._incoming(b"".join(self._body), None))

    def _incoming(self, body: bytes, stream: BodyStream | None) -> Incoming:
        path, _, query = self._url.decode("latin-1").partition("?")
        if not path.startswith("/"):
            raise _Refuse(400, "the request target must be a path (origin form)")
        return Incoming(
            self.parser.get_method().decode("ascii"),
            path,
            query,
            self._headers,
            body,
            self.parser.should_keep_alive(),
            1 if self.parser.get_http_version() == "1.1" else 0,
            stream=stream,
        )

    def _dispatch(self, incoming: Incoming) -> None:
        self._queue.append(incoming)
        if len(self._queue) >= MAX_PIPELINED and self.transport is not None:
            self.transport.pause_reading()
        if self._worker is None or self._worker.done():
            self.busy = True
            self._worker = asyncio.get_running_loop().create_task(self._work())

    # -- answering -------------------------------------------------------------------------

    async def _work(self) -> None:
        try:
            while self._queue and not self.closing:
                incoming = self._queue.popleft()
                if self.transport is not None and len(self._queue) < MAX_PIPELINED:
                    self.transport.resume_reading()
                keep = await self.gateway.handle(self, incoming)
                if not keep:
                    self.close()
                    return
        finally:
            self.busy = False
        if not self.closing:
            self._arm(self.gateway.settings.header_timeout)

    def send_answer(self, answer: Answer, request_id: str, keep_alive: bool, method: str) -> None:
        headers = Headers(answer.headers)
        status = answer.status
        close = not keep_alive or status in (400, 408, 413, 414, 431)
        head = [f"HTTP/1.1 {status} {_phrase(status)}"]
        head.extend(f"{n}: {v}" for n, v in headers.pairs)
        head.append(f"x-request-id: {request_id}")
        head.append(f"content-length: {len(answer.body)}")
        if close:
            head.append("connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if method != "HEAD":
            data += answer.body
        self.write(data)
        if close:
            self.closing = True
            self.close()

    def head(
        self,
        status: int,
        headers: Headers,
        request_id: str,
        incoming: Incoming,
        length: int | None,
    ) -> tuple[bytes, bool]:
        """An answer's head, and whether its body goes chunked."""
        head = [f"HTTP/1.1 {status} {_phrase(status)}"]
        head.extend(f"{n}: {v}" for n, v in headers.pairs if n != "x-request-id")
        head.append(f"x-request-id: {request_id}")
        chunked = False
        if status in NO_BODY_STATUSES or 100 <= status < 200:
            pass
        elif length is not None:
            head.append(f"content-length: {length}")
        elif incoming.http_minor >= 1:
            head.append("transfer-encoding: chunked")
            chunked = True
        else:
            incoming.keep_alive = False  # an HTTP/1.0 answer without length ends at close
        if not incoming.keep_alive:
            head.append("connection: close")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1"), chunked

    def sink(self, chunked: bool, upstream: UpstreamConnection) -> _ClientSink:
        sink = _ClientSink(self, chunked, upstream)
        self._writers = [sink]
        return sink

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _refuse(self, status: int, detail: str) -> None:
        self.gateway.metrics.refused("-", refusal_reason(status) if status != 400 else "malformed")
        self._queue.clear()
        answer = problem(status, detail, request_id=new_request_id())
        self.send_answer(answer, new_request_id(), False, "GET")

    def _arm(self, seconds: float, *, body: bool = False) -> None:
        self.deadline = time.monotonic() + seconds
        self._deadline_body = body

    def _disarm(self) -> None:
        self.deadline = 0.0

    def expire(self) -> None:
        self.deadline = 0.0
        self._expired(self._deadline_body)

    def _expired(self, body: bool) -> None:
        if self._stream is not None:  # a streamed body stalled: its call ends with 408
            self._stream.fail(BodyError(408, "the request body did not arrive in time"))
            self._stream = None
            return
        if self.busy:
            return
        if self._started or body:
            what = "body" if body else "head"
            self._refuse(408, f"the request {what} did not arrive in time")
        else:
            self.close()  # an idle keep-alive connection


class _ClientSink(BodySink):
    """An answer's body on its way to the client, framed as its head said."""

    def __init__(
        self, connection: ClientConnection, chunked: bool, upstream: UpstreamConnection
    ) -> None:
        self.connection = connection
        self.chunked = chunked
        self.upstream = upstream

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.chunked:
            self.connection.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            self.connection.write(chunk)

    @property
    def paused(self) -> bool:
        return self.connection.paused_writing

    def finish(self) -> None:
        if self.chunked:
            self.connection.write(b"0\r\n\r\n")
        self.connection._writers = []


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


__all__ = [
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "MAX_PIPELINED",
    "MAX_REQUEST_LINE",
    "NO_BODY_STATUSES",
    "STREAM_HIGH_WATER",
    "STREAM_THRESHOLD",
    "BodyError",
    "BodyStream",
    "ClientConnection",
    "Front",
    "Incoming",
]
