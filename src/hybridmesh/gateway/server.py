"""The gateway process: an HTTP/1.1 reverse proxy on ``asyncio`` and llhttp (``httptools``).

Each client connection is an :class:`asyncio.Protocol` whose requests are parsed by llhttp
and handled one after another (pipelined requests wait their turn). A request is matched
to a route (:mod:`hybridmesh.gateway.routing`), passes the route's policies, and goes to
the backend chosen for it over a keep-alive connection (:mod:`hybridmesh.gateway.upstream`);
the answer's head goes back as soon as it arrives and its body streams after it.

Hygiene, as RFC 9110/9112 and the usual proxies do it:

- limits: a request line over 8 KiB is 414, a head over 64 KiB or 100 headers is 431, a
  body over the route's ``max_body_bytes`` is 413, a head not complete within
  ``header_timeout`` seconds is 408 (or a quiet close for an idle keep-alive connection),
  a body not complete within ``body_timeout`` is 408, anything llhttp cannot parse is 400;
  each of these answers closes the connection;
- hop-by-hop headers (``Connection`` and those it names, ``Keep-Alive``, ``TE``,
  ``Trailer``, ``Transfer-Encoding``, ``Upgrade``, ``Proxy-*``) are not passed on, either
  way; the gateway frames each message itself;
- ``X-Forwarded-For`` (appended), ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` are set,
  ``X-Request-ID`` is kept (or made) and returned, ``traceparent`` is propagated (a new
  trace when the client sent none), with a server span per request when spans are on;
- failures are problem+json with the request id: 502 when the backend cannot be reached or
  answers garbage, 503 when every backend is ejected or its breaker is open, 504 when it
  does not answer in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

import httptools
from opentelemetry.trace import SpanKind

from hybridmesh.core.clock import SYSTEM_CLOCK
from hybridmesh.core.errors import CircuitOpenError
from hybridmesh.core.ids import new_request_id
from hybridmesh.gateway.access_log import AccessLog
from hybridmesh.gateway.addresses import NetworkSet, client_ip
from hybridmesh.gateway.config import IDEMPOTENT_METHODS, Backend, Route, policy_settings
from hybridmesh.gateway.http import (
    HOP_BY_HOP,
    Answer,
    Headers,
    ProxyRequest,
    ReplaceAnswer,
    problem,
)
from hybridmesh.gateway.metrics import GatewayMetrics
from hybridmesh.gateway.policies.base import Policy, PolicyContext, build_policy
from hybridmesh.gateway.routing import CompiledRoute, sticky_key
from hybridmesh.gateway.snapshot import Snapshot
from hybridmesh.gateway.upstream import (
    BodySink,
    Origin,
    UpstreamConnection,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
)
from hybridmesh.observability import get_logger
from hybridmesh.observability.tracing import (
    continue_trace,
    inject_headers,
    start_call_span,
    tracing_records,
)
from hybridmesh.resilience.breaker import CircuitBreaker, CircuitBreakerConfig

log = get_logger("hybridmesh.gateway")
access_log = get_logger("hybridmesh.gateway.access")

MAX_REQUEST_LINE = 8 * 1024
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
#: Requests parsed ahead of the one being answered before reading pauses.
MAX_PIPELINED = 16
#: How often deadlines are checked: a timeout fires up to this much late.
SWEEP_SECONDS = 0.05
#: Request bodies larger than this (or chunked) are passed on as they arrive, on routes
#: whose policies do not read the body; smaller ones are read first (one write upstream).
STREAM_THRESHOLD = 64 * 1024
#: Bytes of a streamed body waiting for the backend before reading from the client pauses.
STREAM_HIGH_WATER = 1024 * 1024

_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass
class GatewaySettings:
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    #: Largest body of any request, before its route is known (a route may lower it).
    max_body_bytes: int = 1024 * 1024 * 1024
    redis_url: str | None = None
    #: CIDRs of the proxies in front of the gateway, whose ``X-Forwarded-For`` is believed
    #: (see :mod:`hybridmesh.gateway.addresses`).
    trusted_proxies: tuple[str, ...] = ()
    access_log: bool = True
    #: "json": access lines are written by :class:`~hybridmesh.gateway.access_log.AccessLog`
    #: in batches; "text": through :mod:`logging`, as the other lines.
    log_format: str = "json"


# -- per backend and route -------------------------------------------------------------------


@dataclass
class BackendRuntime:
    """A backend of a route as the gateway calls it, and its health (kept across reloads
    while the backend keeps its name and address)."""

    backend: Backend
    url: str
    origin: Origin
    base_path: str
    breaker: CircuitBreaker | None
    consecutive_failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0

    def ejected(self, now: float) -> bool:
        return self.ejected_until > now


@dataclass
class RouteRuntime:
    compiled: CompiledRoute
    policies: list[Policy]
    backends: dict[str, BackendRuntime]
    #: The mirror hook (set when the route mirrors).
    mirror: Any = None
    transforms_response: bool = False
    #: The policies that act once the backend is chosen (fault injection per backend).
    before_send: list[Policy] = field(default_factory=list)
    #: Whether request bodies may be passed on as they arrive: no policy reads them and
    #: the route does not mirror (a copy needs the whole body).
    streams_request: bool = True


class Hooks:
    """Extension points the server calls; the defaults do nothing
    (:class:`hybridmesh.gateway.hooks.GatewayHooks` mirrors and keeps stats windows)."""

    def build_mirror(self, route: Route, runtime: RouteRuntime) -> Any:
        """The route's mirror, or None. A mirror's ``start(request, backend)`` returns a
        ticket (or None: not copied) whose ``primary(status, headers, body)`` is called
        once the client has the primary's answer, or ``primary_failed()``."""
        return None

    def observe(self, route: str, backend: str, status: int, seconds: float) -> None:
        pass


