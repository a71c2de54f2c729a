"""``rate_limit``: at most ``limit`` requests ``per`` second, minute or hour for each
caller, like Kong's rate-limiting plugin.

Settings::

    rate_limit:
      limit: 100            # requests in each window
      per: minute           # second | minute | hour
      by: consumer          # consumer | credential | ip | header | path
      header: x-tenant      # the header whose value is the caller (by: header)
      name: default         # the policy's name in the RateLimit headers
      hide_headers: false   # true: no RateLimit headers on answers

Windows are fixed and aligned to the clock (a minute window is a clock minute), as
Kong's are: the count starts afresh at each window's start. The caller is the consumer or
credential the route's authentication established, the client's address, a header's value
or the request's path; a request without a consumer, credential or header is counted by
its address.

Counting is local to each replica by default. With ``HYBRIDMESH_REDIS_URL`` set, the
replicas count together in Redis (one atomic increment per request); when Redis cannot be
reached requests are let through unchecked (fail open), with a logged warning and
``hybridmesh_gateway_fail_open_total{policy="rate_limit"}``, and Redis is tried again a
second later.

Every answer carries ``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-
ratelimit-headers-11); a request over the limit is answered 429 (problem+json, type
``quota-exceeded``) with ``Retry-After`` and never reaches a backend.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hybridmesh.gateway.config import HeaderName, PolicyKind, register_policy
from hybridmesh.gateway.http import Answer, ProxyRequest, problem
from hybridmesh.gateway.policies.base import ORDER_RATE, Policy, PolicyContext, register_builder
from hybridmesh.observability import get_logger

if TYPE_CHECKING:
    from limits.aio.storage import RedisStorage
    from redis.asyncio import ConnectionPool

log = get_logger("hybridmesh.gateway.rate_limit")

#: Seconds in each window.
WINDOWS = {"second": 1, "minute": 60, "hour": 3600}
#: Where the counters live in Redis: ``hybridmesh:rl:ROUTE:PER:WINDOW:CALLER``.
KEY_PREFIX = "hybridmesh:rl"
#: Seconds a call to Redis (connecting, or an answer) may take before the request is let
#: through unchecked.
REDIS_TIMEOUT = 0.5
#: Seconds after a Redis failure before Redis is tried again (requests pass unchecked).
REDIS_RETRY = 1.0
#: Callers a replica counts in one window of one route; past it, new callers share one
#: counter (so a flood of made-up addresses or paths stays bounded, and limited).
MAX_LOCAL_CALLERS = 100_000
#: Callers longer than this (a header's value, a path) are counted by their digest.
MAX_CALLER = 128
#: The problem type of a refusal (draft-ietf-httpapi-ratelimit-headers-11, section 5.1).
QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
_OVERFLOW = "\x00overflow"
#: The clock windows are aligned to (replicas sharing Redis need theirs in step, as NTP
#: keeps them).
wall_clock: Callable[[], float] = time.time


class RateLimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Requests allowed in each window.
    limit: int = Field(ge=1, le=1_000_000_000)
    per: Literal["second", "minute", "hour"]
    #: Who is counted: falls back to the client's address when the request has none.
    by: Literal["consumer", "credential", "ip", "header", "path"] = "consumer"
    #: The header whose value is the caller (only with ``by: header``).
    header: HeaderName | None = None
    #: The policy's name in ``RateLimit-Policy`` and ``RateLimit``.
    name: str = Field("default", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    #: Leave the RateLimit headers out of answers (the 429's ``Retry-After`` stays).
    hide_headers: bool = False

    @model_validator(mode="after")
    def _header(self) -> RateLimitSettings:
        if self.by == "header" and self.header is None:
            raise ValueError("by: header needs 'header', the header's name")
        if self.by != "header" and self.header is not None:
            raise ValueError("'header' is only used with by: header")
        return self


# -- who is calling --------------------------------------------------------------------------


def _bounded(kind: str, value: str) -> str:
    if len(value) > MAX_CALLER:
        value = hashlib.blake2b(
            value.encode("utf-8", "surrogateescape"), digest_size=16
        ).hexdigest()
        return f"{kind}#{value}"
    return f"{kind}:{value}"


def _caller_of(settings: RateLimitSettings) -> Callable[[ProxyRequest], str]:
    """How a request's caller is named, chosen once per policy."""
    if settings.by == "consumer":

        def by_consumer(request: ProxyRequest) -> str:
            if request.consumer is None:
                return "ip:" + request.client_ip
            return _bounded("consumer", request.consumer)

        return by_consumer
    if settings.by == "credential":

        def by_credential(request: ProxyRequest) -> str:
            if request.credential is None:
                return "ip:" + request.client_ip
            return _bounded("credential", request.credential)

        return by_credential
    if settings.by == "header":
        name = settings.header or ""

        def by_header(request: ProxyRequest) -> str:
            value = request.headers.get(name)
            if value is None:
                return "ip:" + request.client_ip
            return _bounded("header", value)

        return by_header
    if settings.by == "path":
        return lambda request: _bounded("path", request.path)
    return lambda request: "ip:" + request.client_ip


# -- counting --------------------------------------------------------------------------------


