"""REST over the keep-alive HTTP/1.1 pool."""

from __future__ import annotations

from collections.abc import Mapping

from hybridmesh.core.serialization import dumpb
from hybridmesh.transports._http import (
    HttpSession,
    connection_error,
    decode_payload,
    error_from_status,
)
from hybridmesh.transports.base import OutboundRequest, TransportResponse, header
from hybridmesh.transports.http1 import Http1Error


class RestTransport:
    """JSON over HTTP: the method and path of the request, the payload as the JSON body.

    Calls go through the session's :class:`~hybridmesh.transports.http1.Http1Pool`. A status
    of 400 or more raises ``TransportError`` with the status, the body and any
    ``Retry-After``; a failed connection raises it with ``status=None``. Redirects are not
    followed: a call between services should reach its target, so a 3xx answer is returned
    like any other status below 400.
    """

    pattern = "rest"

    def __init__(self, session: HttpSession | None = None) -> None:
        self._session = session or HttpSession()
        self._owns_session = session is None

    async def send(self, request: OutboundRequest) -> TransportResponse:
        method = request.method.upper()
        headers: Mapping[str, str] = request.headers
        body = None
        if request.payload is not None:
            body = dumpb(request.payload)
            if header(headers, "Content-Type") is None:
                headers = {**headers, "Content-Type": "application/json"}
        try:
            response = await self._session.pool().request(
                method, request.url, headers=headers, body=body, params=request.params
            )
        except Http1Error as error:
            raise connection_error(error, request.target, self.pattern) from error
        data, text = decode_payload(
            response.status, response.content_type, response.charset, response.body
        )
        if response.status >= 400:
            raise error_from_status(
                response.status,
                response.reason,
                text,
                response.headers,
                request.target,
                self.pattern,
            )
        return TransportResponse(response.status, data, response.headers)

    async def close(self) -> None:
        if self._owns_session:
            await self._session.close()


__all__ = ["RestTransport"]
