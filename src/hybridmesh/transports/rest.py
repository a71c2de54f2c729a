"""REST over aiohttp."""

from __future__ import annotations

import aiohttp

from hybridmesh.transports._http import (
    HttpSession,
    connection_error,
    decode_body,
    error_from_response,
)
from hybridmesh.transports.base import OutboundRequest, TransportResponse

_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})


class RestTransport:
    """JSON over HTTP: the method and path of the request, the payload as the JSON body.

    A status of 400 or more raises ``TransportError`` with the status, the body and any
    ``Retry-After``; a failed connection raises it with ``status=None``.
    """

    pattern = "rest"

    def __init__(self, session: HttpSession | None = None) -> None:
        self._session = session or HttpSession()
        self._owns_session = session is None

    async def send(self, request: OutboundRequest) -> TransportResponse:
        session = self._session.get()
        method = request.method.upper()
        body = None if method in _BODYLESS and request.payload is None else request.payload
        try:
            async with session.request(
                method,
                request.url,
                json=body,
                params=request.params,
                headers=request.headers,
            ) as response:
                data, text = await decode_body(response)
                if response.status >= 400:
                    raise error_from_response(response, text, request.target, self.pattern)
                return TransportResponse(response.status, data, response.headers)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
            raise connection_error(error, request.target, self.pattern) from error

    async def close(self) -> None:
        if self._owns_session:
            await self._session.close()


__all__ = ["RestTransport"]