class LocalWindow:
    """One route's counts in the current window, in this replica. A new window starts
    with an empty table (the old one is dropped whole), so nothing is swept."""

    __slots__ = ("counts", "full", "index")

    def __init__(self) -> None:
        self.index = -1
        self.counts: dict[str, int] = {}
        self.full = False

    def hit(self, caller: str, index: int, route: str) -> int:
        """Count one request of ``caller`` in window ``index``; its count so far."""
        if index > self.index:  # a later window (a clock stepping back keeps this one)
            self.index = index
            self.counts = {}
            self.full = False
        counts = self.counts
        count = counts.get(caller)
        if count is None:
            if len(counts) >= MAX_LOCAL_CALLERS:
                if not self.full:
                    self.full = True
                    log.warning(
                        "gateway: rate_limit on route %s counts over %d callers in this "
                        "window; further new callers share one counter",
                        route,
                        MAX_LOCAL_CALLERS,
                    )
                caller = _OVERFLOW
                count = counts.get(caller, 0)
            else:
                count = 0
        count += 1
        counts[caller] = count
        return count


class SharedCounters:
    """Counters in Redis, one connection pool per gateway (every rate_limit policy of every
    route revision uses it). The increment and its expiry are one atomic script (the
    ``limits`` library's); an unreachable Redis makes :meth:`hit` answer None for
    :data:`REDIS_RETRY` seconds without trying."""

    def __init__(self, url: str) -> None:
        from limits.aio.storage import RedisStorage
        from redis.asyncio import ConnectionPool
        from redis.exceptions import RedisError

        self.url = url
        #: What a failed call raises (connection refused, timeouts, Redis errors).
        self.failures: tuple[type[Exception], ...] = (RedisError, OSError)
        self.pool: ConnectionPool = ConnectionPool.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
            health_check_interval=30,
        )
        options: dict[str, Any] = {"connection_pool": self.pool}
        self.storage: RedisStorage = RedisStorage(
            "async+redis://", implementation="redispy", key_prefix=KEY_PREFIX, **options
        )
        self.retry_at = 0.0
        self.down = False
        self.closed = False

    async def hit(self, key: str, expiry: int) -> int | None:
        """The count of ``key`` after one more request, or None when Redis failed."""
        if self.retry_at:
            if time.monotonic() < self.retry_at:
                return None
            self.retry_at = 0.0
        try:
            count = await self.storage.incr(key, expiry)
        except self.failures as error:
            self.retry_at = time.monotonic() + REDIS_RETRY
            if not self.down:
                self.down = True
                log.warning(
                    "gateway: Redis at %s cannot be reached or failed (%s: %s); rate limits "
                    "let requests through unchecked until it answers again",
                    _safe(self.url),
                    type(error).__name__,
                    error,
                )
            return None
        if self.down:
            self.down = False
            log.info("gateway: Redis at %s answers again; rate limits apply", _safe(self.url))
        return int(count)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.pool.aclose()


def _safe(url: str) -> str:
    """``url`` without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return f"{scheme}{sep}{rest}"


# -- the policy ------------------------------------------------------------------------------


class RateLimit(Policy):
    def __init__(self, settings: RateLimitSettings, context: PolicyContext) -> None:
        self.route = context.route
        self.limit = settings.limit
        self.per = settings.per
        self.window = WINDOWS[settings.per]
        self.caller = _caller_of(settings)
        self.name = settings.name
        self.hide_headers = settings.hide_headers
        self.policy_header = ("ratelimit-policy", f'"{self.name}";q={self.limit};w={self.window}')
        self.metrics = context.metrics
        self.clock = wall_clock
        self.local: LocalWindow | None = None
        self.shared: SharedCounters | None = None
        if context.redis_url:
            key = f"rate_limit:redis:{context.redis_url}"
            shared = context.shared.get(key)
            if shared is None:
                shared = context.shared[key] = SharedCounters(context.redis_url)
            self.shared = shared
        else:
            # The count goes on across route revisions (a key created, a weight moved).
            key = f"rate_limit:local:{context.route}:{self.window}"
            local = context.shared.get(key)
            if local is None:
                local = context.shared[key] = LocalWindow()
            self.local = local

    async def request(self, request: ProxyRequest) -> Answer | None:
        now = self.clock()
        window = self.window
        index = int(now // window)
        caller = self.caller(request)
        if self.local is not None:
            count = self.local.hit(caller, index, self.route)
        else:
            assert self.shared is not None
            shared = await self.shared.hit(f"{self.route}:{self.per}:{index}:{caller}", window)
            if shared is None:
                if self.metrics is not None:
                    self.metrics.failed_open(self.route, "rate_limit")
                return None
            count = shared
        reset = max(math.ceil((index + 1) * window - now), 1)
        if count > self.limit:
            headers = [("retry-after", str(reset))]
            if not self.hide_headers:
                headers.append(self.policy_header)
                headers.append(("ratelimit", f'"{self.name}";r=0;t={reset}'))
            return problem(
                429,
                f"over the limit of {self.limit} requests per {self.per}; retry in {reset} s",
                request_id=request.request_id,
                headers=headers,
                type=QUOTA_EXCEEDED,
                title="Quota Exceeded",
                **{"violated-policies": [self.name]},
            )
        if not self.hide_headers:
            answer_headers = request.answer_headers
            answer_headers.append(self.policy_header)
            answer_headers.append(("ratelimit", f'"{self.name}";r={self.limit - count};t={reset}'))
        return None

    async def close(self) -> None:
        if self.shared is not None:
            await self.shared.close()


register_policy(PolicyKind("rate_limit", RateLimitSettings, ORDER_RATE, __doc__ or ""))
register_builder("rate_limit", RateLimit)
