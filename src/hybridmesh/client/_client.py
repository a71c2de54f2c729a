"""The hybrid client: one ``communicate()`` for every cross-service call."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Mapping
from contextlib import nullcontext
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

from hybridmesh.client.cache import ResponseCache
from hybridmesh.client.models import CommunicationRequest, CommunicationResponse
from hybridmesh.client.strategy import (
    PatternStep,
    RequestType,
    Strategy,
    fit_to_capabilities,
    forced_strategy,
    select_strategy,
)
from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import (
    BulkheadFullError,
    CallTimeoutError,
    CircuitOpenError,
    HybridMeshError,
    RateLimitedError,
    RetriesExhaustedError,
    TransportError,
    TransportNotConfiguredError,
)
from hybridmesh.core.ids import idempotency_key, new_request_id
from hybridmesh.observability import (
    MeshMetrics,
    bind_context,
    current_request_id,
    get_logger,
    inject_child_headers,
    inject_headers,
    start_call_span,
    start_context_span,
    tracing_records,
)
from hybridmesh.observability.metrics import SYNCHRONOUS_PATTERNS
from hybridmesh.observability.rollup import CallRollup
from hybridmesh.registry import ServiceDefinition, ServiceRegistry
from hybridmesh.resilience import (
    BreakerSnapshot,
    BreakerState,
    PolicySet,
    ResilienceOverrides,
    ResiliencePolicy,
    Retry,
    apply_overrides,
    default_policy,
)
from hybridmesh.transports import (
    GraphQLTransport,
    HttpSession,
    OutboundRequest,
    RestTransport,
    Transport,
    TransportResponse,
)

if TYPE_CHECKING:
    from hybridmesh.contracts.recorder import ContractRecorder

#: Architecture assumed for a caller that is not in the registry (a platform component such
#: as the saga orchestrator, or a script).
UNREGISTERED_SOURCE_ARCHITECTURE = "microservice"
_HTTP_PATTERNS = frozenset({"rest", "graphql"})
_NO_SPAN = nullcontext()

log = get_logger("hybridmesh.client")


class HybridClient:
    """Makes cross-service calls by the registry's architectures, resiliently.

    For each call it picks a :class:`~hybridmesh.client.strategy.Strategy` from the pair of
    architectures and the request type, then tries the strategy's patterns in order. Every
    attempt passes the target's circuit breaker, rate limiter and bulkhead and has a timeout;
    retryable failures are retried with backoff. When every pattern fails, a query is answered
    from the last good answer if one is cached; otherwise the first pattern's error is raised
    (``CircuitOpenError``, ``RetriesExhaustedError``, ``CallTimeoutError``,
    ``TransportError``), with the fallbacks' failures added as notes.

    A pattern whose transport is not configured is skipped with
    ``TransportNotConfiguredError`` recorded: a call never reports success it did not have.

    Every call is counted once, as the caller saw it, in ``metrics``
    (``hybridmesh_communications_total`` and, answered over a synchronous pattern,
    ``hybridmesh_communication_duration_seconds``) and, when given, in ``rollup``, the
    durable per-minute counts the SLO report reads.

    Use as an async context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        registry: ServiceRegistry,
        *,
        transports: Mapping[str, Transport] | None = None,
        metrics: MeshMetrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        cache: ResponseCache | None = None,
        http: HttpSession | None = None,
        rollup: CallRollup | None = None,
        recorder: ContractRecorder | None = None,
    ) -> None:
        self.registry = registry
        self.rollup = rollup
        #: Where the HTTP calls this client makes are recorded as contracts, when set.
        self.recorder = recorder
        self.clock = clock
        self.metrics = metrics or MeshMetrics.default()
        self.cache = cache or ResponseCache(clock=clock)
        self._http = http or HttpSession()
        if transports is None:
            transports = {
                "rest": RestTransport(self._http),
                "graphql": GraphQLTransport(self._http),
            }
        self.transports: dict[str, Transport] = dict(transports)
        self.policies = PolicySet(clock=clock, on_breaker_change=self._breaker_changed)
        self._rng = rng or random.Random()
        self._policy_cache: dict[tuple[Any, ...], ResiliencePolicy] = {}
        # Keyed by the policy's identity: resolved policies are cached and kept alive above,
        # and hashing a nested frozen dataclass on every call is measurable.
        self._retries: dict[tuple[str, int], tuple[ResiliencePolicy, Retry]] = {}
        #: The most recent circuit-breaker transitions: (wall time, guard, from, to).
        self.breaker_transitions: deque[tuple[datetime, str, str, str]] = deque(maxlen=256)

    # -- lifecycle -------------------------------------------------------------------------

    def add_transport(self, transport: Transport) -> None:
        """Add (or replace) the transport for its pattern."""
        self.transports[transport.pattern] = transport

    def policy_changed(self) -> None:
        """Forget resolved policies, after the registry's resilience settings changed."""
        self._policy_cache.clear()
        self._retries.clear()

    async def close(self) -> None:
        for transport in self.transports.values():
            await transport.close()
        await self._http.close()

    async def __aenter__(self) -> HybridClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the call --------------------------------------------------------------------------

    async def communicate(
        self, source: str, target: str, request: CommunicationRequest
    ) -> CommunicationResponse:
        """Call ``target`` on behalf of ``source``.

        Raises ``UnknownServiceError`` when the target is not registered,
        ``PatternNotAllowedError`` when its capabilities allow no pattern of the strategy, a
        ``ResilienceError`` or ``TransportError`` when no pattern and no cached answer could
        serve the call. A 4xx answer (other than 408 and 429) is the caller's mistake: it is
        raised at once, without retries or fallbacks.
        """
        target_def = self.registry.get(target)
        kind = request.type if type(request.type) is RequestType else RequestType(request.type)
        source_def = self.registry.find(source)
        pair = (
            source,
            target,
            str(source_def.architecture if source_def else UNREGISTERED_SOURCE_ARCHITECTURE),
            str(target_def.architecture),
        )
        if request.pattern:
            strategy = forced_strategy(request.pattern, kind)
        else:
            strategy = select_strategy(
                pair[2],
                pair[3],
                kind,
                has_graphql_query=bool(request.query),
            )
        # Before anything is sent: PatternNotAllowedError when no pattern is left.
        strategy = fit_to_capabilities(strategy, target_def)
        request_id = request.request_id or current_request_id() or new_request_id()
        started = self.clock.monotonic()
        # Unrecorded, the call's span only carries context (log lines written during the
        # call carry its ids); the attempts' spans are not made at all: their traceparent
        # is written from the call's span directly (``inject_child_headers``), for less.
        span = (
            start_call_span(
                f"communicate {target}",
                attributes={
                    "hybridmesh.source": source,
                    "hybridmesh.target": target,
                    "hybridmesh.strategy": strategy.name,
                    "hybridmesh.request_type": kind.value,
                },
            )
            if tracing_records()
            else start_context_span()
        )
        headers = self._headers(source, target, request, kind, request_id)
        failures: list[HybridMeshError] = []
        attempts = [0]
        with bind_context(request_id=request_id, source_service=source), span:
            for index, step in enumerate(strategy.steps):
                pattern = step.pattern
                transport = self.transports.get(pattern)
                if transport is None:
                    failures.append(TransportNotConfiguredError(pattern, target))
                    continue
                policy = self._policy(target_def, kind, step, request)
                outbound = self._outbound(target_def, request, pattern, headers)
                guard = target if pattern in _HTTP_PATTERNS else f"{pattern}:{target}"
                call_started = self.clock.monotonic()
                try:
                    if policy.retry.max_attempts <= 1:
                        answer = await self._attempt(
                            guard, transport, policy, outbound, headers, attempts, 1
                        )
                    else:
                        answer = await self._retry(guard, policy).call(
                            partial(
                                self._attempt, guard, transport, policy, outbound, headers, attempts
                            )
                        )
                except HybridMeshError as error:
                    self.metrics.observe_call(
                        source,
                        target,
                        pattern,
                        _outcome(error),
                        self.clock.monotonic() - call_started,
                    )
                    if isinstance(error, TransportError) and error.is_client_error:
                        self._ended(pair, "client_error", None)
                        if self.recorder is not None and pattern in _HTTP_PATTERNS:
                            self._record(
                                source, outbound, error.status or 400, error.headers, error.body
                            )
                        raise
                    failures.append(error)
                    if index + 1 < len(strategy.steps):
                        self._fell_back(
                            source, target, pattern, strategy.steps[index + 1].pattern, error
                        )
                    continue
                now = self.clock.monotonic()
                self.metrics.observe_call(
                    source,
                    target,
                    pattern,
                    "success" if index == 0 else "fallback",
                    now - call_started,
                )
                self._ended(
                    pair,
                    "success" if index == 0 else "fallback",
                    now - started if pattern in SYNCHRONOUS_PATTERNS else None,
                )
                if self.recorder is not None and pattern in _HTTP_PATTERNS:
                    self._record(source, outbound, answer.status, answer.headers, answer.data)
                if strategy.use_cache:
                    self.cache.put(_cache_key(target, request), answer.data, answer.status)
                return CommunicationResponse(
                    data=answer.data,
                    status=answer.status,
                    pattern=pattern,
                    strategy=strategy.name,
                    source=source,
                    target=target,
                    request_id=request_id,
                    attempts=attempts[0],
                    duration=now - started,
                    fallback_used=index > 0,
                    headers=answer.headers,
                    failures=[str(f) for f in failures],
                )
            try:
                answered = self._fall_back_or_raise(
                    source, target, request, strategy, request_id, started, failures, attempts[0]
                )
            except HybridMeshError:
                self._ended(pair, "failure", None)
                raise
            self._ended(pair, "fallback", None)
            return answered

    def _record(
        self,
        source: str,
        outbound: OutboundRequest,
        status: int,
        headers: Mapping[str, str],
        body: Any,
    ) -> None:
        """Hand one answered HTTP call to the contract recorder: the request as it went
        out (a GraphQL call's document as its body) and the answer as it came back."""
        assert self.recorder is not None
        if outbound.query is not None:
            sent: Any = {"query": outbound.query}
            if outbound.variables:
                sent["variables"] = dict(outbound.variables)
        else:
            sent = outbound.payload
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.recorder.record_http(
            consumer=source,
            provider=outbound.target,
            method=outbound.method,
            path=outbound.path,
            query=outbound.params,
            request_headers=outbound.headers,
            request_body=sent,
            status=status,
            response_headers=headers,
            response_body=body,
        )

    def _ended(self, pair: tuple[str, str, str, str], outcome: str, seconds: float | None) -> None:
        """Count one whole call: ``pair`` is (source, target, and their architectures)."""
        self.metrics.observe_communication(*pair, outcome, seconds)
        if self.rollup is not None:
            self.rollup.observe(*pair, outcome, seconds)

    def _fell_back(
        self, source: str, target: str, pattern: str, then: str, error: HybridMeshError
    ) -> None:
        self.metrics.observe_fallback(source, target, pattern, then)
        log.warning(
            "%s -> %s over %s failed (%s); falling back to %s", source, target, pattern, error, then
        )

    def _fall_back_or_raise(
        self,
        source: str,
        target: str,
        request: CommunicationRequest,
        strategy: Strategy,
        request_id: str,
        started: float,
        failures: list[HybridMeshError],
        attempts: int,
    ) -> CommunicationResponse:
        if strategy.use_cache:
            cached = self.cache.get(_cache_key(target, request))
            if cached is not None:
                last = strategy.steps[-1].pattern
                self.metrics.observe_fallback(source, target, last, "cache")
                self.metrics.observe_call(source, target, "cache", "fallback", 0.0)
                log.warning(
                    "%s -> %s failed; answered from cache (%.1fs old)", source, target, cached.age
                )
                return CommunicationResponse(
                    data=cached.data,
                    status=cached.status,
                    pattern="cache",
                    strategy=strategy.name,
                    source=source,
                    target=target,
                    request_id=request_id,
                    attempts=attempts,
                    duration=self.clock.monotonic() - started,
                    fallback_used=True,
                    from_cache=True,
                    cache_age=cached.age,
                    failures=[str(f) for f in failures],
                )
        real = [f for f in failures if not isinstance(f, TransportNotConfiguredError)]
        primary = real[0] if real else failures[0]
        for other in failures:
            if other is not primary:
                primary.add_note(f"then: {other}")
        raise primary

    async def _attempt(
        self,
        guard: str,
        transport: Transport,
        policy: ResiliencePolicy,
        outbound: OutboundRequest,
        base_headers: dict[str, str],
        attempts: list[int],
        number: int,
    ) -> TransportResponse:
        """One attempt through the guards named ``guard``, within the policy's timeout.

        Written as one coroutine on purpose: every level of ``await`` between the caller
        and the transport is paid again each time the call resumes.
        """
        policies = self.policies
        # Local guards first: a call they refuse never reached the target, so it must not
        # count in the target's breaker.
        if policy.rate_limit:
            await policies.rate_limiter(guard, policy.rate_limit).acquire()
        breaker = policies.breaker(guard, policy.breaker)
        async with policies.bulkhead(guard, policy.bulkhead):
            breaker.acquire()
            attempts[0] += 1
            headers = dict(base_headers)
            outbound.headers = headers
            span = (
                start_call_span(
                    f"{transport.pattern} {outbound.method} {outbound.target}",
                    attributes={
                        "hybridmesh.pattern": transport.pattern,
                        "hybridmesh.attempt": number,
                        "http.request.method": outbound.method,
                        "url.full": outbound.url,
                    },
                )
                if tracing_records()
                else None
            )
            with span or _NO_SPAN as current:
                if span is None:
                    inject_child_headers(headers)
                else:
                    inject_headers(headers, current)
                timeout = policy.timeout
                began = self.clock.monotonic()
                try:
                    try:
                        async with asyncio.timeout(timeout) as limit:
                            answer = await transport.send(outbound)
                    except TimeoutError as error:
                        if timeout is None or not limit.expired():
                            raise  # the transport's own timeout, not this attempt's
                        raise CallTimeoutError(guard, timeout) from error
                except BaseException as error:
                    breaker.record_failure(self.clock.monotonic() - began, error)
                    raise
                breaker.record_success(self.clock.monotonic() - began)
                return answer

    # -- helpers ---------------------------------------------------------------------------

    def _retry(self, name: str, policy: ResiliencePolicy) -> Retry:
        key = (name, id(policy))
        cached = self._retries.get(key)
        if cached is not None and cached[0] is policy:
            return cached[1]
        metrics = self.metrics

        def on_retry(attempt: int, error: BaseException, delay: float) -> None:
            metrics.observe_retry(name)
            log.warning(
                "%s: attempt %d failed (%s); retrying in %.3fs", name, attempt, error, delay
            )

        retry = Retry(name, policy.retry, clock=self.clock, rng=self._rng, on_retry=on_retry)
        if len(self._retries) > 4096:
            self._retries.clear()
        self._retries[key] = (policy, retry)
        return retry

    def _policy(
        self,
        target_def: ServiceDefinition,
        kind: RequestType,
        step: PatternStep,
        request: CommunicationRequest,
    ) -> ResiliencePolicy:
        key = (
            target_def.name,
            kind,
            step.pattern,
            step.timeout,
            step.retries,
            request.timeout,
            request.retries,
        )
        policy = self._policy_cache.get(key)
        if policy is not None:
            return policy
        policy = default_policy(target_def.architecture, kind.value)
        if step.timeout is not None or step.retries is not None:
            policy = apply_overrides(
                policy, ResilienceOverrides(timeout=step.timeout, retries=step.retries)
            )
        policy = apply_overrides(policy, target_def.resilience)
        if request.timeout is not None or request.retries is not None:
            # The architecture's ``max_timeout`` (60 s for a traditional monolith) caps this.
            policy = apply_overrides(
                policy, ResilienceOverrides(timeout=request.timeout, retries=request.retries)
            )
        if len(self._policy_cache) > 4096:
            self._policy_cache.clear()
        self._policy_cache[key] = policy
        return policy

    @staticmethod
    def _headers(
        source: str,
        target: str,
        request: CommunicationRequest,
        kind: RequestType,
        request_id: str,
    ) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            **request.headers,
            "X-Request-ID": request_id,
            "X-Source-Service": source,
        }
        if kind is RequestType.COMMAND:
            headers["Idempotency-Key"] = request.idempotency_key or idempotency_key(
                source, target, request_id
            )
        elif request.idempotency_key:  # a query or a batch record the caller keys itself
            headers["Idempotency-Key"] = request.idempotency_key
        return headers

    @staticmethod
    def _outbound(
        target_def: ServiceDefinition,
        request: CommunicationRequest,
        pattern: str,
        headers: dict[str, str],
    ) -> OutboundRequest:
        path = target_def.graphql_path if pattern == "graphql" else request.endpoint
        return OutboundRequest(
            target=target_def.name,
            base_url=target_def.base_url,
            method="POST" if pattern == "graphql" else request.method,
            path=path,
            payload=request.payload,
            params=request.params,
            headers=headers,
            query=request.query,
            variables=request.variables,
            event_type=request.event_type,
            operation=request.operation,
        )

    def _breaker_changed(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.breaker_transitions.append((self.clock.now(), name, old.value, new.value))
        self.metrics.set_breaker_state(name, new.value, old.value)
        log.warning(
            "circuit %s: %s -> %s",
            name,
            old.value,
            new.value,
            extra={"circuit": name, "from_state": old.value, "to_state": new.value},
        )

    def breaker_snapshots(self) -> list[BreakerSnapshot]:
        """Every circuit breaker this client has made (one per guard: a target's name for
        HTTP calls, ``pattern:target`` for the others), by name. They live in this
        process's memory: another process's client has breakers of its own."""
        return sorted(
            (breaker.snapshot() for breaker in self.policies.breakers()), key=lambda s: s.name
        )

    def breaker_state(self, target: str) -> str:
        """The state of the circuit breaker guarding HTTP calls to ``target``."""
        breaker = self.policies.find_breaker(target)
        return breaker.state.value if breaker is not None else BreakerState.CLOSED.value


def _outcome(error: BaseException) -> str:
    if isinstance(error, CircuitOpenError | BulkheadFullError | RateLimitedError):
        return "rejected"
    if isinstance(error, CallTimeoutError):
        return "timeout"
    if isinstance(error, RetriesExhaustedError) and isinstance(error.last_error, CallTimeoutError):
        return "timeout"
    return "error"


def _cache_key(target: str, request: CommunicationRequest) -> tuple[Any, ...]:
    params = tuple(sorted(request.params.items())) if request.params else ()
    variables = repr(sorted(request.variables.items())) if request.variables else ""
    return (target, request.method, request.endpoint, params, request.query or "", variables)


__all__ = ["UNREGISTERED_SOURCE_ARCHITECTURE", "HybridClient"]
