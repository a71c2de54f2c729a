"""Prometheus metrics for calls between services, retries, fallbacks and circuit breakers.

Each :class:`MeshMetrics` owns its own registry, so tests and embedded clients can count in
isolation; :meth:`MeshMetrics.default` is the one a process exposes.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

#: Call latency buckets in seconds, from half a millisecond (an in-process mock) to a minute
#: (the longest timeout a policy allows).
CALL_DURATION_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

#: Patterns that answer a call while the caller waits; a call answered over one of them has
#: its whole duration recorded in ``hybridmesh_communication_duration_seconds``.
SYNCHRONOUS_PATTERNS: frozenset[str] = frozenset({"rest", "graphql"})

#: The outcomes of ``hybridmesh_communications_total``: ``success`` (the strategy's first
#: pattern answered), ``fallback`` (a later pattern or the cached answer did), ``failure``
#: (nothing could answer) and ``client_error`` (the target refused the request as the
#: caller's mistake, a 4xx other than 408 and 429).
COMMUNICATION_OUTCOMES: tuple[str, ...] = ("success", "fallback", "failure", "client_error")

#: The value of ``hybridmesh_circuit_breaker_state`` for each breaker state.
BREAKER_STATE_VALUES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}


class MeshMetrics:
    """The mesh's metrics, registered in one Prometheus registry.

    - ``hybridmesh_calls_total{source,target,pattern,outcome}``: finished calls.
    - ``hybridmesh_call_duration_seconds{source,target,pattern}``: call latency.
    - ``hybridmesh_call_retries_total{target}``: retried attempts.
    - ``hybridmesh_call_fallbacks_total{source,target,from_pattern,to}``: fallbacks taken.
    - ``hybridmesh_communications_total{source,target,source_architecture,
      target_architecture,outcome}``: whole ``communicate()`` calls (every pattern and
      fallback tried), by how they ended (:data:`COMMUNICATION_OUTCOMES`). The ``calls``
      metrics above count each pattern's attempt; this one counts what the caller saw.
    - ``hybridmesh_communication_duration_seconds{source,target,source_architecture,
      target_architecture}``: whole-call latency of calls answered over a synchronous
      pattern (:data:`SYNCHRONOUS_PATTERNS`).
    - ``hybridmesh_executions_ended_total{kind,name,status}``: sagas and workflows that
      reached a terminal status.
    - ``hybridmesh_circuit_breaker_state{name}``: 0 closed, 1 half open, 2 open.
    - ``hybridmesh_circuit_breaker_transitions_total{name,from_state,to_state}``.

    All methods are safe to call from several threads.
    """

    #: The ``Content-Type`` of :meth:`render`'s output.
    content_type: str = CONTENT_TYPE_LATEST

    _default: ClassVar[MeshMetrics | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Register the metrics in ``registry``, or in a new registry when ``None``.

        Raises ``ValueError`` if ``registry`` already holds metrics with these names.
        """
        self.registry: CollectorRegistry = registry if registry is not None else CollectorRegistry()
        self._calls = Counter(
            "hybridmesh_calls_total",
            "Calls between services, by outcome.",
            ["source", "target", "pattern", "outcome"],
            registry=self.registry,
        )
        self._duration = Histogram(
            "hybridmesh_call_duration_seconds",
            "Duration of calls between services, in seconds.",
            ["source", "target", "pattern"],
            buckets=CALL_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._retries = Counter(
            "hybridmesh_call_retries_total",
            "Attempts retried after a failure.",
            ["target"],
            registry=self.registry,
        )
        self._fallbacks = Counter(
            "hybridmesh_call_fallbacks_total",
            "Calls that fell back from one pattern to another (or to the cache).",
            ["source", "target", "from_pattern", "to"],
            registry=self.registry,
        )
        self._breaker_state = Gauge(
            "hybridmesh_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half open, 2 open.",
            ["name"],
            registry=self.registry,
        )
        self._breaker_transitions = Counter(
            "hybridmesh_circuit_breaker_transitions_total",
            "Circuit breaker state changes.",
            ["name", "from_state", "to_state"],
            registry=self.registry,
        )
        self._events_published = Counter(
            "hybridmesh_events_published_total",
            "Events appended to the bus, by type.",
            ["type"],
            registry=self.registry,
        )
        self._events_handled = Counter(
            "hybridmesh_events_handled_total",
            "Event deliveries handled, by consumer group and outcome "
            "(ack, drop, retry, dead_letter).",
            ["group", "outcome"],
            registry=self.registry,
        )
        self._event_handle_seconds = Histogram(
            "hybridmesh_event_batch_seconds",
            "Time to handle one partition batch (one or more events in order), by group.",
            ["group"],
            buckets=CALL_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._consumer_lag = Gauge(
            "hybridmesh_event_consumer_lag",
            "Events a consumer group has still to read, by partition (topic/partition on Kafka), "
            "as of its latest fetch.",
            ["group", "partition"],
            registry=self.registry,
        )
        self._communications = Counter(
            "hybridmesh_communications_total",
            "Cross-service calls as the caller saw them (all patterns and fallbacks), by outcome.",
            ["source", "target", "source_architecture", "target_architecture", "outcome"],
            registry=self.registry,
        )
        self._communication_duration = Histogram(
            "hybridmesh_communication_duration_seconds",
            "Whole duration of cross-service calls answered over a synchronous pattern.",
            ["source", "target", "source_architecture", "target_architecture"],
            buckets=CALL_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._executions_ended = Counter(
            "hybridmesh_executions_ended_total",
            "Saga and workflow executions that reached a terminal status.",
            ["kind", "name", "status"],
            registry=self.registry,
        )
        self._communication_children: dict[tuple[str, ...], tuple[Any, Any]] = {}
        self._event_children: dict[tuple[str, str], Any] = {}
        self._lag_children: dict[tuple[str, str], Any] = {}
        self._published_children: dict[str, Any] = {}
        # observe_call is on every call's path; ``.labels()`` validates and locks each time,
        # so the children are looked up once per label combination and kept here.
        self._call_children: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}

    @classmethod
    def default(cls) -> MeshMetrics:
        """The process-wide instance (created on first use), which ``/metrics`` exposes."""
        if cls._default is None:
            with cls._default_lock:
                if cls._default is None:
                    cls._default = cls()
        return cls._default

    def observe_call(
        self, source: str, target: str, pattern: str, outcome: str, seconds: float
    ) -> None:
        """Count one finished call and record how long it took."""
        key = (source, target, pattern, outcome)
        children = self._call_children.get(key)
        if children is None:
            children = (
                self._calls.labels(source, target, pattern, outcome),
                self._duration.labels(source, target, pattern),
            )
            self._call_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_communication(
        self,
        source: str,
        target: str,
        source_architecture: str,
        target_architecture: str,
        outcome: str,
        seconds: float | None,
    ) -> None:
        """Count one whole call with ``outcome``; ``seconds`` (None for a call not answered
        over a synchronous pattern) goes into the latency histogram."""
        key = (source, target, source_architecture, target_architecture, outcome)
        children = self._communication_children.get(key)
        if children is None:
            children = (
                self._communications.labels(*key),
                self._communication_duration.labels(*key[:4]),
            )
            self._communication_children[key] = children
        children[0].inc()
        if seconds is not None:
            children[1].observe(seconds)

    def observe_execution_ended(self, kind: str, name: str, status: str) -> None:
        """Count one saga or workflow execution that ended with terminal ``status``."""
        self._executions_ended.labels(kind, name, status).inc()

    def observe_published(self, event_type: str, count: int = 1) -> None:
        """Count ``count`` events of ``event_type`` appended to the bus."""
        counter = self._published_children.get(event_type)
        if counter is None:
            counter = self._published_children[event_type] = self._events_published.labels(
                event_type
            )
        counter.inc(count)

    def observe_handled(self, group: str, outcome: str, count: int = 1) -> None:
        """Count ``count`` deliveries handled by ``group`` with ``outcome``."""
        key = (group, outcome)
        counter = self._event_children.get(key)
        if counter is None:
            counter = self._events_handled.labels(group, outcome)
            self._event_children[key] = counter
        counter.inc(count)

    def set_consumer_lag(self, group: str, partition: str, lag: int) -> None:
        """Record how many events ``group`` has still to read in ``partition``."""
        key = (group, partition)
        gauge = self._lag_children.get(key)
        if gauge is None:
            gauge = self._consumer_lag.labels(group, partition)
            self._lag_children[key] = gauge
        gauge.set(lag)

    def observe_batch(self, group: str, seconds: float) -> None:
        """Record how long ``group`` took over one partition batch."""
        self._event_handle_seconds.labels(group).observe(seconds)

    def observe_retry(self, target: str) -> None:
        """Count one retried attempt against ``target``."""
        self._retries.labels(target).inc()

    def observe_fallback(self, source: str, target: str, from_pattern: str, to: str) -> None:
        """Count one fallback from ``from_pattern`` to ``to`` (a pattern, or ``cache``)."""
        self._fallbacks.labels(source, target, from_pattern, to).inc()

    def set_breaker_state(self, name: str, state: str, previous: str | None = None) -> None:
        """Record that breaker ``name`` is now in ``state``.

        ``state`` is ``closed``, ``half_open`` (or ``half-open``) or ``open``. When
        ``previous`` is given and differs, the transition is counted too. Raises
        ``ValueError`` for an unknown state.
        """
        state = _breaker_state(state)
        self._breaker_state.labels(name).set(BREAKER_STATE_VALUES[state])
        if previous is not None:
            previous = _breaker_state(previous)
            if previous != state:
                self._breaker_transitions.labels(name, previous, state).inc()

    def render(self) -> bytes:
        """All metrics in the Prometheus text exposition format (see :attr:`content_type`)."""
        data: bytes = generate_latest(self.registry)
        return data

    def sample(self, name: str, /, **labels: str) -> float | None:
        """The current value of sample ``name`` with exactly ``labels``, or ``None``.

        ``name`` is a sample name as rendered, for example ``hybridmesh_calls_total`` or
        ``hybridmesh_call_duration_seconds_bucket`` (with ``le="0.5"``).
        """
        value: float | None = self.registry.get_sample_value(name, labels)
        return value


def _breaker_state(state: str) -> str:
    normalized = state.lower().replace("-", "_")
    if normalized not in BREAKER_STATE_VALUES:
        known = ", ".join(BREAKER_STATE_VALUES)
        raise ValueError(f"unknown circuit breaker state {state!r}; expected one of {known}")
    return normalized


__all__ = [
    "BREAKER_STATE_VALUES",
    "CALL_DURATION_BUCKETS",
    "COMMUNICATION_OUTCOMES",
    "SYNCHRONOUS_PATTERNS",
    "MeshMetrics",
]
