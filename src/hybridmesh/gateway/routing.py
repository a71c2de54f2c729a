"""Which route takes a request, and which of its backends serves it.

**Matching.** A route matches when every condition it states holds: one of its hosts
(``*.example.com`` matches one or more labels in front), its path rule, one of its methods,
and every header rule. Of the routes that match, the most specific wins, compared in this
order (the first difference decides):

1. a route naming hosts over one that does not, and an exact host over a wildcard;
2. an exact path over a regex, a regex over a prefix; between two prefixes, the longer;
   between two regexes, the longer pattern;
3. more header rules over fewer;
4. a route naming methods over one that does not;
5. the route's name, alphabetically (so the order never depends on how routes were stored).

**Choosing a backend.** A header rule (``header_routes``) that holds sends the request to
its backend. Otherwise, with a sticky key (a header, a cookie, a JWT claim or the client
IP), the backend is chosen by MurmurHash3 (32-bit, seed 0) of the route's name and the key,
into 10,000 buckets (0.01 % each): backends own ranges of buckets in the order the route
lists them, as wide as their weights, so a key keeps its backend while weights change
unless its bucket moves to another backend's range. With two backends a key that reached
the one whose weight grows never goes back. This is how flagd's fractional rollouts
assign users. Without a key, a weighted random choice.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

import mmh3

from hybridmesh.gateway.config import Backend, HeaderMatch, HeaderRoute, Route
from hybridmesh.gateway.http import Headers

#: Buckets of a sticky split: 0.01 % each.
BUCKETS = 10_000


def bucket_of(route: str, key: str) -> int:
    """The bucket (0 to 9,999) of ``key`` on ``route``: MurmurHash3 x86 32-bit of the two
    joined, seed 0, scaled to :data:`BUCKETS`."""
    return mmh3.hash(f"{route}{key}", 0, signed=False) * BUCKETS >> 32


def _value_test(exact: str | None, prefix: str | None, regex: str | None) -> Callable[[str], bool]:
    if exact is not None:
        return exact.__eq__
    if prefix is not None:
        return lambda value: value.startswith(prefix)
    assert regex is not None
    compiled = re.compile(regex)
    return lambda value: compiled.fullmatch(value) is not None


def _header_test(rule: HeaderMatch | HeaderRoute, name: str) -> Callable[[Headers], bool]:
    test = _value_test(rule.exact, rule.prefix, rule.regex)

    def holds(headers: Headers) -> bool:
        return any(test(value) for value in headers.get_all(name))

    return holds


@dataclass(slots=True)
class CompiledRoute:
    """A route ready to match: its tests built once."""

    route: Route
    rank: tuple[int | str, ...]
    hosts: frozenset[str]
    wildcard_hosts: tuple[str, ...]
    methods: frozenset[str]
    exact: str | None
    prefix: str | None
    regex: re.Pattern[str] | None
    header_tests: tuple[Callable[[Headers], bool], ...]
    header_routes: tuple[tuple[Callable[[Headers], bool], Backend], ...]
    #: (end of range, backend): cumulative bucket ranges in the route's order.
    ranges: tuple[tuple[int, Backend], ...]
    weights: tuple[float, ...]
    live: tuple[Backend, ...] = field(default=())

    @classmethod
    def of(cls, route: Route) -> CompiledRoute:
        match = route.match
        exact_hosts = frozenset(h for h in match.hosts if not h.startswith("*."))
        wildcards = tuple(h[1:] for h in match.hosts if h.startswith("*."))
        path = match.path
        if path.exact is not None:
            path_rank: tuple[int, int] = (3, len(path.exact))
        elif path.regex is not None:
            path_rank = (2, len(path.regex))
        else:
            path_rank = (1, len(path.prefix or "/"))
        host_rank = 2 if exact_hosts else (1 if wildcards else 0)
        rank = (
            -host_rank,
            -path_rank[0],
            -path_rank[1],
            -len(match.headers),
            -int(bool(match.methods)),
            route.name,
        )
        ranges: list[tuple[int, Backend]] = []
        end = 0
        for backend in route.backends:
            end += round(backend.weight * 100)
            ranges.append((end, backend))
        return cls(
            route=route,
            rank=rank,
            hosts=exact_hosts,
            wildcard_hosts=wildcards,
            methods=frozenset(match.methods),
            exact=path.exact,
            prefix=None if path.prefix is None else path.prefix.rstrip("/"),
            regex=None if path.regex is None else re.compile(path.regex),
            header_tests=tuple(_header_test(h, h.name) for h in match.headers),
            header_routes=tuple(
                (_header_test(rule, rule.header), route.backend(rule.backend))
                for rule in route.header_routes
            ),
            ranges=tuple(ranges),
            weights=tuple(b.weight for b in route.backends),
            live=tuple(b for b in route.backends if b.weight > 0),
        )

    def path_match(self, path: str) -> dict[str, str] | None:
        """The captures when ``path`` matches (empty for exact and prefix rules)."""
        if self.exact is not None:
            return {} if path == self.exact else None
        if self.regex is not None:
            found = self.regex.fullmatch(path)
            return None if found is None else {k: v for k, v in found.groupdict().items() if v}
        prefix = self.prefix or ""
        if not prefix or path == prefix or path.startswith(prefix + "/"):
            return {}
        return None

    def host_match(self, host: str) -> bool:
        if not self.hosts and not self.wildcard_hosts:
            return True
        if host in self.hosts:
            return True
        bare = host.rsplit(":", 1)[0] if ":" in host and not host.endswith("]") else host
        if bare in self.hosts:
            return True
        return any(bare.endswith(suffix) for suffix in self.wildcard_hosts)

    def choose(self, key: str | None, headers: Headers, rng: random.Random) -> Backend:
        """The backend for a request: a header rule, else the sticky bucket, else a
        weighted random choice."""
        for holds, backend in self.header_routes:
            if holds(headers):
                return backend
        if key is not None:
            bucket = bucket_of(self.route.name, key)
            for end, backend in self.ranges:
                if bucket < end:
                    return backend
            return self.ranges[-1][1]
        if len(self.live) == 1:
            return self.live[0]
        return rng.choices(self.route.backends, weights=self.weights)[0]

    def upstream_path(self, path: str, captures: dict[str, str]) -> str:
        """The path the backend sees: rewritten, or with the prefix stripped."""
        route = self.route
        rest = path
        if route.strip_prefix and self.prefix:
            rest = path[len(self.prefix) :] or "/"
        if route.rewrite is None:
            return rest
        values = {**captures, "path": rest.lstrip("/")}
        return re.sub(
            r"\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: values.get(m.group(1), ""), route.rewrite
        )


def sticky_key(
    route: Route, headers: Headers, client_ip: str, claims: dict[str, Any] | None
) -> str | None:
    """The request's sticky key under ``route`` (None: no key, a random choice)."""
    sticky = route.sticky
    if sticky is None:
        return None
    if sticky.header is not None:
        return headers.get(sticky.header)
    if sticky.cookie is not None:
        for raw in headers.get_all("cookie"):
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(raw)
            except Exception:  # a malformed cookie header: no key
                continue
            if sticky.cookie in jar:
                return jar[sticky.cookie].value
        return None
    if sticky.claim is not None:
        value = (claims or {}).get(sticky.claim)
        return None if value is None else str(value)
    return client_ip


class RouteTable:
    """The routes in their order of specificity."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = sorted((CompiledRoute.of(r) for r in routes), key=lambda c: c.rank)
        self.by_name = {c.route.name: c for c in self.routes}

    def match(
        self, method: str, host: str, path: str, headers: Headers
    ) -> tuple[CompiledRoute, dict[str, str]] | None:
        """The most specific route taking the request, with its path captures."""
        for compiled in self.routes:
            if compiled.methods and method not in compiled.methods:
                continue
            if not compiled.host_match(host):
                continue
            captures = compiled.path_match(path)
            if captures is None:
                continue
            if all(test(headers) for test in compiled.header_tests):
                return compiled, captures
        return None


__all__ = ["BUCKETS", "CompiledRoute", "RouteTable", "bucket_of", "sticky_key"]
