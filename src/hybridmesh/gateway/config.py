"""Routes as people write them: the gateway's YAML, validated with file, line and field.

A routes file holds ``routes:``, a list of routes (or a single route, or a list). Each
route says which requests it takes (``match``), where they go (``backends`` with weights,
optionally ``sticky`` and ``header_routes``), whether a share of them is copied to a
candidate (``mirror``), how the path is rewritten, the resilience of the calls
(``timeouts``, ``retries``, ``outlier``) and its ``policies`` (each kind documented in
docs/gateway.md, like Kong's plugins)::

    routes:
      - name: legacy-erp
        match: {path: {prefix: /erp}, methods: [GET, POST]}
        strip_prefix: true
        backends:
          - {name: legacy, service: legacy-erp, weight: 100}
        policies:
          key_auth: {hide_credentials: true}
          rate_limit: {limit: 20, per: second, by: consumer}

Weights are percents (to 0.01) and add up to 100. Everything a route names is checked when
the file is read, except registry services, which are checked when routes are applied (the
registry is in the store).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.limits import Count, Ratio, Seconds, check_pattern, describe, location
from hybridmesh.core.names import Name
from hybridmesh.core.urls import http_url_problem
from hybridmesh.core.yaml_source import (
    DEFAULT_LIMITS,
    Lines,
    YamlLimits,
    YamlReader,
    document_entries,
)

#: Methods a route may name (RFC 9110's, and PATCH).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
#: Methods that are safe to mirror and to retry (RFC 9110 section 9.2.1).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: Methods whose repeat has the effect of one (RFC 9110 section 9.2.2): these are retried.
IDEMPOTENT_METHODS = SAFE_METHODS | {"PUT", "DELETE"}
#: A header name (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
_HOST = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?(:\d{1,5})?")


def _header_name(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"{value[:40]!r} is not a header name (RFC 9110 token characters)")
    return value.lower()


def _path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must start with '/'")
    if re.search(r"[\x00-\x20\x7f?#]", value):
        raise ValueError("may not contain spaces, control characters, '?' or '#'")
    return value


def _url(value: str) -> str:
    problem = http_url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value.rstrip("/")


def _host(value: str) -> str:
    if not _HOST.fullmatch(value):
        raise ValueError(f"{value[:40]!r} is not a host name (optionally '*.' and ':port')")
    return value.lower()


def _method(value: str) -> str:
    upper = value.upper()
    if upper not in METHODS:
        raise ValueError(f"{value[:20]!r} is not one of {', '.join(sorted(METHODS))}")
    return upper


def _percent(value: float) -> float:
    if not 0 <= value <= 100:
        raise ValueError("must be a percent from 0 to 100")
    if round(value, 2) != value:
        raise ValueError("a percent has at most two decimals (0.01 % steps)")
    return value


HeaderName = Annotated[str, AfterValidator(_header_name)]
Regex = Annotated[str, AfterValidator(check_pattern)]
UrlPath = Annotated[str, AfterValidator(_path)]
Url = Annotated[str, AfterValidator(_url)]
Host = Annotated[str, AfterValidator(_host)]
Method = Annotated[str, AfterValidator(_method)]
Percent = Annotated[float, AfterValidator(_percent)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _one_of(model: BaseModel, names: tuple[str, ...]) -> None:
    given = [name for name in names if getattr(model, name) is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(names)}")


class PathMatch(_Strict):
    """How a route matches the path: ``exact``, ``prefix`` (on whole segments: ``/erp``
    takes ``/erp`` and ``/erp/x``, not ``/erpx``) or ``regex`` (the whole path; named groups
    are captures a ``rewrite`` can use)."""

    exact: UrlPath | None = None
    prefix: UrlPath | None = None
    regex: Regex | None = None

    @model_validator(mode="after")
    def _one(self) -> PathMatch:
        _one_of(self, ("exact", "prefix", "regex"))
        return self


class HeaderMatch(_Strict):
    """A request header the route requires: ``exact`` value, ``prefix`` or ``regex``."""

    name: HeaderName
    exact: str | None = None
    prefix: str | None = None
    regex: Regex | None = None

    @model_validator(mode="after")
    def _one(self) -> HeaderMatch:
        _one_of(self, ("exact", "prefix", "regex"))
        return self


class Match(_Strict):
    """Which requests a route takes. Everything given must hold."""

    hosts: tuple[Host, ...] = ()
    path: PathMatch = PathMatch(prefix="/")
    methods: tuple[Method, ...] = ()
    headers: tuple[HeaderMatch, ...] = Field((), max_length=32)


class Timeouts(_Strict):
    """Seconds: to connect, from the request sent to the answer's head, for the whole call."""

    connect: Seconds = 2.0
    read: Seconds = 30.0
    total: Seconds = 60.0


