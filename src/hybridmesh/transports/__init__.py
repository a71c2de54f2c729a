"""Transports: one wire protocol each, behind :class:`Transport`."""

from hybridmesh.transports._http import HttpSession, fetch
from hybridmesh.transports.base import (
    OutboundRequest,
    Transport,
    TransportResponse,
    parse_retry_after,
)
from hybridmesh.transports.graphql import GraphQLError, GraphQLTransport
from hybridmesh.transports.http1 import Http1Error, Http1Pool, Http1Response
from hybridmesh.transports.mock import MockTransport
from hybridmesh.transports.rest import RestTransport

__all__ = [
    "GraphQLError",
    "GraphQLTransport",
    "Http1Error",
    "Http1Pool",
    "Http1Response",
    "HttpSession",
    "MockTransport",
    "OutboundRequest",
    "RestTransport",
    "Transport",
    "TransportResponse",
    "fetch",
    "parse_retry_after",
]
