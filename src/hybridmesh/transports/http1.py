"""A lean keep-alive HTTP/1.1 client: ``asyncio.Protocol`` connections parsed by ``httptools``.

The REST transport spends most of its CPU in the HTTP client, and a general client does far
more per call than service-to-service JSON needs. This one writes each request with a single
``transport.write``, parses the answer with llhttp (through ``httptools``) and keeps
connections alive per origin. It does not follow redirects, sends no headers of its own but
``Host`` and ``Content-Length``, decodes gzip and deflate answers (without asking for them)
and has no timeouts: the caller bounds each call (the hybrid client, with
``asyncio.timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import zlib
from collections import OrderedDict, deque
from collections.abc import Mapping
from urllib.parse import quote, urlencode, urlsplit

from hybridmesh.transports._http1_connection import (
    DEFAULT_PORTS,
    Connection,
    Http1Error,
    Http1Response,
    Origin,
    StaleConnectionError,
)

_PATH_SAFE = "/:@!$&'()*+,;=%"
_QUERY_SAFE = _PATH_SAFE + "?"
_URL_CACHE_SIZE = 512
#: Methods that carry a body by definition: without one they still say ``Content-Length: 0``.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: Framing headers the pool writes itself; a caller's copy would contradict them.
_FRAMING = frozenset({"content-length", "transfer-encoding"})


class Http1Pool:
    """Keep-alive HTTP/1.1 connections per origin, at most ``limit`` open in all.

    ``limit`` (default 256) bounds open connections across origins: a request waits for a
    free one, closing an idle connection of another origin when that frees a place.
    Connections idle for more than ``idle_seconds`` (default 30) are closed when next looked
    at. ``ssl_context`` (default: the system's trusted CAs) verifies https origins. The pool
    binds to the running event loop on first use, so making one needs no loop.
    """

    def __init__(
        self,
        *,
        limit: int = 256,
        idle_seconds: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._idle_seconds = idle_seconds
        self._ssl_context = ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._origins: dict[tuple[str, str, int], Origin] = {}
        self._urls: OrderedDict[str, tuple[Origin, str]] = OrderedDict()
        self._connections: set[Connection] = set()
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @staticmethod
    def resends_after_stale_reuse(method: str) -> bool:
        """Whether a request whose reused keep-alive connection closed before any byte of
        the answer is sent once more on a new connection: yes, for every method.

        Nothing of an answer came back, which on a keep-alive connection almost always
        means the server closed it as idle while the request was on its way, before reading
        it. The pool carries service-to-service calls, whose commands the hybrid client
        sends with an ``Idempotency-Key``, so resending even a POST once is the safer way
        to get the answer. (HEAD never reuses a connection.)
        """
        del method  # the same answer for every method
        return True

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Http1Response:
        """Send one request and return its answer, whatever its status.

        ``params`` are appended to the query string. A request on a reused connection that
        the server closed before answering is sent once more on a new connection. Raises
        :class:`Http1Error` when no complete answer came back, ``ValueError`` for a URL
        that is not http(s) or a header that contains a line break. Cancelling the call
        closes its connection.
        """
        self._bind()
        method = method.upper()
        origin, target = self._resolve(url)
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params)
        message = _message(method, target, origin, headers, body)
        if method == "HEAD":
            # llhttp cannot be told that a HEAD answer has no body: the connection ends with it.
            connection = await self._connection(origin, fresh=True)
            return await self._exchange(connection, message, head_only=True)
        try:
            return await self._exchange(await self._connection(origin), message)
        except StaleConnectionError:
            return await self._exchange(await self._connection(origin, fresh=True), message)

    async def close(self) -> None:
        """Close every connection; requests still waiting fail with Http1Error. Idempotent."""
        self._closed = True
        while self._slot_waiters:
            self._wake_one()  # each finds the pool closed and raises
        connections = list(self._connections)
        for connection in connections:
            connection.abort()
        if connections:
            await asyncio.sleep(0)  # let the transports release their sockets

    # -- connections ---------------------------------------------------------------------------

    async def _connection(self, origin: Origin, *, fresh: bool = False) -> Connection:
        """An idle connection to ``origin`` (unless ``fresh``) or a new one, within the limit."""
        while True:
            if self._closed:
                raise Http1Error(f"{origin.label}: the HTTP/1.1 pool is closed")
            if not fresh and (connection := self._take_idle(origin)) is not None:
                return connection
            if len(self._connections) < self._limit or self._evict_idle():
                return await self._connect(origin)
            await self._wait_for_slot()

    async def _connect(self, origin: Origin) -> Connection:
        loop = self._bind()
        connection = Connection(origin, loop, self._forget)
        self._connections.add(connection)
        tls = self._tls_context() if origin.tls else None
        try:
            await loop.create_connection(
                lambda: connection,
                origin.host,
                origin.port,
                ssl=tls,
                server_hostname=origin.host if tls else None,
            )
        except OSError as error:
            connection.abort()
            raise Http1Error(f"{origin.label}: cannot connect: {error}") from error
        except BaseException:
            connection.abort()
            raise
        return connection

    async def _exchange(
        self, connection: Connection, message: bytes, *, head_only: bool = False
    ) -> Http1Response:
        """Send ``message`` on ``connection``; pool the connection afterwards or close it."""
        try:
            response = await connection.exchange(message, head_only=head_only)
        except BaseException:
            connection.abort()  # an answer may still be on its way: never reuse
            raise
        if connection.reusable and not connection.closing() and not self._closed:
            self._park(connection)
        else:
            connection.close()
        return _decoded(response, connection.origin)

    def _take_idle(self, origin: Origin) -> Connection | None:
        idle = origin.idle
        if not idle:
            return None
        assert self._loop is not None
        stale_before = self._loop.time() - self._idle_seconds
        while idle and idle[0].idle_since < stale_before:
            idle.popleft().close()
        while idle:
            connection = idle.pop()
            if not connection.closing():
                return connection
        return None

    def _park(self, connection: Connection) -> None:
        assert self._loop is not None
        connection.idle_since = self._loop.time()
        connection.origin.idle.append(connection)
        self._wake_one()

    def _evict_idle(self) -> bool:
        """Close the oldest idle connection of some origin to make room; False if none."""
        for origin in self._origins.values():
            if origin.idle:
                origin.idle.popleft().close()
                return True
        return False

    def _forget(self, connection: Connection) -> None:
        """A connection closed: it leaves the pool and frees a place."""
        self._connections.discard(connection)
        with contextlib.suppress(ValueError):
            connection.origin.idle.remove(connection)
        self._wake_one()

    async def _wait_for_slot(self) -> None:
        assert self._loop is not None
        waiter = self._loop.create_future()
        self._slot_waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                with contextlib.suppress(ValueError):
                    self._slot_waiters.remove(waiter)
            else:
                self._wake_one()  # woken, but will not take the place: pass it on
            raise

    def _wake_one(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # -- set-up --------------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError("this Http1Pool is in use by another event loop")
        return loop

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _resolve(self, url: str) -> tuple[Origin, str]:
        """The origin and request target of ``url``; the same URLs recur, so they are cached."""
        try:
            found = self._urls[url]
        except KeyError:
            found = self._urls[url] = self._parse(url)
            if len(self._urls) > _URL_CACHE_SIZE:
                self._urls.popitem(last=False)
        else:
            self._urls.move_to_end(url)
        return found

    def _parse(self, url: str) -> tuple[Origin, str]:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname
        if scheme not in DEFAULT_PORTS or not host:
            raise ValueError(f"not an http or https URL: {url!r}")
        key = (scheme, host, parts.port or DEFAULT_PORTS[scheme])
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = Origin(*key)
        target = quote(parts.path or "/", safe=_PATH_SAFE)
        if parts.query:
            target += "?" + quote(parts.query, safe=_QUERY_SAFE)
        return origin, target


def _message(
    method: str,
    target: str,
    origin: Origin,
    headers: Mapping[str, str] | None,
    body: bytes | None,
) -> bytes:
    """The request head and body, ready for one write."""
    lines = [f"{method} {target} HTTP/1.1\r\n", origin.host_line]
    for name, value in (headers or {}).items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise ValueError(f"header {name!r} contains a line break")
        lowered = name.lower()
        if lowered == "host":
            lines[1] = f"Host: {value}\r\n"
        elif lowered not in _FRAMING:
            lines.append(f"{name}: {value}\r\n")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}\r\n")
    elif method in _BODY_METHODS:
        lines.append("Content-Length: 0\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode("utf-8", "surrogateescape")
    return head + body if body else head


def _decoded(response: Http1Response, origin: Origin) -> Http1Response:
    """``response`` with its body decompressed when it came gzip- or deflate-encoded."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if not response.body or encoding not in ("gzip", "x-gzip", "deflate"):
        return response
    try:
        response.body = _inflate(response.body, encoding)
    except zlib.error as error:
        raise Http1Error(f"{origin.label}: cannot decode the {encoding} body: {error}") from error
    return response


def _inflate(body: bytes, encoding: str) -> bytes:
    try:
        return zlib.decompress(body, 47)  # wbits 47: gzip or zlib framing
    except zlib.error:
        if encoding != "deflate":
            raise
    return zlib.decompress(body, -zlib.MAX_WBITS)  # deflate sent without zlib framing


__all__ = ["Http1Error", "Http1Pool", "Http1Response"]
