"""Who the caller is, as the authentication policies tell the backend (Kong's headers).

A backend behind an authenticating route reads ``X-Consumer-Username`` (and, for an API
key, ``X-Credential-Identifier``) to know its caller, so these headers must only ever come
from the gateway: :func:`set_identity` removes whatever the client sent under these names
before it sets its own.
"""

from __future__ import annotations

import re

from hybridmesh.gateway.http import Headers, ProxyRequest

CONSUMER_HEADER = "x-consumer-username"
CREDENTIAL_HEADER = "x-credential-identifier"
ANONYMOUS_HEADER = "x-anonymous-consumer"
#: Never passed on from a client on a route that authenticates.
IDENTITY_HEADERS = frozenset(
    {CONSUMER_HEADER, "x-consumer-id", CREDENTIAL_HEADER, ANONYMOUS_HEADER}
)

_REALM = re.compile(r"[ !#-\[\]-~]{1,64}")  # printable ASCII without '"' and '\'


def check_realm(value: str) -> str:
    """A realm for ``WWW-Authenticate`` (quoted there, so no quotes or backslashes)."""
    if not _REALM.fullmatch(value):
        raise ValueError("a realm is 1 to 64 printable ASCII characters without '\"' or '\\'")
    return value


def clear_identity(headers: Headers) -> None:
    """Remove the identity headers a client sent."""
    pairs = headers.pairs
    if any(name in IDENTITY_HEADERS for name, _ in pairs):
        headers.pairs = [(n, v) for n, v in pairs if n not in IDENTITY_HEADERS]


def set_identity(
    request: ProxyRequest,
    consumer: str,
    credential: str | None = None,
    *,
    anonymous: bool = False,
) -> None:
    """Record the caller on ``request`` and in the headers the backend gets."""
    request.consumer = consumer
    request.credential = credential
    headers = request.headers
    clear_identity(headers)
    headers.add(CONSUMER_HEADER, consumer)
    if credential is not None:
        headers.add(CREDENTIAL_HEADER, credential)
    if anonymous:
        headers.add(ANONYMOUS_HEADER, "true")


__all__ = [
    "ANONYMOUS_HEADER",
    "CONSUMER_HEADER",
    "CREDENTIAL_HEADER",
    "IDENTITY_HEADERS",
    "check_realm",
    "clear_identity",
    "set_identity",
]