class Retries(_Strict):
    """Further attempts after a failure to connect or a 502/503/504 answer: always for
    idempotent methods, for others only when no byte of the request was sent."""

    attempts: int = Field(1, ge=0, le=5)
    #: Retry these statuses too (besides connection failures) for idempotent methods.
    on_statuses: tuple[int, ...] = (502, 503, 504)


class Outlier(_Strict):
    """Envoy's consecutive_5xx: after ``consecutive_failures`` 5xx answers or gateway
    failures in a row a backend is ejected for ``base_ejection`` seconds, longer each
    time it is ejected again (times the number of ejections, up to ``max_ejection``)."""

    consecutive_failures: int = Field(5, ge=1, le=1000)
    base_ejection: Seconds = 10.0
    max_ejection: Seconds = 300.0


class Breaker(_Strict):
    """The project's circuit breaker, one per backend: it opens when at least
    ``failure_rate`` of the last ``window`` calls (once ``minimum_calls`` were made) failed
    to connect, timed out or answered 5xx, refuses calls for ``wait_in_open`` seconds
    (503), then lets a few trial calls through."""

    enabled: bool = True
    failure_rate: Ratio = 0.5
    minimum_calls: Count = 20
    window: Count = 50
    wait_in_open: Seconds = 10.0


class Backend(_Strict):
    """Where a route's requests go: a registry ``service`` (its ``base_url``) or a
    ``url``, with a ``weight`` in percent."""

    name: Name
    service: Name | None = None
    url: Url | None = None
    weight: Percent = 0.0

    @model_validator(mode="after")
    def _one(self) -> Backend:
        _one_of(self, ("service", "url"))
        return self


class Sticky(_Strict):
    """What keeps a user on one backend: a ``header``, a ``cookie``, a JWT ``claim`` (of
    the route's ``jwt`` policy) or the ``client_ip``."""

    header: HeaderName | None = None
    cookie: str | None = Field(None, min_length=1, max_length=256)
    claim: str | None = Field(None, min_length=1, max_length=256)
    client_ip: Literal[True] | None = None

    @model_validator(mode="after")
    def _one(self) -> Sticky:
        _one_of(self, ("header", "cookie", "claim", "client_ip"))
        return self


class HeaderRoute(_Strict):
    """Requests carrying this header go to ``backend`` whatever the weights."""

    header: HeaderName
    exact: str | None = None
    prefix: str | None = None
    regex: Regex | None = None
    backend: Name

    @model_validator(mode="after")
    def _one(self) -> HeaderRoute:
        _one_of(self, ("exact", "prefix", "regex"))
        return self


class Compare(_Strict):
    """How a mirrored answer is compared with the primary's: the status, these
    headers, and the JSON bodies without the ``ignore`` paths (``a.b``, ``items.*.id``)."""

    headers: tuple[HeaderName, ...] = ("content-type",)
    ignore: tuple[str, ...] = ()
    #: Most mismatches kept in the store for the route (the oldest go first).
    keep: int = Field(100, ge=0, le=10_000)


class Mirror(_Strict):
    """Copy ``percent`` of the route's requests to ``backend`` (one of the route's, by
    name) in the background, and compare the answers."""

    backend: Name
    percent: Percent = 100.0
    methods: tuple[Method, ...] = ("GET", "HEAD")
    compare: Compare = Compare()
    #: Most copies in flight; past it copies are dropped (and counted).
    max_in_flight: int = Field(64, ge=1, le=10_000)