# -- the server ------------------------------------------------------------------------------


class Gateway:
    """Routes requests with the current :class:`Snapshot` (:meth:`use` swaps it)."""

    def __init__(
        self,
        settings: GatewaySettings | None = None,
        *,
        metrics: GatewayMetrics | None = None,
        hooks: Hooks | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings or GatewaySettings()
        use_json = self.settings.access_log and self.settings.log_format == "json"
        self.access: AccessLog | None = AccessLog() if use_json else None
        self.trusted = NetworkSet.parse(self.settings.trusted_proxies)
        self.metrics = metrics or GatewayMetrics()
        self.hooks = hooks or Hooks()
        self.rng = rng or random.Random()
        self.pool = UpstreamPool()
        self.snapshot = Snapshot.empty()
        self.routes: dict[str, RouteRuntime] = {}
        self._backends: dict[tuple[str, str, str], BackendRuntime] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[ClientConnection] = set()
        self._retired: list[Policy] = []
        self._sweeper: asyncio.Task[None] | None = None
        #: What policies keep across snapshots (PolicyContext.shared).
        self._policy_shared: dict[str, Any] = {}

    # -- snapshots -------------------------------------------------------------------------

    def use(self, snapshot: Snapshot) -> None:
        """Route with ``snapshot`` from now on; requests under way keep what they have."""
        routes: dict[str, RouteRuntime] = {}
        backends: dict[tuple[str, str, str], BackendRuntime] = {}
        for compiled in snapshot.table.routes:
            route = compiled.route
            context = PolicyContext(
                route.name,
                lambda: self.snapshot,
                self.settings.redis_url,
                self.settings.trusted_proxies,
                self.metrics,
                self._policy_shared,
            )
            policies = [
                build_policy(kind.name, settings, context)
                for kind, settings in policy_settings(route)
            ]
            runtime = RouteRuntime(compiled, policies, {})
            runtime.transforms_response = any(p.transforms_response_body for p in policies)
            runtime.before_send = [p for p in policies if p.acts_before_send]
            runtime.streams_request = route.mirror is None and not any(
                p.reads_request_body for p in policies
            )
            for backend in route.backends:
                url = self._url_of(backend, snapshot)
                if url is None:
                    continue  # a service that left the registry: the backend cannot be used
                key = (route.name, backend.name, url)
                existing = self._backends.get(key)
                if existing is None:
                    existing = self._backend_runtime(route, backend, url)
                else:
                    existing.backend = backend
                backends[key] = existing
                runtime.backends[backend.name] = existing
            runtime.mirror = self.hooks.build_mirror(route, runtime)
            routes[route.name] = runtime
        old = [p for r in self.routes.values() for p in r.policies]
        self.snapshot, self.routes, self._backends = snapshot, routes, backends
        self._retired.extend(old)
        log.info("gateway: routing with revision %d (%d routes)", snapshot.revision, len(routes))

    @staticmethod
    def _url_of(backend: Backend, snapshot: Snapshot) -> str | None:
        if backend.url is not None:
            return backend.url
        return snapshot.services.get(backend.service or "")

    @staticmethod
    def _backend_runtime(route: Route, backend: Backend, url: str) -> BackendRuntime:
        parts = urlsplit(url)
        settings = route.breaker
        breaker = (
            CircuitBreaker(
                f"gateway:{route.name}:{backend.name}",
                CircuitBreakerConfig(
                    failure_rate_threshold=settings.failure_rate,
                    minimum_calls=settings.minimum_calls,
                    window_size=settings.window,
                    wait_in_open=settings.wait_in_open,
                ),
                SYSTEM_CLOCK,
            )
            if settings.enabled
            else None
        )
        return BackendRuntime(backend, url, Origin.of(url), parts.path.rstrip("/"), breaker)

    # -- serving ---------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientConnection(self), host, port, reuse_address=True, backlog=1024
        )
        self._sweeper = loop.create_task(self._sweep(), name="gateway:deadlines")
        sockname = self._server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def _sweep(self) -> None:
        """Enforce every deadline (slow clients, slow backends) from one periodic check:
        cheaper than a timer per request, at the price of up to :data:`SWEEP_SECONDS` of
        lateness."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.monotonic()
            self.pool.sweep(now)
            if self.access is not None:
                self.access.flush()
            for connection in [c for c in self._connections if c.deadline and c.deadline <= now]:
                connection.expire()

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting, let requests under way finish (up to ``grace`` seconds), then
        close every connection."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        deadline = time.monotonic() + grace
        while any(c.busy for c in self._connections) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # a poll: cheap, and only at shutdown
        for connection in list(self._connections):
            connection.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        self.pool.close()
        if self.access is not None:
            self.access.flush()
        for policy in [*self._retired, *(p for r in self.routes.values() for p in r.policies)]:
            with contextlib.suppress(Exception):
                await policy.close()

    # -- one request -----------------------------------------------------------------------

    async def handle(self, connection: ClientConnection, incoming: Incoming) -> bool:
        """Answer one request on ``connection``; False when the connection must close."""
        began = time.perf_counter()
        headers = Headers()
        headers.pairs = incoming.headers
        request_id = headers.get("x-request-id")
        if not request_id or len(request_id) > 200 or not request_id.isprintable():
            request_id = new_request_id()
        route_name, backend_name = "-", "-"
        status = 500
        try:
            if tracing_records():
                answer, route_name, backend_name, status = await self._traced(
                    connection, incoming, headers, request_id
                )
            else:
                answer, route_name, backend_name, status = await self._route(
                    connection, incoming, headers, request_id
                )
        except Exception:
            log.exception("gateway: handling a request failed")
            answer = problem(500, "the gateway failed on this request", request_id=request_id)
        if answer is not None:
            status = answer.status
            connection.send_answer(answer, request_id, incoming.keep_alive, incoming.method)
        seconds = time.perf_counter() - began
        self.metrics.observe(route_name, backend_name, status, seconds)
        self.hooks.observe(route_name, backend_name, status, seconds)
        if self.access is not None:
            self.access.write(
                method=incoming.method,
                path=incoming.path,
                status=status,
                seconds=seconds,
                request_id=request_id,
                route=route_name,
                backend=backend_name,
                client_ip=incoming.client_ip or connection.client_ip,
                trace_id=incoming.trace_id,
            )
        elif self.settings.access_log:
            access_log.info(
                "%s %s %d %.1fms",
                incoming.method,
                incoming.path,
                status,
                seconds * 1000,
                extra={
                    "request_id": request_id,
                    "http_method": incoming.method,
                    "http_path": incoming.path,
                    "http_status": status,
                    "route": route_name,
                    "backend": backend_name,
                    "client_ip": incoming.client_ip or connection.client_ip,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )
        return incoming.keep_alive and not connection.closing

    async def _traced(
        self, connection: ClientConnection, incoming: Incoming, headers: Headers, request_id: str
    ) -> tuple[Answer | None, str, str, int]:
        """:meth:`_route` inside a server span that continues the client's trace; the
        backend then gets this span as its parent (``traceparent``)."""
        carrier = {"traceparent": headers.get("traceparent") or ""}
        state = headers.get("tracestate")
        if state:
            carrier["tracestate"] = state
        with (
            continue_trace(carrier),
            start_call_span(
                f"{incoming.method} gateway",
                attributes={
                    "http.request.method": incoming.method,
                    "url.path": incoming.path,
                    "client.address": connection.client_ip,
                    "http.request.id": request_id,
                },
                kind=SpanKind.SERVER,
            ) as span,
        ):
            headers.remove("traceparent")  # the span's own goes to the backend
            headers.remove("tracestate")
            result = await self._route(connection, incoming, headers, request_id)
            _, route_name, backend_name, status = result
            span.set_attribute("http.route", route_name)
            span.set_attribute("hybridmesh.backend", backend_name)
            span.set_attribute("http.response.status_code", status)
            return result

    async def _route(
        self, connection: ClientConnection, incoming: Incoming, headers: Headers, request_id: str
    ) -> tuple[Answer | None, str, str, int]:
        """Route, check, send on; an Answer when the gateway answers itself."""
        snapshot = self.snapshot
        path = incoming.path
        if _escapes(path):
            self.metrics.refused("-", "bad_path")
            return (
                problem(400, "the path has '.' or '..' segments", request_id=request_id),
                "-",
                "-",
                400,
            )
        found = snapshot.table.match(incoming.method, headers.get("host") or "", path, headers)
        if found is None:
            self.metrics.refused("-", "no_route")
            return problem(404, "no route takes this request", request_id=request_id), "-", "-", 404
        compiled, captures = found
        route = compiled.route
        runtime = self.routes.get(route.name)
        if runtime is None:  # the snapshot changed under us: the old one's route is gone
            return (
                problem(503, "the route is being changed", request_id=request_id),
                route.name,
                "-",
                503,
            )
        if len(incoming.body) > route.max_body_bytes:
            self.metrics.refused(route.name, "too_large")
            return (
                problem(
                    413, f"the body is over {route.max_body_bytes} bytes", request_id=request_id
                ),
                route.name,
                "-",
                413,
            )
        request = ProxyRequest(
            method=incoming.method,
            path=compiled.upstream_path(path, captures),
            query=incoming.query,
            headers=headers,
            body=incoming.body,
            client_ip=(
                client_ip(connection.client_ip, headers.get_all("x-forwarded-for"), self.trusted)
                if self.trusted
                else connection.client_ip
            ),
            request_id=request_id,
            captures=captures,
            route=route.name,
        )
        incoming.client_ip = request.client_ip
        for policy in runtime.policies:
            answer = await policy.request(request)
            if answer is not None:
                answer.headers.extend(request.answer_headers)
                self.metrics.refused(route.name, _reason(answer.status))
                return answer, route.name, "-", answer.status
        key = sticky_key(route, headers, request.client_ip, request.claims)
        chosen = compiled.choose(key, headers, self.rng)
        backend = self._healthy(runtime, chosen)
        if backend is None:
            self.metrics.upstream_failure(route.name, chosen.name, "ejected")
            return (
                problem(
                    503,
                    "every backend of this route is ejected after failures",
                    request_id=request_id,
                    headers=request.answer_headers,
                ),
                route.name,
                chosen.name,
                503,
            )
        for policy in runtime.before_send:
            answer = await policy.before_send(request, backend.backend.name)
            if answer is not None:
                answer.headers.extend(request.answer_headers)
                self.metrics.refused(route.name, _reason(answer.status))
                return answer, route.name, backend.backend.name, answer.status
        ticket = (
            runtime.mirror.start(request, backend.backend.name)
            if runtime.mirror is not None
            else None
        )
        status = await self._proxy(connection, incoming, runtime, backend, request, ticket)
        return None, route.name, backend.backend.name, status

    def _healthy(self, runtime: RouteRuntime, chosen: Backend) -> BackendRuntime | None:
        """``chosen``'s runtime, or another live backend's when it is ejected."""
        backend = runtime.backends.get(chosen.name)
        now = time.monotonic()
        if backend is not None and not backend.ejected(now):
            return backend
        others = [
            b
            for b in runtime.backends.values()
            if b.backend.weight > 0 and not b.ejected(now) and b is not backend
        ]
        if not others:
            return None
        return self.rng.choices(others, weights=[b.backend.weight for b in others])[0]

    # -- calling the backend ---------------------------------------------------------------

    async def _proxy(
        self,
        connection: ClientConnection,
        incoming: Incoming,
        runtime: RouteRuntime,
        backend: BackendRuntime,
        request: ProxyRequest,
        ticket: Any,
    ) -> int:
        """Send ``request`` to ``backend`` (retrying as the route allows) and relay the
        answer to the client. Returns the status the client got."""
        route = runtime.compiled.route
        stream = incoming.stream
        retries = route.retries.attempts if request.method in IDEMPOTENT_METHODS else 0
        attempts = 1 if stream is not None else 1 + retries  # a streamed body goes once
        message = self._message(connection, incoming, request, backend)
        head_only = request.method == "HEAD"
        timeouts = route.timeouts
        deadline = time.monotonic() + timeouts.total
        failure: tuple[int, str, str] = (502, "connect", "no attempt was made")
        for attempt in range(attempts):
            if attempt and time.monotonic() >= deadline:
                break
            breaker = backend.breaker
            try:
                if breaker is not None:
                    breaker.acquire()
            except CircuitOpenError:
                self.metrics.upstream_failure(route.name, backend.backend.name, "breaker_open")
                failure = (503, "breaker_open", "the backend's circuit breaker is open")
                break
            began = time.monotonic()
            upstream: UpstreamConnection | None = None
            try:
                # A streamed body cannot be sent again, so it never risks a keep-alive
                # connection that the backend may have closed meanwhile.
                upstream = self.pool.idle(backend.origin) if stream is None else None
                reused = upstream is not None
                if upstream is None:
                    upstream, _ = await self.pool.connection(
                        backend.origin, min(timeouts.connect, max(deadline - began, 0.001))
                    )
                wait_until = min(began + timeouts.read, deadline)
                try:
                    if stream is not None:
                        response = await self._send_streamed(
                            upstream, message, stream, incoming, timeouts.read, deadline
                        )
                    else:
                        response = await upstream.send(message, head_only, wait_until)
                except UpstreamError as error:
                    if reused and not upstream._received_any:
                        # A keep-alive connection the backend had closed: once more, anew.
                        upstream, _ = await self.pool.connection(backend.origin, timeouts.connect)
                        response = await upstream.send(message, head_only, wait_until)
                    else:
                        raise error
            except BodyError as error:  # the client did not finish its body
                if upstream is not None:
                    upstream.abort()
                if error.status == 0:
                    connection.close()
                    return 499  # nobody left to answer (nginx's "client closed request")
                failure = (error.status, "client", error.detail)
                break
            except TimeoutError:
                if upstream is not None:
                    upstream.abort()
                self._failed(runtime, backend, began, "timeout")
                failure = (504, "timeout", f"the backend did not answer within {timeouts.read:g} s")
                if request.method not in IDEMPOTENT_METHODS:
                    break
                continue
            except UpstreamError as error:
                self._failed(runtime, backend, began, "connect" if not error.sent else "reset")
                failure = (502, "connect", str(error))
                if error.sent and request.method not in IDEMPOTENT_METHODS:
                    break
                continue
            retryable = response.status in route.retries.on_statuses
            if retryable and attempt + 1 < attempts and time.monotonic() < deadline:
                upstream.abort()  # the answer's body is not wanted
                self._failed(runtime, backend, began, f"status_{response.status}")
                continue
            return await self._relay(
                connection,
                incoming,
                runtime,
                backend,
                request,
                upstream,
                response,
                began,
                deadline,
                ticket,
            )
        status, _, detail = failure
        if ticket is not None:
            ticket.primary_failed()
        if stream is not None and not stream.complete:
            incoming.keep_alive = False  # the rest of its body is still coming: close after
        connection.send_answer(
            problem(status, detail, request_id=request.request_id, headers=request.answer_headers),
            request.request_id,
            incoming.keep_alive,
            incoming.method,
        )
        return status

    async def _send_streamed(
        self,
        upstream: UpstreamConnection,
        head: bytes,
        stream: BodyStream,
        incoming: Incoming,
        read_timeout: float,
        deadline: float,
    ) -> UpstreamResponse:
        """Send ``head``, then the body as it arrives; the answer's head once it comes.

        The read timeout starts when the body is all sent. A backend may answer before
        that (a refusal): then the rest of the body is not sent, the connection to the
        backend is not reused, and the client's connection closes after the answer, since
        the rest of its body is still on its way."""
        answer = upstream.send(head, False, 0.0)
        # When the body fails first, the backend's late failure is nobody's business.
        answer.add_done_callback(lambda done: done.cancelled() or done.exception())
        chunked = stream.length is None

        async def pump() -> None:
            async for chunk in stream:
                upstream.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                await upstream.drained()
            if chunked:
                upstream.write(b"0\r\n\r\n")

        pumping = asyncio.ensure_future(pump())
        try:
            waiting: set[asyncio.Future[Any]] = {pumping, answer}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pumping.cancel()
            raise
        if pumping.done():
            pumping.result()  # a BodyError ends the call here
            if not answer.done():
                upstream.deadline = min(time.monotonic() + read_timeout, deadline)
            return await answer
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, BodyError):
            await pumping
        upstream.reusable = False
        upstream.dirty = True
        incoming.keep_alive = False
        return answer.result()

    def _failed(
        self, runtime: RouteRuntime, backend: BackendRuntime, began: float, reason: str
    ) -> None:
        route = runtime.compiled.route
        self.metrics.upstream_failure(route.name, backend.backend.name, reason)
        if backend.breaker is not None:
            backend.breaker.record_failure(time.monotonic() - began, ConnectionError(reason))
        self._count_failure(route, backend)

    def _count_failure(self, route: Route, backend: BackendRuntime) -> None:
        backend.consecutive_failures += 1
        outlier = route.outlier
        if backend.consecutive_failures >= outlier.consecutive_failures:
            backend.ejections += 1
            backend.consecutive_failures = 0
            seconds = min(outlier.base_ejection * backend.ejections, outlier.max_ejection)
            backend.ejected_until = time.monotonic() + seconds
            self.metrics.ejected(route.name, backend.backend.name)
            log.warning(
                "gateway: route %s ejects backend %s for %.0f s after %d failures in a row",
                route.name,
                backend.backend.name,
                seconds,
                outlier.consecutive_failures,
            )

    def _message(
        self,
        connection: ClientConnection,
        incoming: Incoming,
        request: ProxyRequest,
        backend: BackendRuntime,
    ) -> bytes:
        """The request as the backend gets it."""
        route = self.routes[request.route].compiled.route
        headers = request.headers
        dropped = headers.hop_by_hop()
        lines = [f"{request.method} {backend.base_path}{request.target} HTTP/1.1"]
        host = headers.get("host") if route.preserve_host else None
        lines.append(f"host: {host or backend.origin.authority}")
        forwarded_for = None
        forwarded = False
        for name, value in headers.pairs:
            if name in dropped or name == "host" or name == "content-length":
                continue
            if name == "x-forwarded-for":
                forwarded_for = f"{value}, {connection.client_ip}"
                continue
            if name in ("x-forwarded-proto", "x-forwarded-host", "x-request-id"):
                continue
            if name == "traceparent":
                forwarded = True
                incoming.trace_id = value[3:35] if len(value) >= 35 else None
            lines.append(f"{name}: {value}")
        lines.append(f"x-forwarded-for: {forwarded_for or connection.client_ip}")
        lines.append("x-forwarded-proto: http")
        lines.append(f"x-forwarded-host: {headers.get('host', '')}")
        lines.append(f"x-request-id: {request.request_id}")
        if not forwarded:
            carrier: dict[str, str] = {}
            inject_headers(carrier)
            lines.extend(f"{k}: {v}" for k, v in carrier.items())
            incoming.trace_id = carrier["traceparent"][3:35]
        stream = incoming.stream
        if stream is not None:  # the body follows as it arrives
            if stream.length is not None:
                lines.append(f"content-length: {stream.length}")
            else:
                lines.append("transfer-encoding: chunked")
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        body = request.body
        if body or request.method in ("POST", "PUT", "PATCH"):
            lines.append(f"content-length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def _relay(
        self,
        connection: ClientConnection,
        incoming: Incoming,
        runtime: RouteRuntime,
        backend: BackendRuntime,
        request: ProxyRequest,
        upstream: UpstreamConnection,
        response: UpstreamResponse,
        began: float,
        deadline: float,
        ticket: Any,
    ) -> int:
        route = runtime.compiled.route
        status = response.status
        headers = Headers()
        headers.pairs = [
            (n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in response.headers
        ]
        dropped = headers.hop_by_hop()
        headers.pairs = [(n, v) for n, v in headers.pairs if n not in dropped]
        for policy in reversed(runtime.policies):  # the answer passes them backwards
            policy.response_head(request, status, headers)
        headers.pairs.extend(request.answer_headers)
        buffered = runtime.transforms_response or ticket is not None
        done = response.done
        assert done is not None
        try:
            if buffered or done.done():
                # The whole answer is wanted first, or is here already (a small answer
                # usually comes in one read): head and body go out in one write.
                if not done.done():
                    upstream.deadline = deadline
                    await done
                done.result()
                body = b"".join(response.chunks)
                try:
                    for policy in reversed(runtime.policies):
                        if policy.transforms_response_body:
                            body = policy.response_body(request, status, headers, body)
                except ReplaceAnswer as replaced:
                    self.pool.release(upstream)
                    answer = replaced.answer
                    answer.headers.extend(request.answer_headers)
                    connection.send_answer(
                        answer, request.request_id, incoming.keep_alive, incoming.method
                    )
                    if ticket is not None:
                        ticket.primary(answer.status, Headers(answer.headers), answer.body)
                    self._answered(route, backend, status, began)
                    return answer.status
                headers.remove("content-length")
                self.pool.release(upstream)
                head, _ = connection.head(status, headers, request.request_id, incoming, len(body))
                connection.write(head + body if incoming.method != "HEAD" else head)
                if ticket is not None:
                    ticket.primary(status, headers, body)
            else:
                length = response.length
                if length is not None:
                    headers.remove("content-length")
                head, chunked = connection.head(
                    status, headers, request.request_id, incoming, length
                )
                connection.write(head)
                if incoming.method != "HEAD" and status not in _NO_BODY_STATUSES:
                    sink = connection.sink(chunked, upstream)
                    upstream.attach(sink)
                    upstream.deadline = deadline
                    await done
                    sink.finish()
                self.pool.release(upstream)
        except (TimeoutError, UpstreamError) as error:
            # The head went out already: all that can be done is to end the connection, so
            # the client sees an incomplete answer rather than a wrong one.
            upstream.abort()
            if ticket is not None:
                ticket.primary_failed()
            self._failed(
                runtime, backend, began, "timeout" if isinstance(error, TimeoutError) else "reset"
            )
            connection.close()
            return status
        self._answered(route, backend, status, began)
        return status

    def _answered(self, route: Route, backend: BackendRuntime, status: int, began: float) -> None:
        """Count a backend's answer for its breaker and outlier detection."""
        seconds = time.monotonic() - began
        if status >= 500:
            if backend.breaker is not None:
                backend.breaker.record_failure(seconds, ConnectionError(f"status {status}"))
            self._count_failure(route, backend)
        else:
            if backend.breaker is not None:
                backend.breaker.record_success(seconds)
            backend.consecutive_failures = 0


