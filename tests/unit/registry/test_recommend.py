"""The integration matrix, and the registry's lookups built on it."""

from __future__ import annotations

import itertools

import pytest

from hybridmesh.core.errors import NotFoundError, UnknownServiceError
from hybridmesh.registry import (
    Architecture,
    DependencyType,
    IntegrationPattern,
    PatternType,
    ServiceDefinition,
    ServiceDependency,
    ServiceRegistry,
    matrix,
    recommend,
)

R, G, E, B, W = (
    PatternType.REST,
    PatternType.GRAPHQL,
    PatternType.EVENTS,
    PatternType.BATCH,
    PatternType.WEBSOCKET,
)
MS, MM, TM, SL = (
    "microservice",
    "modular-monolith",
    "traditional-monolith",
    "serverless",
)
ALL = [MS, MM, TM, SL]

LEGACY_SOURCE = "Conservative integration to protect legacy system"
LEGACY_TARGET = "API gateway proxy with rate limiting"


@pytest.mark.parametrize(("source", "target"), list(itertools.product(ALL, ALL)))
def test_every_ordered_pair_gets_a_recommendation(source: str, target: str) -> None:
    rec = recommend(source, target)

    assert rec.source is Architecture(source)
    assert rec.target is Architecture(target)
    assert rec.preferred
    assert all(isinstance(p, PatternType) for p in rec.preferred)
    assert len(set(rec.preferred)) == len(rec.preferred)
    assert rec.rationale.strip()
    assert rec.rule
    assert rec.use_case is None
    assert rec.for_use_case is None


def test_matrix_covers_the_sixteen_pairs_once() -> None:
    pairs = [(r.source.value, r.target.value) for r in matrix()]

    assert len(pairs) == 16
    assert set(pairs) == set(itertools.product(ALL, ALL))


@pytest.mark.parametrize(
    ("source", "target", "preferred", "rationale"),
    [
        (MS, MS, (E, R, G), "Loose coupling through events, direct sync calls when needed"),
        (MS, MM, (E, R), "Events for notifications, REST for queries"),
        (MM, MS, (R, E), "REST for simple operations, events for complex workflows"),
        (MM, MM, (E, B, R), "Events for decoupling, batch for efficiency"),
    ],
)
def test_the_guides_exact_entries(
    source: str, target: str, preferred: tuple[PatternType, ...], rationale: str
) -> None:
    rec = recommend(source, target)

    assert rec.preferred == preferred
    assert rec.rationale == rationale
    assert rec.rule == f"{source}->{target}"


@pytest.mark.parametrize("target", ALL)
def test_a_traditional_monolith_calling_anything_is_conservative(target: str) -> None:
    rec = recommend(TM, target)

    assert rec.preferred == (R, B)
    assert rec.rationale == LEGACY_SOURCE


@pytest.mark.parametrize("source", [MS, MM, SL])
def test_anything_calling_a_traditional_monolith_goes_through_the_gateway(source: str) -> None:
    rec = recommend(source, TM)

    assert rec.preferred == (R, B)
    assert rec.rationale == LEGACY_TARGET


@pytest.mark.parametrize("source", [MS, MM, SL])
def test_serverless_targets_are_triggered_with_events_first(source: str) -> None:
    rec = recommend(source, SL)

    assert rec.preferred == (E, R)
    assert "event" in rec.rationale.lower()


@pytest.mark.parametrize("target", [MS, MM, SL])
def test_serverless_sources_use_events_then_http(target: str) -> None:
    rec = recommend(SL, target)

    assert rec.preferred == (E, R)
    assert "event" in rec.rationale.lower()


def test_serverless_to_serverless_has_no_batch() -> None:
    assert B not in recommend(SL, SL).preferred


def test_legacy_rules_never_recommend_graphql_or_events() -> None:
    for rec in matrix():
        if Architecture.TRADITIONAL_MONOLITH in (rec.source, rec.target):
            assert rec.preferred == (R, B), (rec.source, rec.target)


def test_accepts_architecture_enum_members() -> None:
    assert recommend(Architecture.MICROSERVICE, Architecture.SERVERLESS) == recommend(MS, SL)


@pytest.mark.parametrize(
    ("source", "target", "use_case", "expected"),
    [
        (MS, TM, "nightly financial report", B),
        (MM, TM, "Bulk inventory export", B),
        (MS, TM, "customer lookup", R),
        (MS, MS, "order placed notification", E),
        (MS, MS, "mobile dashboard", G),
        (MM, MM, "scheduled ETL", B),
        (MS, SL, "trigger image resize", E),
    ],
)
def test_use_case_picks_a_preferred_pattern(
    source: str, target: str, use_case: str, expected: PatternType
) -> None:
    rec = recommend(source, target, use_case)

    assert rec.use_case == use_case
    assert rec.for_use_case is expected
    assert rec.for_use_case in rec.preferred
    assert rec.preferred == recommend(source, target).preferred