class Route(_Strict):
    """One route of the gateway."""

    name: Name
    match: Match = Match()
    backends: tuple[Backend, ...] = Field(min_length=1, max_length=64)
    sticky: Sticky | None = None
    header_routes: tuple[HeaderRoute, ...] = Field((), max_length=64)
    mirror: Mirror | None = None
    #: A new path: ``{name}`` stands for a capture of the path regex, ``{path}`` for the
    #: rest of the path after a prefix.
    rewrite: str | None = Field(None, max_length=2048)
    #: Remove the matched prefix before the backend sees the path.
    strip_prefix: bool = False
    preserve_host: bool = False
    timeouts: Timeouts = Timeouts()
    retries: Retries = Retries()
    outlier: Outlier = Outlier()
    breaker: Breaker = Breaker()
    #: Largest request body, in bytes (413 past it).
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=0, le=1024 * 1024 * 1024)
    policies: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Route:
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise ValueError("backend names must be unique within a route")
        total = round(sum(b.weight for b in self.backends), 2)
        if total != 100:
            raise ValueError(f"backend weights must add up to 100 (they add up to {total:g})")
        for index, rule in enumerate(self.header_routes):
            if rule.backend not in names:
                raise ValueError(f"header_routes.{index}.backend: no backend {rule.backend!r}")
        if self.mirror is not None and self.mirror.backend not in names:
            raise ValueError(f"mirror.backend: no backend {self.mirror.backend!r}")
        if self.rewrite is not None:
            self._check_rewrite(self.rewrite)
        return self

    def _check_rewrite(self, rewrite: str) -> None:
        if not rewrite.startswith("/"):
            raise ValueError("rewrite must start with '/'")
        wanted = set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", rewrite))
        known = {"path"}
        if self.match.path.regex is not None:
            known |= set(re.compile(self.match.path.regex).groupindex)
        unknown = sorted(wanted - known)
        if unknown:
            raise ValueError(
                f"rewrite uses {{{unknown[0]}}}, which is neither a named group of the path "
                "regex nor {path}"
            )

    def backend(self, name: str) -> Backend:
        for backend in self.backends:
            if backend.name == name:
                return backend
        raise KeyError(name)

    def with_weight(self, backend: str, percent: float) -> Route:
        """This route with ``backend`` at ``percent`` and the others sharing the rest in
        their present proportions (equally when they all stand at 0)."""
        _percent(percent)
        target = self.backend(backend)
        others = [b for b in self.backends if b.name != target.name]
        rest = round(100 - percent, 2)
        weights = _share(rest, [b.weight for b in others])
        updated = {
            target.name: percent,
            **dict(zip([b.name for b in others], weights, strict=True)),
        }
        backends = tuple(b.model_copy(update={"weight": updated[b.name]}) for b in self.backends)
        return self.model_copy(update={"backends": backends})


def _share(total: float, weights: list[float]) -> list[float]:
    """``total`` split over ``weights``' proportions, in 0.01 steps that add up exactly."""
    if not weights:
        if total:
            raise ValueError("a route with one backend keeps it at 100 %")
        return []
    base = sum(weights)
    shares = [w / base for w in weights] if base else [1 / len(weights)] * len(weights)
    cents = [int(total * 100 * s) for s in shares]
    for index in range(round(total * 100) - sum(cents)):
        cents[index % len(cents)] += 1
    return [c / 100 for c in cents]


# -- policies --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyKind:
    """A kind of policy a route can name under ``policies:``: its settings model and
    where it runs in a request (lower ``order`` first)."""

    name: str
    settings: type[BaseModel]
    order: int
    doc: str = ""


_KINDS: dict[str, PolicyKind] = {}


def register_policy(kind: PolicyKind) -> PolicyKind:
    """Make ``kind`` known to routes files (each policy module registers itself)."""
    _KINDS[kind.name] = kind
    return kind


def policy_kinds() -> dict[str, PolicyKind]:
    from hybridmesh.gateway.policies import builtin  # noqa: F401  (registers the built-in kinds)

    return dict(_KINDS)


def policy_settings(route: Route) -> list[tuple[PolicyKind, BaseModel]]:
    """The route's policies with their validated settings, in the order they run."""
    kinds = policy_kinds()
    found = [
        (kinds[name], kinds[name].settings.model_validate(value))
        for name, value in route.policies.items()
    ]
    return sorted(found, key=lambda pair: pair[0].order)


# -- reading files -------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedRoute:
    """A route and where it was written."""

    route: Route
    file: str
    line: int
    lines: Lines | None = field(default=None, compare=False, repr=False)

    def line_of(self, *loc: str | int) -> int:
        return self.line if self.lines is None else self.lines.line_of(loc)