def _reason(status: int) -> str:
    return {
        401: "unauthorized",
        403: "forbidden",
        413: "too_large",
        429: "rate_limited",
    }.get(status, f"status_{status}")


def _escapes(path: str) -> bool:
    """Whether ``path`` has ``.`` or ``..`` segments (also percent-encoded): a prefix route
    could otherwise be left by a backend that resolves them."""
    if "." not in path and "%" not in path:
        return False
    return any(unquote(segment) in (".", "..") for segment in path.split("/"))


# -- client connections ----------------------------------------------------------------------


@dataclass(slots=True)
class Incoming:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    keep_alive: bool
    http_minor: int
    #: The client's address as the route's rules judged it (X-Forwarded-For through
    #: trusted proxies), once known; the trace the backend was sent.
    client_ip: str = ""
    trace_id: str | None = None
    #: The body, when it is passed on as it arrives rather than read first.
    stream: BodyStream | None = None


class BodyError(Exception):
    """A streamed request body that will not be completed: the client was too slow
    (``status`` 408) or went away (``status`` 0: nobody to answer)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class BodyStream:
    """A request body passed on as it arrives: the client's connection feeds it, the call
    to the backend reads it. Reading from the client pauses while more than
    :data:`STREAM_HIGH_WATER` bytes wait here, and resumes below a quarter of that."""

    def __init__(self, connection: ClientConnection, length: int | None) -> None:
        self.connection = connection
        #: The Content-Length announced (None: chunked).
        self.length = length
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: BodyError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        #: Whether the whole body was read (False when the backend answered first).
        self.complete = False

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > STREAM_HIGH_WATER and not self._paused:
            self._paused = True
            if self.connection.transport is not None:
                self.connection.transport.pause_reading()
        self._wake()

    def finish(self) -> None:
        self._done = True
        self._wake()

    def fail(self, error: BodyError) -> None:
        self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered < STREAM_HIGH_WATER // 4:
                    self._paused = False
                    if self.connection.transport is not None and not self.connection.closing:
                        self.connection.transport.resume_reading()
                return chunk
            if self._error is not None:
                raise self._error
            if self._done:
                self.complete = True
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None


class _Refuse(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


class ClientConnection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.closing = False
        self.busy = False
        self.paused_writing = False
        self._queue: deque[Incoming] = deque()
        self._worker: asyncio.Task[None] | None = None
        #: When the head or body under way is due (time.monotonic(); 0: nothing due).
        self.deadline = 0.0
        self._deadline_body = False
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._limit = gateway.settings.max_body_bytes
        #: The body of the request under way, when it is passed on as it arrives.
        self._stream: BodyStream | None = None
        self._started = False  # a request's first byte has come
        self._writers: list[_ClientSink] = []

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else ""
        self.gateway._connections.add(self)
        self._arm(self.gateway.settings.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.gateway._connections.discard(self)
        if self._stream is not None:
            self._stream.fail(BodyError(0, "the client went away"))
            self._stream = None
        self._disarm()
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not proxied")
        except httptools.HttpParserError as error:
            # llhttp wraps what a callback raised; a refusal of ours comes back as its cause.
            refused = error.__context__
            if isinstance(refused, _Refuse):
                self._refuse(refused.status, refused.detail)
            else:
                self._refuse(400, f"malformed HTTP request: {error}")

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        for sink in self._writers:
            sink.upstream.resume()

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._body = []
        self._body_size = 0
        self._limit = self.gateway.settings.max_body_bytes
        if not self._started:
            self._started = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_REQUEST_LINE:
            raise _Refuse(414, f"the request target is over {MAX_REQUEST_LINE} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES or len(self._headers) >= MAX_HEADERS:
            raise _Refuse(
                431, f"the request head is over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} headers"
            )
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        settings = self.gateway.settings
        self._limit = settings.max_body_bytes
        size: int | None = None
        has_body = False
        for name, value in self._headers:
            if name == "content-length":
                try:
                    size = int(value)
                except ValueError:
                    raise _Refuse(400, "malformed Content-Length") from None
                has_body = size > 0
            elif name == "transfer-encoding":
                has_body = True
        streams = False
        if has_body:
            # A body is bounded by its route's limit from its first byte, so a large upload
            # is refused before it is read rather than held in memory and refused after.
            limit, streams = self._route_limit()
            self._limit = min(self._limit, limit)
            if size is not None and size > self._limit:
                raise _Refuse(413, f"the body is over {self._limit} bytes")
        self._disarm()
        self._arm(settings.body_timeout, body=True)
        large = size is None or size > STREAM_THRESHOLD
        if streams and large and not self._queue and not self.busy:
            self._stream = BodyStream(self, size)
            self._dispatch(self._incoming(b"", self._stream))

    def _route_limit(self) -> tuple[int, bool]:
        """``max_body_bytes`` of the route this request's head matches (the gateway's own
        limit when none does: the request will be a 404 anyway), and whether the route
        passes request bodies on as they arrive."""
        headers = Headers()
        headers.pairs = self._headers
        path = self._url.split(b"?", 1)[0].decode("latin-1")
        method = self.parser.get_method().decode("ascii", "replace")
        found = self.gateway.snapshot.table.match(method, headers.get("host") or "", path, headers)
        if found is None:
            return self.gateway.settings.max_body_bytes, False
        route = found[0].route
        runtime = self.gateway.routes.get(route.name)
        return route.max_body_bytes, runtime is not None and runtime.streams_request

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._limit:
            if self._stream is not None:  # its request is under way: end it, and the connection
                self._stream.fail(BodyError(413, f"the body is over {self._limit} bytes"))
                self._stream = None
            raise _Refuse(413, f"the body is over {self._limit} bytes")
        if self._stream is not None:
            self._stream.feed(body)
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._started = False
        if self._stream is not None:  # dispatched at its head; its body is all here now
            self._stream.finish()
            self._stream = None
            return
        self._dispatch(self._incoming(b"".join(self._body), None))

    def _incoming(self, body: bytes, stream: BodyStream | None) -> Incoming:
        path, _, query = self._url.decode("latin-1").partition("?")
        if not path.startswith("/"):
            raise _Refuse(400, "the request target must be a path (origin form)")
        return Incoming(
            self.parser.get_method().decode("ascii"),
            path,
            query,
            self._headers,
            body,
            self.parser.should_keep_alive(),
            1 if self.parser.get_http_version() == "1.1" else 0,
            stream=stream,
        )

    def _dispatch(self, incoming: Incoming) -> None:
        self._queue.append(incoming)
        if len(self._queue) >= MAX_PIPELINED and self.transport is not None:
            self.transport.pause_reading()
        if self._worker is None or self._worker.done():
            self.busy = True
            self._worker = asyncio.get_running_loop().create_task(self._work())

    # -- answering -------------------------------------------------------------------------

    async def _work(self) -> None:
        try:
            while self._queue and not self.closing:
                incoming = self._queue.popleft()
                if self.transport is not None and len(self._queue) < MAX_PIPELINED:
                    self.transport.resume_reading()
                keep = await self.gateway.handle(self, incoming)
                if not keep:
                    self.close()
                    return
        finally:
            self.busy = False
        if not self.closing:
            self._arm(self.gateway.settings.header_timeout)

    def send_answer(self, answer: Answer, request_id: str, keep_alive: bool, method: str) -> None:
        headers = Headers(answer.headers)
        status = answer.status
        close = not keep_alive or status in (400, 408, 413, 414, 431)
        head = [f"HTTP/1.1 {status} {_phrase(status)}"]
        head.extend(f"{n}: {v}" for n, v in headers.pairs)
        head.append(f"x-request-id: {request_id}")
        head.append(f"content-length: {len(answer.body)}")
        if close:
            head.append("connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if method != "HEAD":
            data += answer.body
        self.write(data)
        if close:
            self.closing = True
            self.close()

    def head(
        self,
        status: int,
        headers: Headers,
        request_id: str,
        incoming: Incoming,
        length: int | None,
    ) -> tuple[bytes, bool]:
        """An answer's head, and whether its body goes chunked."""
        head = [f"HTTP/1.1 {status} {_phrase(status)}"]
        head.extend(f"{n}: {v}" for n, v in headers.pairs if n != "x-request-id")
        head.append(f"x-request-id: {request_id}")
        chunked = False
        if status in _NO_BODY_STATUSES or 100 <= status < 200:
            pass
        elif length is not None:
            head.append(f"content-length: {length}")
        elif incoming.http_minor >= 1:
            head.append("transfer-encoding: chunked")
            chunked = True
        else:
            incoming.keep_alive = False  # an HTTP/1.0 answer without length ends at close
        if not incoming.keep_alive:
            head.append("connection: close")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1"), chunked

    def sink(self, chunked: bool, upstream: UpstreamConnection) -> _ClientSink:
        sink = _ClientSink(self, chunked, upstream)
        self._writers = [sink]
        return sink

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _refuse(self, status: int, detail: str) -> None:
        self.gateway.metrics.refused("-", _reason(status) if status != 400 else "malformed")
        self._queue.clear()
        answer = problem(status, detail, request_id=new_request_id())
        self.send_answer(answer, new_request_id(), False, "GET")

    def _arm(self, seconds: float, *, body: bool = False) -> None:
        self.deadline = time.monotonic() + seconds
        self._deadline_body = body

    def _disarm(self) -> None:
        self.deadline = 0.0

    def expire(self) -> None:
        self.deadline = 0.0
        self._expired(self._deadline_body)

    def _expired(self, body: bool) -> None:
        if self._stream is not None:  # a streamed body stalled: its call ends with 408
            self._stream.fail(BodyError(408, "the request body did not arrive in time"))
            self._stream = None
            return
        if self.busy:
            return
        if self._started or body:
            what = "body" if body else "head"
            self._refuse(408, f"the request {what} did not arrive in time")
        else:
            self.close()  # an idle keep-alive connection


class _ClientSink(BodySink):
    """An answer's body on its way to the client, framed as its head said."""

    def __init__(
        self, connection: ClientConnection, chunked: bool, upstream: UpstreamConnection
    ) -> None:
        self.connection = connection
        self.chunked = chunked
        self.upstream = upstream

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.chunked:
            self.connection.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            self.connection.write(chunk)

    @property
    def paused(self) -> bool:
        return self.connection.paused_writing

    def finish(self) -> None:
        if self.chunked:
            self.connection.write(b"0\r\n\r\n")
        self.connection._writers = []


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


__all__ = [
    "HOP_BY_HOP",
    "BackendRuntime",
    "ClientConnection",
    "Gateway",
    "GatewaySettings",
    "Hooks",
    "RouteRuntime",
]