def test_use_case_hint_is_never_outside_the_preferred_patterns() -> None:
    # GraphQL suits a mobile dashboard, but the legacy ERP does not offer it.
    rec = recommend(MS, TM, "mobile dashboard")

    assert rec.for_use_case is None


def test_use_case_that_matches_nothing_gives_no_hint() -> None:
    rec = recommend(MS, MS, "zzz")

    assert rec.use_case == "zzz"
    assert rec.for_use_case is None


@pytest.mark.parametrize(("source", "target"), [("mainframe", MS), (MS, "mainframe"), ("", "")])
def test_unknown_architecture_raises_value_error(source: str, target: str) -> None:
    with pytest.raises(ValueError):
        recommend(source, target)


# --------------------------------------------------------------------------- ServiceRegistry


def _definition(
    name: str,
    architecture: str,
    patterns: tuple[PatternType, ...] = (),
    dependencies: tuple[tuple[str, DependencyType], ...] = (),
) -> ServiceDefinition:
    return ServiceDefinition(
        name=name,
        architecture=Architecture(architecture),
        base_url=f"http://{name}.local",
        version="v1",
        integration_patterns=tuple(IntegrationPattern(type=p) for p in patterns),
        dependencies=tuple(ServiceDependency(service=s, type=t) for s, t in dependencies),
    )


@pytest.fixture
def registry() -> ServiceRegistry:
    return ServiceRegistry(
        [
            _definition(
                "orders",
                MS,
                (R, E),
                (
                    ("erp", DependencyType.SYNC),
                    ("erp", DependencyType.BATCH),
                    ("users", DependencyType.ASYNC),
                ),
            ),
            _definition("erp", TM, (R, B, G)),
            _definition("users", MS, (R, G, E, W)),
            _definition("reports", MM, (B,)),
        ]
    )


def test_registry_recommend_uses_the_two_services_architectures(
    registry: ServiceRegistry,
) -> None:
    rec = registry.recommend("orders", "erp", "nightly financial report")

    assert rec == recommend(MS, TM, "nightly financial report")
    assert rec.preferred == (R, B)
    assert rec.rationale == LEGACY_TARGET
    assert rec.for_use_case is B
    assert registry.recommend("erp", "users").rationale == LEGACY_SOURCE
    assert registry.recommend("reports", "orders").preferred == (R, E)


def test_registry_recommend_of_an_unknown_service_raises(registry: ServiceRegistry) -> None:
    with pytest.raises(UnknownServiceError):
        registry.recommend("orders", "ghost")


def test_patterns_between_are_the_targets_patterns_for_the_dependency_types(
    registry: ServiceRegistry,
) -> None:
    # orders -> erp is sync and batch: REST, GraphQL (sync) and batch, in erp's own order.
    assert [p.type for p in registry.patterns_between("orders", "erp")] == [R, B, G]
    # orders -> users is async: events and websocket.
    assert [p.type for p in registry.patterns_between("orders", "users")] == [E, W]


def test_patterns_between_is_empty_without_a_declared_dependency(
    registry: ServiceRegistry,
) -> None:
    assert registry.patterns_between("erp", "orders") == []
    assert registry.patterns_between("orders", "reports") == []


def test_patterns_between_unknown_services_raises(registry: ServiceRegistry) -> None:
    with pytest.raises(UnknownServiceError):
        registry.patterns_between("ghost", "erp")
    with pytest.raises(UnknownServiceError):
        registry.patterns_between("orders", "ghost")


def test_get_of_an_unknown_service_raises_unknown_service_error(
    registry: ServiceRegistry,
) -> None:
    with pytest.raises(UnknownServiceError) as caught:
        registry.get("ghost")

    assert caught.value.service == "ghost"
    assert isinstance(caught.value, NotFoundError)
    assert "ghost" in str(caught.value)
    assert registry.find("ghost") is None
    assert "ghost" not in registry


def test_registry_lists_names_sorted_and_iterates_in_that_order(
    registry: ServiceRegistry,
) -> None:
    assert registry.names() == ["erp", "orders", "reports", "users"]
    assert [d.name for d in registry] == registry.names()
    assert len(registry) == 4
    assert "erp" in registry
    assert registry.get("erp").architecture is Architecture.TRADITIONAL_MONOLITH


def test_registering_a_name_again_replaces_it(registry: ServiceRegistry) -> None:
    registry.register(_definition("erp", MM))

    assert len(registry) == 4
    assert registry.get("erp").architecture is Architecture.MODULAR_MONOLITH


def test_with_base_url_points_a_service_elsewhere(registry: ServiceRegistry) -> None:
    before = registry.get("users")

    updated = registry.with_base_url("users", "http://127.0.0.1:9999/")

    assert updated.base_url == "http://127.0.0.1:9999"
    assert registry.get("users") == updated
    assert updated.model_copy(update={"base_url": before.base_url}) == before
    assert before.base_url == "http://users.local"  # the old definition is untouched


def test_with_base_url_of_an_unknown_service_raises(registry: ServiceRegistry) -> None:
    with pytest.raises(UnknownServiceError):
        registry.with_base_url("ghost", "http://x")