def _describe(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown field"
    return describe(error)


def _dotted(loc: tuple[Any, ...]) -> str | None:
    return ".".join(str(part) for part in loc) or None


def _route_problems(entry: dict[str, Any], file: str, lines: Lines) -> list[Problem]:
    """What is wrong with one route mapping beyond its model: its policies."""
    problems: list[Problem] = []
    policies = entry.get("policies")
    if not isinstance(policies, dict):
        return problems
    kinds = policy_kinds()
    for name, value in policies.items():
        kind = kinds.get(name)
        if kind is None:
            problems.append(
                Problem(
                    f"unknown policy {str(name)[:40]!r}; the policies are "
                    f"{', '.join(sorted(kinds))}",
                    file,
                    lines.line_of(("policies", name)),
                    f"policies.{name}",
                )
            )
            continue
        try:
            kind.settings.model_validate({} if value is None else value)
        except pydantic.ValidationError as invalid:
            for error in invalid.errors():
                loc = ("policies", name, *location(error))
                problems.append(Problem(_describe(error), file, lines.line_of(loc), _dotted(loc)))
    return problems


def parse_routes(
    data: bytes | str, file: str, limits: YamlLimits = DEFAULT_LIMITS
) -> list[LoadedRoute]:
    """The routes of one YAML text; :class:`ValidationError` lists every problem with its
    file, line and field."""
    reader = YamlReader(limits)
    documents = reader.parse(data, file)
    return _routes(documents, file)


def load_routes(path: Path, limits: YamlLimits = DEFAULT_LIMITS) -> list[LoadedRoute]:
    """The routes of a file or of every YAML file in a folder."""
    reader = YamlReader(limits)
    found: list[LoadedRoute] = []
    problems: list[Problem] = []
    for file in reader.paths(path):
        try:
            found += _routes(reader.read(file), str(file))
        except ValidationError as invalid:
            problems += invalid.problems
    if problems:
        raise ValidationError(problems)
    if not found:
        raise ValidationError([Problem("defines no route", str(path))])
    return _unique(found)


def _routes(documents: list[Any], file: str) -> list[LoadedRoute]:
    found: list[LoadedRoute] = []
    problems: list[Problem] = []
    for document in documents:
        for entry, prefix in document_entries(document.data, "routes", "name"):
            lines = document.lines.under(prefix) or Lines(document.lines.line_of(prefix))
            if not isinstance(entry, dict):
                what = (
                    "'routes' must be a list"
                    if prefix == ("routes",)
                    else "a route must be a mapping"
                )
                problems.append(Problem(what, file, lines.line, _dotted(prefix)))
                continue
            route_problems = _route_problems(entry, file, lines)
            try:
                route = Route.model_validate(entry)
            except pydantic.ValidationError as invalid:
                for error in invalid.errors():
                    loc = tuple(error["loc"])
                    if loc[:1] == ("policies",) and len(loc) > 1:
                        continue  # reported by _route_problems, with the policy's own fields
                    problems.append(
                        Problem(_describe(error), file, lines.line_of(loc), _dotted(loc))
                    )
                problems += route_problems
                continue
            problems += route_problems
            if not route_problems:
                found.append(LoadedRoute(route, file, lines.line, lines))
    if problems:
        raise ValidationError(problems)
    return found


def _unique(routes: list[LoadedRoute]) -> list[LoadedRoute]:
    seen: dict[str, LoadedRoute] = {}
    problems: list[Problem] = []
    for item in routes:
        first = seen.get(item.route.name)
        if first is not None:
            problems.append(
                Problem(
                    f"duplicate route {item.route.name!r}; first defined at "
                    f"{first.file}:{first.line}",
                    item.file,
                    item.line_of("name"),
                    "name",
                )
            )
        seen.setdefault(item.route.name, item)
    if problems:
        raise ValidationError(problems)
    return routes


__all__ = [
    "IDEMPOTENT_METHODS",
    "METHODS",
    "SAFE_METHODS",
    "Backend",
    "Breaker",
    "Compare",
    "HeaderMatch",
    "HeaderRoute",
    "LoadedRoute",
    "Match",
    "Mirror",
    "Outlier",
    "PathMatch",
    "PolicyKind",
    "Retries",
    "Route",
    "Sticky",
    "Timeouts",
    "load_routes",
    "parse_routes",
    "policy_kinds",
    "policy_settings",
    "register_policy",
]
