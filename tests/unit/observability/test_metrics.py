from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from hybridmesh.observability import MeshMetrics

CALL = {"source": "orders", "target": "users", "pattern": "rest"}


def test_calls_are_counted_by_their_labels() -> None:
    metrics = MeshMetrics()
    metrics.observe_call("orders", "users", "rest", "success", 0.01)
    metrics.observe_call("orders", "users", "rest", "success", 0.02)
    metrics.observe_call("orders", "users", "rest", "error", 0.03)
    metrics.observe_call("orders", "users", "graphql", "success", 0.04)
    assert metrics.sample("hybridmesh_calls_total", **CALL, outcome="success") == 2
    assert metrics.sample("hybridmesh_calls_total", **CALL, outcome="error") == 1
    assert (
        metrics.sample(
            "hybridmesh_calls_total",
            source="orders",
            target="users",
            pattern="graphql",
            outcome="success",
        )
        == 1
    )
    assert metrics.sample("hybridmesh_calls_total", **CALL, outcome="timeout") is None


def test_call_durations_fall_into_buckets_from_half_a_millisecond_to_a_minute() -> None:
    metrics = MeshMetrics()
    for seconds in (0.0003, 0.0007, 0.2, 45.0, 120.0):
        metrics.observe_call("orders", "users", "rest", "success", seconds)

    def bucket(le: str) -> float | None:
        return metrics.sample("hybridmesh_call_duration_seconds_bucket", **CALL, le=le)

    assert bucket("0.0005") == 1
    assert bucket("0.001") == 2
    assert bucket("0.25") == 3
    assert bucket("30.0") == 3
    assert bucket("60.0") == 4
    assert bucket("+Inf") == 5
    assert metrics.sample("hybridmesh_call_duration_seconds_count", **CALL) == 5
    assert metrics.sample("hybridmesh_call_duration_seconds_sum", **CALL) == pytest.approx(165.201)


def test_call_durations_are_shared_across_outcomes() -> None:
    metrics = MeshMetrics()
    metrics.observe_call("orders", "users", "rest", "success", 0.1)
    metrics.observe_call("orders", "users", "rest", "error", 0.1)
    assert metrics.sample("hybridmesh_call_duration_seconds_count", **CALL) == 2


def test_retries_and_fallbacks_are_counted() -> None:
    metrics = MeshMetrics()
    metrics.observe_retry("users")
    metrics.observe_retry("users")
    metrics.observe_fallback("orders", "users", "graphql", "rest")
    assert metrics.sample("hybridmesh_call_retries_total", target="users") == 2
    assert (
        metrics.sample(
            "hybridmesh_call_fallbacks_total",
            source="orders",
            target="users",
            from_pattern="graphql",
            to="rest",
        )
        == 1
    )


@pytest.mark.parametrize(
    ("state", "value"), [("closed", 0), ("half_open", 1), ("half-open", 1), ("open", 2)]
)
def test_breaker_gauge_encodes_the_state(state: str, value: float) -> None:
    metrics = MeshMetrics()
    metrics.set_breaker_state("users", state)
    assert metrics.sample("hybridmesh_circuit_breaker_state", name="users") == value


def test_breaker_transitions_are_counted_only_when_the_state_changes() -> None:
    metrics = MeshMetrics()
    metrics.set_breaker_state("users", "open", "closed")
    metrics.set_breaker_state("users", "half_open", "open")
    metrics.set_breaker_state("users", "open", "half_open")
    metrics.set_breaker_state("users", "open", "open")

    def transitions(from_state: str, to_state: str) -> float | None:
        return metrics.sample(
            "hybridmesh_circuit_breaker_transitions_total",
            name="users",
            from_state=from_state,
            to_state=to_state,
        )

    assert transitions("closed", "open") == 1
    assert transitions("open", "half_open") == 1
    assert transitions("half_open", "open") == 1
    assert transitions("open", "open") is None
    assert metrics.sample("hybridmesh_circuit_breaker_state", name="users") == 2


def test_unknown_breaker_state_is_rejected() -> None:
    with pytest.raises(ValueError, match="ajar"):
        MeshMetrics().set_breaker_state("users", "ajar")


def test_render_exposes_every_metric_in_text_format() -> None:
    metrics = MeshMetrics()
    metrics.observe_call("orders", "users", "rest", "success", 0.01)
    metrics.observe_retry("users")
    metrics.observe_fallback("orders", "users", "rest", "cache")
    metrics.set_breaker_state("users", "open", "closed")
    text = metrics.render().decode()
    for name in (
        "hybridmesh_calls_total",
        "hybridmesh_call_duration_seconds_bucket",
        "hybridmesh_call_retries_total",
        "hybridmesh_call_fallbacks_total",
        "hybridmesh_circuit_breaker_state",
        "hybridmesh_circuit_breaker_transitions_total",
    ):
        assert f"\n{name}{{" in text
    assert metrics.content_type.startswith("text/plain")


def test_instances_count_in_their_own_registries() -> None:
    first, second = MeshMetrics(), MeshMetrics()
    first.observe_retry("users")
    assert first.sample("hybridmesh_call_retries_total", target="users") == 1
    assert second.sample("hybridmesh_call_retries_total", target="users") is None


def test_a_given_registry_is_used() -> None:
    registry = CollectorRegistry()
    metrics = MeshMetrics(registry)
    metrics.observe_retry("users")
    assert metrics.registry is registry
    assert registry.get_sample_value("hybridmesh_call_retries_total", {"target": "users"}) == 1


def test_default_is_one_instance_per_process() -> None:
    assert MeshMetrics.default() is MeshMetrics.default()
