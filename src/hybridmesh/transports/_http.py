"""The aiohttp session the HTTP transports share (DESIGN.md: aiohttp, not httpx, on hot paths)."""

from __future__ import annotations

from typing import Any

import aiohttp

from hybridmesh.core.errors import TransportError
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.transports.base import parse_retry_after


class HttpSession:
    """A lazily created, pooled ``aiohttp.ClientSession`` that several transports share.

    ``limit`` bounds open connections in all; ``limit_per_host`` bounds them per target. The
    session is made on first use so that constructing a client needs no running event loop.
    """

    def __init__(self, *, limit: int = 256, limit_per_host: int = 0) -> None:
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._session: aiohttp.ClientSession | None = None
        self._owners = 0

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

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


async def decode_body(response: aiohttp.ClientResponse) -> tuple[Any, str]:
    """The parsed JSON body (or text) and, for an error status, the raw text of a response.

    A successful JSON answer is parsed from bytes and not decoded to text as well: that is
    the hot path.
    """
    raw = await response.read()
    if not raw:
        return None, ""
    ctype = response.content_type or ""
    if response.status < 400 and ctype.endswith("json"):
        try:
            return loads(raw), ""
        except ValueError:
            pass
    text = raw.decode(response.charset or "utf-8", errors="replace")
    if ctype.endswith("json"):
        try:
            return loads(raw), text
        except ValueError:
            return text, text
    return text, text


def error_from_response(
    response: aiohttp.ClientResponse, text: str, target: str, pattern: str
) -> TransportError:
    """A :class:`TransportError` describing an error status."""
    return TransportError(
        message=response.reason or f"HTTP {response.status}",
        target=target,
        pattern=pattern,
        status=response.status,
        body=text,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        headers=dict(response.headers),
    )


def connection_error(error: BaseException, target: str, pattern: str) -> TransportError:
    """A :class:`TransportError` for a call that got no HTTP answer at all (status None)."""
    return TransportError(
        message=f"{type(error).__name__}: {error}" if str(error) else type(error).__name__,
        target=target,
        pattern=pattern,
        status=None,
    )


__all__ = ["HttpSession", "connection_error", "decode_body", "error_from_response"]
