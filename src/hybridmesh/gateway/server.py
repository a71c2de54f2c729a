"""The gateway process: an HTTP/1.1 reverse proxy on ``asyncio`` and llhttp (``httptools``).

Each client connection (:mod:`hybridmesh.gateway.connection`) is an :class:`asyncio.Protocol`
whose requests are parsed by llhttp and handled one after another (pipelined requests wait
their turn). A request is matched
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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from opentelemetry.trace import SpanKind

from hybridmesh.core.clock import SYSTEM_CLOCK
from hybridmesh.core.errors import CircuitOpenError
from hybridmesh.core.ids import new_request_id
from hybridmesh.gateway.access_log import AccessLog
from hybridmesh.gateway.addresses import NetworkSet, client_ip
from hybridmesh.gateway.config import IDEMPOTENT_METHODS, Backend, Route, policy_settings
from hybridmesh.gateway.connection import (
    NO_BODY_STATUSES,
    BodyError,
    BodyStream,
    ClientConnection,
    Incoming,
)
from hybridmesh.gateway.http import (
    Answer,
    Headers,
    ProxyRequest,
    ReplaceAnswer,
    forwarded_lines,
    problem,
    with_body,
)
from hybridmesh.gateway.metrics import GatewayMetrics, refusal_reason
from hybridmesh.gateway.policies.base import Policy, PolicyContext, build_policy
from hybridmesh.gateway.recording import RecordingTicket
from hybridmesh.gateway.routing import CompiledRoute, sticky_key
from hybridmesh.gateway.settings import GatewaySettings
from hybridmesh.gateway.snapshot import Snapshot
from hybridmesh.gateway.tunnel import Tunnel
from hybridmesh.gateway.upstream import (
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

if TYPE_CHECKING:
    from hybridmesh.contracts.recorder import ContractRecorder

log = get_logger("hybridmesh.gateway")
access_log = get_logger("hybridmesh.gateway.access")

#: How often deadlines are checked: a timeout fires up to this much late.
SWEEP_SECONDS = 0.05


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
        recorder: ContractRecorder | None = None,
    ) -> None:
        self.settings = settings or GatewaySettings()
        #: Where proxied exchanges are recorded as contracts, when set.
        self.recorder = recorder
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
            # A recorded request needs its whole body too.
            runtime.streams_request = (
                route.mirror is None
                and self.recorder is None
                and not any(p.reads_request_body for p in policies)
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

    # -- what a connection needs (connection.Front) ----------------------------------------

    def accept(self, connection: ClientConnection) -> None:
        self._connections.add(connection)

    def forget(self, connection: ClientConnection) -> None:
        self._connections.discard(connection)

    def body_limit(self, method: str, host: str, path: str, headers: Headers) -> tuple[int, bool]:
        """``max_body_bytes`` of the route a request's head matches (the gateway's own limit
        when none does: the request will be a 404 anyway), and whether the route passes
        request bodies on as they arrive."""
        found = self.snapshot.table.match(method, host, path, headers)
        if found is None:
            return self.settings.max_body_bytes, False
        route = found[0].route
        runtime = self.routes.get(route.name)
        return route.max_body_bytes, runtime is not None and runtime.streams_request

    # -- one request -----------------------------------------------------------------------

    async def upgrade(
        self, connection: ClientConnection, incoming: Incoming, initial: bytes
    ) -> None:
        """Pass an upgrade request (WebSocket) to its backend and, when the backend agrees
        (101), join the two connections (:mod:`hybridmesh.gateway.tunnel`); ``initial`` is
        what the client sent after the request. Otherwise the connection ends with the
        answer."""
        incoming.keep_alive = False  # whatever happens, this connection is not reused
        await self.handle(connection, incoming, tunnel=initial)
        if connection.tunnel is None or not connection.tunnel.joined:
            connection.close()

    async def handle(
        self, connection: ClientConnection, incoming: Incoming, *, tunnel: bytes | None = None
    ) -> bool:
        """Answer one request on ``connection``; False when the connection must close.
        ``tunnel``: the request is an upgrade, and these bytes follow it."""
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
                    connection, incoming, headers, request_id, tunnel
                )
            else:
                answer, route_name, backend_name, status = await self._route(
                    connection, incoming, headers, request_id, tunnel
                )
        except Exception:
            log.exception("gateway: handling a request failed")
            answer = problem(500, "the gateway failed on this request", request_id=request_id)
        if answer is not None:
            status = answer.status
            connection.send_answer(answer, request_id, incoming.keep_alive, incoming.method)
        seconds = time.perf_counter() - began
        self.metrics.observe(route_name, backend_name, status, seconds)
        if incoming.rerouted_from is None:
            self.hooks.observe(route_name, backend_name, status, seconds)
        else:  # its chosen backend was ejected: a failure of that backend's share
            self.hooks.observe(route_name, incoming.rerouted_from, 503, seconds)
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
        self,
        connection: ClientConnection,
        incoming: Incoming,
        headers: Headers,
        request_id: str,
        tunnel: bytes | None = None,
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
            result = await self._route(connection, incoming, headers, request_id, tunnel)
            _, route_name, backend_name, status = result
            span.set_attribute("http.route", route_name)
            span.set_attribute("hybridmesh.backend", backend_name)
            span.set_attribute("http.response.status_code", status)
            return result

    async def _route(
        self,
        connection: ClientConnection,
        incoming: Incoming,
        headers: Headers,
        request_id: str,
        tunnel: bytes | None = None,
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
                return self._refused(answer, request, "-")
        key = sticky_key(route, headers, request.client_ip, request.claims)
        chosen = compiled.choose(key, headers, self.rng)
        backend = self._healthy(runtime, chosen)
        if backend is not None and backend.backend.name != chosen.name:
            incoming.rerouted_from = chosen.name
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
                return self._refused(answer, request, backend.backend.name)
        if tunnel is not None:
            status = await self._open_tunnel(
                connection, incoming, runtime, backend, request, tunnel
            )
            return None, route.name, backend.backend.name, status
        ticket = (
            runtime.mirror.start(request, backend.backend.name)
            if runtime.mirror is not None
            else None
        )
        if self.recorder is not None:
            chosen_backend = backend.backend
            ticket = RecordingTicket(
                self.recorder, request, chosen_backend.service or chosen_backend.name, ticket
            )
        status = await self._proxy(connection, incoming, runtime, backend, request, ticket)
        return None, route.name, backend.backend.name, status

    async def _open_tunnel(
        self,
        connection: ClientConnection,
        incoming: Incoming,
        runtime: RouteRuntime,
        backend: BackendRuntime,
        request: ProxyRequest,
        initial: bytes,
    ) -> int:
        """Send the upgrade request to ``backend`` on a connection of its own and relay the
        answer; on 101 the connections stay joined. Returns the answer's status."""
        timeouts = runtime.compiled.route.timeouts
        message = self._message(connection, incoming, request, backend)
        began = time.monotonic()
        tunnel = Tunnel(connection)
        origin = backend.origin
        failure: tuple[int, str] | None = None
        try:
            async with asyncio.timeout(timeouts.connect):
                await asyncio.get_running_loop().create_connection(
                    lambda: tunnel, origin.host, origin.port, ssl=origin.scheme == "https" or None
                )
        except TimeoutError:
            failure = (502, f"connecting to {origin.authority} took over {timeouts.connect:g} s")
        except OSError as error:
            failure = (502, f"cannot connect to {origin.authority}: {error}")
        if failure is None:
            connection.join(tunnel)
            tunnel.to_backend(message + initial)
            try:
                async with asyncio.timeout(timeouts.read):
                    status = await asyncio.shield(tunnel.answered)
            except TimeoutError:
                status = None
                failure = (504, f"the backend did not answer within {timeouts.read:g} s")
            if status is not None:
                if backend.breaker is not None:
                    backend.breaker.record_success(time.monotonic() - began)
                return status
            failure = failure or (502, "the backend closed the connection before answering")
            if tunnel.transport is not None:
                tunnel.transport.abort()
        status, detail = failure
        self._failed(runtime, backend, began, "timeout" if status == 504 else "connect")
        connection.send_answer(
            problem(status, detail, request_id=request.request_id, headers=request.answer_headers),
            request.request_id,
            False,
            incoming.method,
        )
        return status

    def _refused(
        self, answer: Answer, request: ProxyRequest, backend: str
    ) -> tuple[Answer, str, str, int]:
        """A policy's refusal, as :meth:`_route` returns it: counted, with the headers the
        policies added for the client (rate limit headers)."""
        answer.headers.extend(request.answer_headers)
        self.metrics.refused(request.route, refusal_reason(answer.status))
        return answer, request.route, backend, answer.status

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
        """The request as the backend gets it: :func:`forwarded_lines`, the trace context
        (the client's, or a new trace), an upgrade's headers, and the framing."""
        route = self.routes[request.route].compiled.route
        lines = forwarded_lines(
            request,
            base_path=backend.base_path,
            authority=backend.origin.authority,
            preserve_host=route.preserve_host,
            peer=connection.client_ip,
        )
        traceparent = request.headers.get("traceparent")
        if traceparent is None:
            carrier: dict[str, str] = {}
            inject_headers(carrier)
            lines.extend(f"{k}: {v}" for k, v in carrier.items())
            traceparent = carrier["traceparent"]
        incoming.trace_id = traceparent[3:35] if len(traceparent) >= 35 else None
        if incoming.upgrade is not None:  # hop-by-hop, but the point of this request
            lines.append("connection: upgrade")
            lines.append(f"upgrade: {incoming.upgrade}")
        stream = incoming.stream
        if stream is None:
            return with_body(lines, request)
        # The body follows as it arrives.
        if stream.length is not None:
            lines.append(f"content-length: {stream.length}")
        else:
            lines.append("transfer-encoding: chunked")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

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
                if incoming.method != "HEAD" and status not in NO_BODY_STATUSES:
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


def _escapes(path: str) -> bool:
    """Whether ``path`` has ``.`` or ``..`` segments (also percent-encoded): a prefix route
    could otherwise be left by a backend that resolves them."""
    if "." not in path and "%" not in path:
        return False
    return any(unquote(segment) in (".", "..") for segment in path.split("/"))


__all__ = [
    "BackendRuntime",
    "ClientConnection",
    "Gateway",
    "GatewaySettings",
    "Hooks",
    "RouteRuntime",
]
