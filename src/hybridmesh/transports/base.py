"""The transport contract: how the hybrid client hands one attempt to a wire protocol.

A transport sends one :class:`OutboundRequest` and returns one :class:`TransportResponse`, or
raises :class:`~hybridmesh.core.errors.TransportError` (with the HTTP status when there was
one, ``None`` when the connection failed). It does not retry, time out, or break circuits:
the client wraps every attempt in those guards, so a transport stays a few dozen lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class OutboundRequest:
    """One attempt of a call, fully resolved: where it goes and what it carries."""

    target: str
    base_url: str
    method: str = "GET"
    path: str = "/"
    payload: Any = None
    params: Mapping[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: GraphQL document and variables, for the GraphQL transport.
    query: str | None = None
    variables: Mapping[str, Any] | None = None
    operation_name: str | None = None
    #: Event type, for the events transport.
    event_type: str | None = None
    #: Operation name, for the batch transport.
    operation: str | None = None

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/" + self.path.lstrip("/")


@dataclass(slots=True)
class TransportResponse:
    """What came back: the status (HTTP, or 202 for an accepted event), parsed data, headers."""

    status: int
    data: Any
    headers: Mapping[str, str] = field(default_factory=dict)


class Transport(Protocol):
    """A wire protocol for one integration pattern (``rest``, ``graphql``, ``events``, …)."""

    #: The integration pattern this transport serves; matches ``PatternType`` values.
    pattern: str

    async def send(self, request: OutboundRequest) -> TransportResponse:
        """Send one attempt. Raises ``TransportError`` when the answer is an error."""
        ...

    async def close(self) -> None:
        """Release connections. Safe to call twice."""
        ...


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` in a plain dict of headers, its name matched without
    regard to case (the exact spelling is looked up first: it is the usual one)."""
    found = headers.get(name)
    if found is not None:
        return found
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds; None when absent or a date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


__all__ = ["OutboundRequest", "Transport", "TransportResponse", "header", "parse_retry_after"]
