"""The HTTP clients the transports share, and how their answers become results or errors.

REST calls go through a lean keep-alive :class:`~hybridmesh.transports.http1.Http1Pool`;
GraphQL, functions and batch calls through an aiohttp session (aiohttp rather than httpx:
it spends less CPU per call, and these paths carry many calls), by :func:`fetch` where they
want the pool's contract (no redirects followed, the whole answer read).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp.client import IDEMPOTENT_METHODS
from multidict import CIMultiDict

from hybridmesh.core.errors import TransportError
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.transports.base import parse_retry_after
from hybridmesh.transports.http1 import Http1Pool, Http1Response


class HttpSession:
    """A lazily created, pooled ``aiohttp.ClientSession`` and :class:`Http1Pool` that several
    transports share.

    ``limit`` bounds the open connections of the session and, separately, of the pool;
    ``limit_per_host`` bounds the session's per target. Both are made on first use so that
    constructing a client needs no running event loop.
    """

    def __init__(self, *, limit: int = 256, limit_per_host: int = 0) -> None:
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._session: aiohttp.ClientSession | None = None
        self._pool: Http1Pool | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limit, limit_per_host=self._limit_per_host, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                json_serialize=dumps,
                timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Http1Response:
        """One request on the aiohttp session; see :func:`fetch`."""
        return await fetch(self.get(), method, url, headers=headers, body=body, params=params)

    @staticmethod
    def resends_after_stale_reuse(method: str) -> bool:
        """Whether a request whose reused keep-alive connection closed before any byte of
        the answer is sent once more on a new connection. aiohttp does that for the methods
        RFC 9110 calls idempotent only (GET, HEAD, OPTIONS, TRACE, PUT, DELETE); a POST or
        PATCH fails with ``aiohttp.ServerDisconnectedError`` instead."""
        return method.upper() in IDEMPOTENT_METHODS

    def pool(self) -> Http1Pool:
        """The keep-alive HTTP/1.1 pool, made on first use."""
        if self._pool is None:
            self._pool = Http1Pool(limit=self._limit)
        return self._pool

    async def close(self) -> None:
        """Close the session and the pool; both are made afresh if used again."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
        if self._pool is not None:
            await self._pool.close()
        self._pool = None


async def fetch(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    params: Mapping[str, str] | None = None,
) -> Http1Response:
    """Send one request on ``session`` and return its whole answer, whatever its status.

    The contract of :meth:`Http1Pool.request <hybridmesh.transports.http1.Http1Pool.request>`
    on aiohttp: redirects are returned, not followed; gzip and deflate answers are
    decoded; a header with a line break raises ``ValueError``. It has no timeout of its own
    (unless the session has one): the caller bounds the call, and cancelling it closes its
    connection. A failed connection raises ``aiohttp.ClientError``.
    """
    async with session.request(
        method,
        url,
        headers=headers,
        data=body,
        params=params,
        allow_redirects=False,
    ) as response:
        data = await response.read()
        return Http1Response(
            response.status, response.reason or "", CIMultiDict(response.headers), data
        )


def decode_payload(
    status: int, content_type: str, charset: str | None, raw: bytes
) -> tuple[Any, str]:
    """The parsed JSON body (or text) and, for an error status, the raw text of an answer.

    ``content_type`` is the media type without parameters. A successful JSON answer is
    parsed from bytes and not decoded to text as well: that is the hot path.
    """
    if not raw:
        return None, ""
    if status < 400 and content_type.endswith("json"):
        try:
            return loads(raw), ""
        except ValueError:
            pass
    text = raw.decode(charset or "utf-8", errors="replace")
    if content_type.endswith("json"):
        try:
            return loads(raw), text
        except ValueError:
            return text, text
    return text, text


async def decode_body(response: aiohttp.ClientResponse) -> tuple[Any, str]:
    """:func:`decode_payload` for an aiohttp response."""
    raw = await response.read()
    return decode_payload(response.status, response.content_type or "", response.charset, raw)


def error_from_status(
    status: int,
    reason: str | None,
    text: str,
    headers: Mapping[str, str],
    target: str,
    pattern: str,
) -> TransportError:
    """A :class:`TransportError` describing an error status, with its ``Retry-After``."""
    return TransportError(
        message=reason or f"HTTP {status}",
        target=target,
        pattern=pattern,
        status=status,
        body=text,
        retry_after=parse_retry_after(headers.get("Retry-After")),
        headers=dict(headers),
    )


def error_from_response(
    response: aiohttp.ClientResponse, text: str, target: str, pattern: str
) -> TransportError:
    """:func:`error_from_status` for an aiohttp response."""
    return error_from_status(
        response.status, response.reason, text, response.headers, target, pattern
    )


def connection_error(error: BaseException, target: str, pattern: str) -> TransportError:
    """A :class:`TransportError` for a call that got no HTTP answer at all (status None)."""
    return TransportError(
        message=f"{type(error).__name__}: {error}" if str(error) else type(error).__name__,
        target=target,
        pattern=pattern,
        status=None,
    )


__all__ = [
    "HttpSession",
    "connection_error",
    "decode_body",
    "decode_payload",
    "error_from_response",
    "error_from_status",
    "fetch",
]
