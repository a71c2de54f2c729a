"""One HTTP/1.1 connection as an ``asyncio.Protocol``, its answer parsed by ``httptools``.

A :class:`Connection` carries one request at a time: it writes the request, feeds what comes
back to llhttp and resolves a future with the :class:`Http1Response`, or fails it with
:class:`Http1Error`. Pooling, limits and retries belong to
:class:`~hybridmesh.transports.http1.Http1Pool`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import httptools
from multidict import CIMultiDict

DEFAULT_PORTS = {"http": 80, "https": 443}


class Http1Error(OSError):
    """No usable HTTP answer: the connection failed (refused, reset, DNS, TLS) or the answer
    was malformed. The message names the origin and the cause."""


class StaleConnectionError(Http1Error):
    """A reused keep-alive connection closed before any byte of the answer arrived: the
    server most likely closed it as idle while the request was on its way, so the request
    can be sent again on a new connection."""


@dataclass(slots=True)
class Http1Response:
    """One complete answer, its body decompressed when it came gzip- or deflate-encoded."""

    status: int
    reason: str
    headers: CIMultiDict[str]
    body: bytes

    @property
    def content_type(self) -> str:
        """The media type, lower-cased and without parameters; "" when there is none."""
        return _media_type(self.headers.get("Content-Type", ""))[0]

    @property
    def charset(self) -> str | None:
        """The ``charset`` parameter of ``Content-Type``, or None."""
        return _media_type(self.headers.get("Content-Type", ""))[1]


@lru_cache(maxsize=256)
def _media_type(header: str) -> tuple[str, str | None]:
    """The media type (lower-cased, without parameters) and the ``charset`` parameter of a
    ``Content-Type`` value. A service answers with the same few values again and again."""
    media, *params = header.split(";")
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"') or None
            break
    return media.strip().lower(), charset


class Origin:
    """One (scheme, host, port): its ``Host`` line and its idle connections, oldest first."""

    __slots__ = ("host", "host_line", "idle", "label", "port", "tls")

    def __init__(self, scheme: str, host: str, port: int) -> None:
        authority = _authority(host, port, scheme)
        self.host = host
        self.port = port
        self.tls = scheme == "https"
        self.label = f"{scheme}://{authority}"
        self.host_line = f"Host: {authority}\r\n"
        self.idle: deque[Connection] = deque()


def _authority(host: str, port: int, scheme: str) -> str:
    """``host[:port]`` as the ``Host`` header writes it (IPv6 in brackets, IDNA as ASCII)."""
    if ":" in host:
        host = f"[{host}]"
    elif not host.isascii():
        host = host.encode("idna").decode("ascii")
    return host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"


class Connection(asyncio.Protocol):
    """One connection to an origin: writes one request at a time and parses its answer.

    ``exchange`` returns a future for the answer. ``reusable`` tells, once it resolved,
    whether the server keeps the connection open for another request. ``on_closed`` runs
    exactly once, when the connection is closed by either side.
    """

    def __init__(
        self,
        origin: Origin,
        loop: asyncio.AbstractEventLoop,
        on_closed: Callable[[Connection], None],
    ) -> None:
        self.origin = origin
        self.reusable = False
        self.closed = False
        self.idle_since = 0.0
        self._loop = loop
        self._on_closed = on_closed
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Http1Response] | None = None
        self._exchanges = 0
        self._received = False
        self._head_only = False
        self._status = 0
        self._reason = b""
        self._raw_headers: list[tuple[str, str]] = []
        self._headers: CIMultiDict[str] | None = None
        self._body: list[bytes] = []

    def exchange(self, request: bytes, *, head_only: bool = False) -> asyncio.Future[Http1Response]:
        """Write ``request``; the future resolves with the answer or fails with Http1Error.

        With ``head_only`` the answer completes with its headers (a HEAD request).
        """
        self._exchanges += 1
        self._received = False
        if self.closed or self._transport is None:
            raise self._failure(None)
        self._head_only = head_only
        self.reusable = False
        self._waiter = self._loop.create_future()
        self._transport.write(request)
        return self._waiter

    def closing(self) -> bool:
        return self.closed or self._transport is None or self._transport.is_closing()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._mark_closed()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._mark_closed()

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always a subclass of asyncio.Transport (uvloop's).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes nobody asked for: the connection no longer follows request and answer.
            self.abort()
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Http1Error(f"{self.origin.label}: unexpected protocol upgrade"))
            self.abort()
        except httptools.HttpParserError as error:
            self._fail(Http1Error(f"{self.origin.label}: malformed answer: {error}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._mark_closed()
        if self._waiter is None:
            return
        if exc is None and self._ends_at_eof():
            self._resolve()
        else:
            self._fail(self._failure(exc))

    # -- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._waiter is None:
            self.reusable = False  # a second answer to one request
        self._reason = b""
        self._raw_headers = []
        self._headers = None
        self._body = []

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers = CIMultiDict(self._raw_headers)
        if self._head_only and self._status >= 200:
            self._resolve()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._status < 200:
            self._headers = None  # an interim answer (100 Continue): the real one follows
            return
        self.reusable = self._parser.should_keep_alive()
        self._resolve()

    # -- internals -----------------------------------------------------------------------------

    def _ends_at_eof(self) -> bool:
        """Whether the pending answer has all its headers and a body delimited by EOF."""
        headers = self._headers
        if headers is None or self._status < 200 or "Content-Length" in headers:
            return False
        return not headers.get("Transfer-Encoding", "").lower().endswith("chunked")

    def _resolve(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        assert self._headers is not None
        reason = self._reason.decode("latin-1")
        waiter.set_result(Http1Response(self._status, reason, self._headers, b"".join(self._body)))

    def _fail(self, error: Http1Error) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _failure(self, cause: BaseException | None) -> Http1Error:
        why = str(cause) if cause else "connection closed before a complete answer"
        if self._exchanges > 1 and not self._received:
            return StaleConnectionError(f"{self.origin.label}: {why}")
        return Http1Error(f"{self.origin.label}: {why}")

    def _mark_closed(self) -> None:
        if not self.closed:
            self.closed = True
            self._on_closed(self)


__all__ = [
    "DEFAULT_PORTS",
    "Connection",
    "Http1Error",
    "Http1Response",
    "Origin",
    "StaleConnectionError",
]
