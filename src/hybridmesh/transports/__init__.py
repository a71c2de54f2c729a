"""Transports: one wire protocol each, behind :class:`Transport`."""

from hybridmesh.transports._http import HttpSession
from hybridmesh.transports.base import (
    OutboundRequest,
    Transport,
    TransportResponse,
    parse_retry_after,
)
from hybridmesh.transports.graphql import GraphQLError, GraphQLTransport
from hybridmesh.transports.mock import MockTransport
from hybridmesh.transports.rest import RestTransport

__all__ = [
    "GraphQLError",
    "GraphQLTransport",
    "HttpSession",
    "MockTransport",
    "OutboundRequest",
    "RestTransport",
    "Transport",
    "TransportResponse",
    "parse_retry_after",
]
