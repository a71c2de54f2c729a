"""Versioned plans in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hybridmesh.core.clock import FakeClock
from hybridmesh.core.errors import NotFoundError, ValidationError
from hybridmesh.core.serialization import dumps
from hybridmesh.orchestration.catalog import (
    CatalogEntry,
    DefinitionCatalog,
    RetiredVersionError,
    UnrunnableDefinitionError,
    plan_digest,
)
from hybridmesh.orchestration.definitions import (
    SagaDefinition,
    SagaStep,
    to_plan,
)
from hybridmesh.orchestration.loader import load_definitions
from hybridmesh.orchestration.plan import Kind, Plan, RetrySpec
from hybridmesh.registry import ServiceRegistry

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "tanqory"


@pytest.fixture(scope="module")
def registry() -> ServiceRegistry:
    return ServiceRegistry.from_path(EXAMPLES / "services")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def catalog(store: Any, clock: FakeClock) -> DefinitionCatalog:
    return DefinitionCatalog(store, clock=clock)


def order_saga(timeout: int = 5000, **payload: Any) -> Plan:
    steps = (
        SagaStep(
            "validate-user", "user-service", "validate-user", payload=payload, timeout=timeout
        ),
        SagaStep(
            "reserve-inventory",
            "inventory-management",
            "reserve-items",
            compensation_operation="release-items",
        ),
    )
    return to_plan(SagaDefinition("order-processing", steps))


async def test_the_first_registration_is_version_1_and_reads_back_equal(
    catalog: DefinitionCatalog,
) -> None:
    plan = order_saga(user_id="{{ input.customer_id }}")

    stored = await catalog.register(plan)

    assert stored == plan
    assert stored.version == 1
    assert await catalog.get(Kind.SAGA, "order-processing") == plan
    assert await catalog.get("saga", "order-processing", 1) == plan


async def test_registering_the_same_content_again_keeps_the_version(
    store: Any, catalog: DefinitionCatalog
) -> None:
    await catalog.register(order_saga())

    again = await catalog.register(replace(order_saga(), version=9))

    assert again.version == 1
    assert await store.fetch_value("SELECT COUNT(*) FROM orch_definitions") == 1


async def test_a_changed_definition_gets_the_next_version_and_old_ones_stay_readable(
    store: Any, catalog: DefinitionCatalog
) -> None:
    first = await catalog.register(order_saga(timeout=5000))
    second = await catalog.register(order_saga(timeout=8000))
    third = await catalog.register(order_saga(timeout=5000))

    assert [first.version, second.version, third.version] == [1, 2, 3]
    assert (await catalog.get(Kind.SAGA, "order-processing")).steps[0].timeout_ms == 5000
    assert (await catalog.get(Kind.SAGA, "order-processing", 2)).steps[0].timeout_ms == 8000
    fresh = DefinitionCatalog(store)  # another process: nothing in memory
    assert await fresh.get(Kind.SAGA, "order-processing", 1) == first
    assert await fresh.get(Kind.SAGA, "order-processing", 2) == second
    assert (await fresh.get(Kind.SAGA, "order-processing")).version == 3


async def test_the_order_payload_keys_are_written_in_makes_no_new_version(
    catalog: DefinitionCatalog,
) -> None:
    one = order_saga(a=1, b={"x": 1, "y": 2})
    other = order_saga(b={"y": 2, "x": 1}, a=1)

    assert plan_digest(one) == plan_digest(other)
    assert plan_digest(one) == plan_digest(replace(one, version=5))
    assert plan_digest(one) != plan_digest(order_saga(a=2, b={"x": 1, "y": 2}))
    assert (await catalog.register(one)).version == 1
    assert (await catalog.register(other)).version == 1


async def test_an_explicit_version_is_stored_as_given(catalog: DefinitionCatalog) -> None:
    await catalog.register(order_saga(timeout=5000))

    pinned = await catalog.register(
        replace(order_saga(timeout=8000), version=5), explicit_version=True
    )

    assert pinned.version == 5
    assert [e.version for e in await catalog.versions(Kind.SAGA, "order-processing")] == [1, 5]
    same = await catalog.register(
        replace(order_saga(timeout=8000), version=5), explicit_version=True
    )
    assert same.version == 5
    assert (await catalog.register(order_saga(timeout=8000))).version == 5


async def test_an_explicit_version_with_other_content_must_be_bumped(
    catalog: DefinitionCatalog,
) -> None:
    await catalog.register(replace(order_saga(timeout=5000), version=2), explicit_version=True)

    with pytest.raises(ValidationError) as caught:
        await catalog.register(replace(order_saga(timeout=8000), version=2), explicit_version=True)

    assert str(caught.value) == (
        "error [version]: saga 'order-processing' version 2 is already registered with other "
        "content; give the changed definition a new version (the newest is 2)"
    )
    assert (await catalog.get(Kind.SAGA, "order-processing", 2)).steps[0].timeout_ms == 5000


async def test_an_explicit_version_older_than_the_newest_is_refused(
    catalog: DefinitionCatalog,
) -> None:
    await catalog.register(order_saga(timeout=5000))
    await catalog.register(replace(order_saga(timeout=6000), version=5), explicit_version=True)

    with pytest.raises(ValidationError) as caught:
        await catalog.register(replace(order_saga(timeout=7000), version=3), explicit_version=True)

    assert str(caught.value) == (
        "error [version]: saga 'order-processing' version 3 is older than the newest "
        "registered version, 5; give it version 6 or more"
    )
    assert [e.version for e in await catalog.versions(Kind.SAGA, "order-processing")] == [1, 5]


async def test_get_names_what_is_missing(catalog: DefinitionCatalog) -> None:
    async def missing(kind: Kind, version: int | None = None) -> str:
        with pytest.raises(NotFoundError) as caught:
            await catalog.get(kind, "order-processing", version)
        return str(caught.value)

    assert await missing(Kind.SAGA) == "no saga 'order-processing' in the catalog"
    await catalog.register(order_saga())
    await catalog.register(order_saga(timeout=1))
    assert await missing(Kind.SAGA, 4) == "saga 'order-processing' has no version 4 (it has 1, 2)"
    assert await missing(Kind.WORKFLOW, 1) == "no workflow 'order-processing' in the catalog"


async def test_list_and_versions_describe_each_stored_version(
    catalog: DefinitionCatalog, clock: FakeClock, registry: ServiceRegistry
) -> None:
    load = load_definitions(EXAMPLES / "definitions", registry=registry).raise_for_errors()
    for loaded in load.definitions:
        await catalog.register_definition(
            loaded.definition, registry=registry, source=loaded.source
        )
        clock.advance(60)
    newer = await catalog.register(order_saga(), source="by hand")

    entries = await catalog.list()

    assert [(e.kind, e.name, e.version) for e in entries] == [
        (Kind.SAGA, "order-processing", 1),
        (Kind.SAGA, "order-processing", 2),
        (Kind.WORKFLOW, "data-analytics-pipeline", 1),
        (Kind.WORKFLOW, "user-onboarding", 1),
    ]
    by_key = {(e.kind, e.name, e.version): e for e in entries}
    saga_v1 = by_key[(Kind.SAGA, "order-processing", 1)]
    order_file = next(d for d in load.definitions if d.name == "order-processing")
    assert saga_v1 == CatalogEntry(
        kind=Kind.SAGA,
        name="order-processing",
        version=1,
        digest=plan_digest(to_plan(order_file.definition, registry=registry)),
        created_at=datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
        source=order_file.source,
    )
    assert by_key[(Kind.SAGA, "order-processing", 2)].source == "by hand"
    assert by_key[(Kind.SAGA, "order-processing", 2)].digest == plan_digest(newer)
    assert await catalog.versions(Kind.SAGA, "order-processing") == entries[:2]
    assert await catalog.versions(Kind.WORKFLOW, "nope") == []


async def test_reference_definitions_are_stored_as_their_plans(
    catalog: DefinitionCatalog, store: Any, registry: ServiceRegistry
) -> None:
    load = load_definitions(EXAMPLES / "definitions", registry=registry).raise_for_errors()

    for loaded in load.definitions:
        plan = to_plan(loaded.definition, registry=registry)
        assert await catalog.register_definition(loaded.definition, registry=registry) == plan
        assert await DefinitionCatalog(store).get(plan.kind, plan.name) == plan


async def test_register_definition_pins_the_version_a_definition_sets(
    catalog: DefinitionCatalog,
) -> None:
    steps = (SagaStep("a", "user-service", "validate-user"),)

    pinned = await catalog.register_definition(SagaDefinition("s", steps, version=3))
    numbered = await catalog.register_definition(
        SagaDefinition("s", (replace(steps[0], timeout=1000),))
    )

    assert (pinned.version, numbered.version) == (3, 4)
    with pytest.raises(ValidationError, match="version 3 is already registered"):
        await catalog.register_definition(
            SagaDefinition("s", (replace(steps[0], timeout=2000),), version=3)
        )


async def test_register_definition_refuses_an_invalid_definition(
    catalog: DefinitionCatalog, registry: ServiceRegistry
) -> None:
    steps = (SagaStep("a", "billing", "charge"),)

    with pytest.raises(ValidationError, match="unknown service 'billing'"):
        await catalog.register_definition(SagaDefinition("s", steps), registry=registry)

    assert await catalog.list() == []


async def test_concurrent_registrations_of_one_change_agree_on_its_version(
    store: Any, database_url: str
) -> None:
    from hybridmesh.store import open_store

    await DefinitionCatalog(store).register(order_saga(timeout=5000))
    other_store = await open_store(database_url)
    try:
        catalogs = [DefinitionCatalog(store), DefinitionCatalog(other_store)] * 3
        changed = order_saga(timeout=9000)

        results = await asyncio.gather(*(c.register(changed) for c in catalogs))
    finally:
        await other_store.close()

    assert {plan.version for plan in results} == {2}
    assert await store.fetch_value("SELECT COUNT(*) FROM orch_definitions") == 2


# ----------------------------------------------------- what is stored, what starts, retiring


async def test_a_plan_that_would_not_come_back_from_the_store_is_not_stored(
    store: Any, catalog: DefinitionCatalog
) -> None:
    good = order_saga()
    infinite = replace(good.steps[0], retry=RetrySpec(max_attempts=2, multiplier=math.inf))
    huge = replace(good.steps[0], timeout_ms=10**12)

    for broken in (infinite, huge):
        with pytest.raises(ValidationError) as refused:
            await catalog.register(replace(good, steps=(broken, *good.steps[1:])))
        assert "saga 'order-processing': would not run as stored" in str(refused.value)
    assert await store.fetch_value("SELECT COUNT(*) FROM orch_definitions") == 0


async def store_broken_version(store: Any, plan: Plan, version: int) -> None:
    """Store ``plan`` as ``version`` with an infinite multiplier, as JSON wrote it (null),
    the way a release that did not check plans could have."""
    body = plan.to_dict()
    body["version"] = version
    body["steps"][0]["retry"]["multiplier"] = None
    await store.execute(
        "INSERT INTO orch_definitions (kind, name, version, digest, body, source, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        "saga",
        plan.name,
        version,
        "old",
        dumps(body),
        "old.yaml:1",
        0.0,
    )


async def test_a_stored_version_that_cannot_run_is_named_with_its_fields(
    store: Any, catalog: DefinitionCatalog
) -> None:
    first = await catalog.register(order_saga())
    await store_broken_version(store, first, 2)

    with pytest.raises(UnrunnableDefinitionError) as refused:
        await catalog.to_start(Kind.SAGA, "order-processing")

    assert str(refused.value) == (
        "saga 'order-processing' version 2 cannot run: [steps[0].retry.multiplier] must be a "
        "number; retire it (hybridmesh definitions retire order-processing --version 2) and "
        "load a fixed definition"
    )
    assert await catalog.get(Kind.SAGA, "order-processing", 1) == first


async def test_a_retired_version_starts_nothing_and_the_newest_live_one_starts_instead(
    store: Any, catalog: DefinitionCatalog, clock: FakeClock
) -> None:
    first = await catalog.register(order_saga())
    await store_broken_version(store, first, 2)
    other = DefinitionCatalog(store)  # another process, which has seen version 2 as newest
    with pytest.raises(UnrunnableDefinitionError):
        await other.to_start(Kind.SAGA, "order-processing")

    entry = await catalog.retire(Kind.SAGA, "order-processing", 2)

    assert (entry.version, entry.retired_at) == (2, clock.now())
    assert (await catalog.to_start(Kind.SAGA, "order-processing")).version == 1
    assert (await catalog.get(Kind.SAGA, "order-processing")).version == 1
    with pytest.raises(RetiredVersionError, match="version 2 is retired"):
        await catalog.to_start(Kind.SAGA, "order-processing", 2)
    other.newest_ttl = 0.0
    assert (await other.to_start(Kind.SAGA, "order-processing")).version == 1
    again = await catalog.retire(Kind.SAGA, "order-processing", 2)
    assert again.retired_at == entry.retired_at
    listed = {e.version: e.retired_at for e in await catalog.list()}
    assert listed == {1: None, 2: entry.retired_at}
    with pytest.raises(NotFoundError, match="has no version 3"):
        await catalog.retire(Kind.SAGA, "order-processing", 3)


async def test_a_retired_version_keeps_running_what_it_started(catalog: DefinitionCatalog) -> None:
    first = await catalog.register(order_saga())
    await catalog.retire(Kind.SAGA, "order-processing", 1)

    assert await catalog.get(Kind.SAGA, "order-processing", 1) == first
    with pytest.raises(RetiredVersionError, match="every version of saga 'order-processing'"):
        await catalog.to_start(Kind.SAGA, "order-processing")


async def test_registering_what_a_retired_version_holds_makes_a_new_version(
    catalog: DefinitionCatalog,
) -> None:
    await catalog.register(order_saga())
    await catalog.retire(Kind.SAGA, "order-processing", 1)

    again = await catalog.register(order_saga())

    assert again.version == 2
    assert (await catalog.to_start(Kind.SAGA, "order-processing")).version == 2
    with pytest.raises(ValidationError, match="version 1 is retired"):
        await catalog.register(replace(order_saga(), version=1), explicit_version=True)
