"""GraphQL over HTTP (POST, JSON), served at the target's ``graphql_path``."""

from __future__ import annotations

from typing import Any

import aiohttp

from hybridmesh.core.errors import TransportError
from hybridmesh.core.serialization import dumpb, dumps
from hybridmesh.transports._http import (
    HttpSession,
    connection_error,
    decode_payload,
    error_from_status,
)
from hybridmesh.transports.base import OutboundRequest, TransportResponse, header


class GraphQLError(TransportError):
    """The server answered, but with GraphQL ``errors`` and no usable ``data``."""


class GraphQLTransport:
    """Sends ``{"query", "variables", "operationName"}`` and returns the ``data`` member.

    The request's ``path`` is the endpoint (the client fills in the service's
    ``graphql_path``). An answer whose ``errors`` is not empty and whose ``data`` is null
    raises :class:`GraphQLError`; partial data with errors is returned, errors included.
    Redirects are not followed (as for REST): a 3xx answer comes back without data.
    """

    pattern = "graphql"

    def __init__(self, session: HttpSession | None = None) -> None:
        self._session = session or HttpSession()
        self._owns_session = session is None

    async def send(self, request: OutboundRequest) -> TransportResponse:
        if not request.query:
            raise TransportError(
                message="a GraphQL call needs a query document (request.query)",
                target=request.target,
                pattern=self.pattern,
                status=400,
            )
        document: dict[str, Any] = {"query": request.query}
        if request.variables:
            document["variables"] = dict(request.variables)
        if request.operation_name:
            document["operationName"] = request.operation_name
        headers: dict[str, str] = request.headers
        if header(headers, "Content-Type") is None:
            headers = {**headers, "Content-Type": "application/json"}
        try:
            resp = await self._session.fetch(
                "POST", request.url, headers=headers, body=dumpb(document)
            )
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
            raise connection_error(error, request.target, self.pattern) from error
        status = resp.status
        body, text = decode_payload(status, resp.content_type, resp.charset, resp.body)
        if status >= 400 and not isinstance(body, dict):
            raise error_from_status(
                status, resp.reason, text, resp.headers, request.target, self.pattern
            )
        errors = body.get("errors") if isinstance(body, dict) else None
        data = body.get("data") if isinstance(body, dict) else None
        if errors and data is None:
            messages = "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))
            raise GraphQLError(
                message=messages or "GraphQL errors",
                target=request.target,
                pattern=self.pattern,
                status=status,
                body=text or dumps(errors),
            )
        if status >= 400:
            raise TransportError(
                message=f"HTTP {status}",
                target=request.target,
                pattern=self.pattern,
                status=status,
                body=text,
            )
        result: Any = data if not errors else {"data": data, "errors": errors}
        return TransportResponse(status, result, resp.headers)

    async def close(self) -> None:
        if self._owns_session:
            await self._session.close()


__all__ = ["GraphQLError", "GraphQLTransport"]
