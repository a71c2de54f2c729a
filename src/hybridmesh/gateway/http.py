"""What passes through the gateway: a request on its way, the gateway's own answers.

Header names are kept lower-case (HTTP/1.1 names are case-insensitive, RFC 9110 section
5.1), values as the client sent them (decoded as ISO-8859-1, so every byte survives).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from hybridmesh.core.serialization import dumpb

#: RFC 9110 section 7.6.1: headers that concern one connection and are never forwarded,
#: whatever ``Connection`` names besides.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class Headers:
    """An ordered list of ``(name, value)`` pairs; a name may appear more than once."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self.pairs: list[tuple[str, str]] = [(n.lower(), v) for n, v in pairs]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` (lower-case)."""
        for key, value in self.pairs:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]

    def __contains__(self, name: object) -> bool:
        return any(key == name for key, _ in self.pairs)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def hop_by_hop(self) -> frozenset[str]:
        """The names not to forward: :data:`HOP_BY_HOP` and those ``Connection`` names."""
        named = self.get_all("connection")
        if not named:
            return HOP_BY_HOP
        return HOP_BY_HOP | {token.strip().lower() for value in named for token in value.split(",")}

    def add(self, name: str, value: str) -> None:
        self.pairs.append((name.lower(), value))

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` with one ``value`` (where the first one stood)."""
        name = name.lower()
        out: list[tuple[str, str]] = []
        placed = False
        for key, old in self.pairs:
            if key == name:
                if not placed:
                    out.append((name, value))
                    placed = True
            else:
                out.append((key, old))
        if not placed:
            out.append((name, value))
        self.pairs = out

    def remove(self, name: str) -> None:
        name = name.lower()
        self.pairs = [(key, value) for key, value in self.pairs if key != name]

    def copy(self) -> Headers:
        clone = Headers()
        clone.pairs = list(self.pairs)
        return clone

    def __repr__(self) -> str:
        return f"Headers({self.pairs!r})"


@dataclass(slots=True)
class Answer:
    """An answer the gateway gives itself (a refusal, a failure), never sent upstream."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class ReplaceAnswer(Exception):
    """Raised by a policy's ``response_body`` when the backend's answer cannot be given to
    the client (an XML answer that cannot be converted): the client gets ``answer``
    instead (the gateway's answer, so it carries no backend header)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def problem(
    status: int,
    detail: str,
    *,
    request_id: str | None = None,
    title: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    **extra: Any,
) -> Answer:
    """An RFC 9457 problem answer (``application/problem+json``) naming the request id."""
    document: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if request_id is not None:
        document["request_id"] = request_id
    document.update(extra)
    return Answer(
        status,
        [("content-type", "application/problem+json"), *headers],
        dumpb(document),
    )


@dataclass(slots=True)
class ProxyRequest:
    """One request as the gateway handles it. Policies read it and may change it: what
    reaches the backend is ``method``, ``path``, ``query``, ``headers`` and ``body`` as
    they stand when the last policy has run."""

    method: str
    path: str
    query: str
    headers: Headers
    body: bytes
    client_ip: str
    request_id: str
    #: The named groups of the route's path regex.
    captures: dict[str, str] = field(default_factory=dict)
    #: Who is calling, as the authentication policy established it (key or JWT).
    consumer: str | None = None
    #: The id of the credential used (an API key's id), for rate limits by credential.
    credential: str | None = None
    #: A verified JWT's claims.
    claims: dict[str, Any] | None = None
    #: Headers added to whatever answer the client gets (rate limit headers).
    answer_headers: list[tuple[str, str]] = field(default_factory=list)
    #: The name of the route that took the request.
    route: str = ""

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


#: Headers the gateway writes itself on the way to a backend: the client's are replaced.
_SET_ON_THE_WAY = frozenset(
    {
        "host",
        "content-length",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
    }
)


def forwarded_lines(
    request: ProxyRequest, *, base_path: str, authority: str, preserve_host: bool, peer: str
) -> list[str]:
    """The request line and headers a backend gets, without framing: hop-by-hop headers
    dropped, ``Host`` the backend's (or the client's with ``preserve_host``), ``peer``
    appended to ``X-Forwarded-For``, ``X-Forwarded-Proto``, ``X-Forwarded-Host`` and
    ``X-Request-ID`` set. The call to the backend and the mirror's copy both send these."""
    headers = request.headers
    dropped = headers.hop_by_hop() | _SET_ON_THE_WAY
    host = headers.get("host")
    lines = [
        f"{request.method} {base_path}{request.target} HTTP/1.1",
        f"host: {(host if preserve_host else None) or authority}",
    ]
    lines.extend(f"{name}: {value}" for name, value in headers.pairs if name not in dropped)
    earlier = ", ".join(headers.get_all("x-forwarded-for"))
    lines.append(f"x-forwarded-for: {earlier}, {peer}" if earlier else f"x-forwarded-for: {peer}")
    lines.append("x-forwarded-proto: http")
    lines.append(f"x-forwarded-host: {host or ''}")
    lines.append(f"x-request-id: {request.request_id}")
    return lines


def with_body(lines: list[str], request: ProxyRequest) -> bytes:
    """``lines`` framed with ``Content-Length``, then the request's body."""
    body = request.body
    if body or request.method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


__all__ = [
    "HOP_BY_HOP",
    "Answer",
    "Headers",
    "ProxyRequest",
    "ReplaceAnswer",
    "forwarded_lines",
    "problem",
    "with_body",
]
