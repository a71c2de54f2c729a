"""The strategy table: patterns by architecture pair and request type."""

from __future__ import annotations

import pytest

from hybridmesh.client import (
    PatternNotAllowedError,
    ResponseCache,
    fit_to_capabilities,
    forced_strategy,
    select_strategy,
)
from hybridmesh.core.clock import FakeClock
from hybridmesh.core.errors import HybridMeshError
from hybridmesh.registry import ServiceDefinition


@pytest.mark.parametrize(
    ("source", "target", "kind", "patterns", "cached"),
    [
        ("microservice", "microservice", "query", ("rest",), True),
        ("microservice", "microservice", "command", ("events", "rest"), False),
        ("microservice", "modular-monolith", "query", ("rest",), True),
        ("microservice", "modular-monolith", "command", ("rest", "batch"), False),
        ("modular-monolith", "microservice", "command", ("rest", "events"), False),
        ("modular-monolith", "modular-monolith", "command", ("events", "rest"), False),
        ("microservice", "traditional-monolith", "query", ("rest",), True),
        ("microservice", "traditional-monolith", "command", ("rest", "batch"), False),
        ("traditional-monolith", "microservice", "command", ("rest", "batch"), False),
        ("microservice", "serverless", "command", ("rest",), False),
        ("modular-monolith", "traditional-monolith", "batch", ("batch",), False),
    ],
)
def test_strategy_table(
    source: str, target: str, kind: str, patterns: tuple[str, ...], cached: bool
) -> None:
    strategy = select_strategy(source, target, kind)
    assert strategy.patterns == patterns
    assert strategy.use_cache is cached


def test_microservice_query_with_a_document_goes_over_graphql() -> None:
    strategy = select_strategy("microservice", "microservice", "query", has_graphql_query=True)
    assert strategy.patterns == ("graphql",)


def test_seed_settings_for_micro_to_micro() -> None:
    query = select_strategy("microservice", "microservice", "query").steps[0]
    assert (query.timeout, query.retries) == (5.0, 3)
    fallback = select_strategy("microservice", "microservice", "command").steps[1]
    assert (fallback.pattern, fallback.timeout, fallback.retries) == ("rest", 15.0, 1)


def test_unknown_request_type_is_refused() -> None:
    with pytest.raises(ValueError, match="stream"):
        select_strategy("microservice", "microservice", "stream")


def test_forced_pattern() -> None:
    assert forced_strategy("graphql", "query").patterns == ("graphql",)


def test_cache_expires_and_evicts() -> None:
    clock = FakeClock()
    cache = ResponseCache(max_entries=2, max_age=10, clock=clock)
    cache.put(("a",), 1, 200)
    cache.put(("b",), 2, 200)
    cache.put(("c",), 3, 200)
    assert cache.get(("a",)) is None and len(cache) == 2
    clock.advance(11)
    assert cache.get(("b",)) is None


def target(**capabilities: bool) -> ServiceDefinition:
    data: dict[str, object] = {
        "name": "users",
        "architecture": "microservice",
        "base_url": "http://users.local",
        "version": "v1",
    }
    if capabilities:
        data["capabilities"] = capabilities
    return ServiceDefinition.model_validate(data)


def test_events_are_used_only_where_the_target_is_asynchronous() -> None:
    command = select_strategy("microservice", "microservice", "command")

    assert fit_to_capabilities(command, target(synchronous=True)).patterns == ("rest",)
    assert fit_to_capabilities(command, target(asynchronous=True)).patterns == ("events", "rest")


def test_graphql_is_used_only_where_the_target_says_graphql() -> None:
    query = select_strategy("microservice", "microservice", "query", has_graphql_query=True)

    assert fit_to_capabilities(query, target(graphql=True)).patterns == ("graphql",)
    with pytest.raises(PatternNotAllowedError) as refused:
        fit_to_capabilities(query, target(synchronous=True))
    assert (refused.value.service, refused.value.ruled_out) == ("users", ("graphql",))


def test_batch_without_bulk_operations_leaves_no_pattern_and_says_why() -> None:
    batch = select_strategy("microservice", "microservice", "batch")

    assert fit_to_capabilities(batch, target(bulk_operations=True)).patterns == ("batch",)
    with pytest.raises(PatternNotAllowedError) as refused:
        fit_to_capabilities(batch, target(synchronous=True, asynchronous=True))
    assert isinstance(refused.value, HybridMeshError)
    assert "users" in str(refused.value) and "bulk_operations: true" in str(refused.value)


def test_a_target_that_states_no_capabilities_keeps_every_pattern() -> None:
    command = select_strategy("microservice", "modular-monolith", "command")

    assert fit_to_capabilities(command, target()).patterns == ("rest", "batch")
