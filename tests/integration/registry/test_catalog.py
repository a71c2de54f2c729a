"""The registry saved in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hybridmesh.core.errors import StoreError, UnknownServiceError
from hybridmesh.core.names import MAX_NAME_LENGTH
from hybridmesh.registry import (
    Architecture,
    RegistryCatalog,
    ServiceDefinition,
    ServiceRegistry,
    load_definitions,
)

REFERENCE = Path(__file__).resolve().parents[3] / "examples" / "tanqory" / "services"


@pytest.fixture(scope="module")
def reference() -> list[ServiceDefinition]:
    definitions = load_definitions(REFERENCE).definitions()
    assert len(definitions) == 14
    return definitions


@pytest.fixture
def catalog(store: Any) -> RegistryCatalog:
    return RegistryCatalog(store)


def by_name(definitions: list[ServiceDefinition]) -> list[ServiceDefinition]:
    return sorted(definitions, key=lambda d: d.name)


async def test_an_empty_store_lists_nothing(catalog: RegistryCatalog) -> None:
    assert await catalog.list() == []
    assert len(await catalog.registry()) == 0


async def test_saved_reference_services_list_back_by_name_equal_to_the_originals(
    catalog: RegistryCatalog, reference: list[ServiceDefinition]
) -> None:
    count = await catalog.save(reference, source=str(REFERENCE))

    listed = await catalog.list()

    assert count == 14
    assert [d.name for d in listed] == sorted(d.name for d in reference)
    assert listed == by_name(reference)
    for saved, original in zip(listed, by_name(reference), strict=True):
        assert saved.model_dump() == original.model_dump()


async def test_round_trip_keeps_resilience_overrides_patterns_and_implementation(
    catalog: RegistryCatalog, reference: list[ServiceDefinition]
) -> None:
    await catalog.save(reference)

    erp = await catalog.get("legacy-erp")
    original = next(d for d in reference if d.name == "legacy-erp")

    assert erp == original
    assert erp.resilience is not None
    assert erp.resilience == original.resilience
    assert erp.resilience.max_concurrent == 4
    assert erp.resilience.wait_in_open == 60
    assert erp.integration_patterns[1].implementation["schedule"] == "Cron-based batch jobs"
    assert erp.lifecycle == "deprecated"
    assert [c.service for c in erp.consumers] == [c.service for c in original.consumers]


async def test_saved_columns_summarise_the_definition(
    store: Any, catalog: RegistryCatalog, reference: list[ServiceDefinition]
) -> None:
    await catalog.save(reference, source="services/")

    row = await store.fetch_one(
        "SELECT architecture, version, base_url, owner, lifecycle, source FROM services "
        "WHERE name = ?",
        "legacy-erp",
    )

    assert row == {
        "architecture": "traditional-monolith",
        "version": "v1",
        "base_url": "https://internal.tanqory.com/erp",
        "owner": "erp-team",
        "lifecycle": "deprecated",
        "source": "services/",
    }


async def test_get_returns_one_saved_service(
    catalog: RegistryCatalog, reference: list[ServiceDefinition]
) -> None:
    await catalog.save(reference)

    for original in reference:
        assert await catalog.get(original.name) == original


async def test_get_of_an_unknown_service_raises(
    catalog: RegistryCatalog, reference: list[ServiceDefinition]
) -> None:
    await catalog.save(reference)

    with pytest.raises(UnknownServiceError) as caught:
        await catalog.get("nope")

    assert caught.value.service == "nope"


async def test_saving_again_updates_in_place(
    store: Any, catalog: RegistryCatalog, reference: list[ServiceDefinition]
) -> None:
    await catalog.save(reference)
    user = await catalog.get("user-service")
    changed = user.model_copy(update={"version": "v9", "base_url": "http://127.0.0.1:9000"})

    count = await catalog.save([changed], source="patch.yaml")

    assert count == 1
    assert await catalog.get("user-service") == changed
    assert len(await catalog.list()) == 14
    row = await store.fetch_one(
        "SELECT version, base_url, source FROM services WHERE name = ?", "user-service"
    )
    assert row == {"version": "v9", "base_url": "http://127.0.0.1:9000", "source": "patch.yaml"}
    assert await store.fetch_value("SELECT COUNT(*) FROM services") == 14


async def test_saving_the_same_definitions_twice_changes_nothing(
    catalog: RegistryCatalog, reference: list[ServiceDefinition]
) -> None:
    await catalog.save(reference)
    await catalog.save(reference)

    assert await catalog.list() == by_name(reference)


async def test_replace_removes_services_that_are_not_saved_again(
    catalog: RegistryCatalog, reference: list[ServiceDefinition]
) -> None:
    await catalog.save(reference)
    keep = [d for d in reference if d.name in ("legacy-erp", "order-processing")]

    count = await catalog.save(keep, replace=True)

    assert count == 2
    assert [d.name for d in await catalog.list()] == ["legacy-erp", "order-processing"]
    with pytest.raises(UnknownServiceError):
        await catalog.get("user-service")


async def test_without_replace_other_services_stay(
    catalog: RegistryCatalog, reference: list[ServiceDefinition]
) -> None:
    await catalog.save(reference)

    await catalog.save(reference[:1])

    assert len(await catalog.list()) == 14


async def test_replace_with_nothing_empties_the_catalog(
    catalog: RegistryCatalog, reference: list[ServiceDefinition]
) -> None:
    await catalog.save(reference)

    assert await catalog.save([], replace=True) == 0
    assert await catalog.list() == []


async def test_remove_deletes_one_service_and_reports_whether_it_existed(
    catalog: RegistryCatalog, reference: list[ServiceDefinition]
) -> None:
    await catalog.save(reference)

    assert await catalog.remove("shipping-service") is True
    assert await catalog.remove("shipping-service") is False
    assert await catalog.remove("nope") is False

    names = [d.name for d in await catalog.list()]
    assert "shipping-service" not in names
    assert len(names) == 13
    with pytest.raises(UnknownServiceError):
        await catalog.get("shipping-service")


async def test_registry_from_the_catalog_answers_like_the_yaml_one(
    catalog: RegistryCatalog, reference: list[ServiceDefinition]
) -> None:
    await catalog.save(reference)

    stored = await catalog.registry()
    from_yaml = ServiceRegistry(reference)

    assert stored.names() == from_yaml.names()
    assert [p.type for p in stored.patterns_between("order-processing", "legacy-erp")] == [
        p.type for p in from_yaml.patterns_between("order-processing", "legacy-erp")
    ]
    assert stored.recommend("order-processing", "legacy-erp") == from_yaml.recommend(
        "order-processing", "legacy-erp"
    )


async def test_a_name_of_the_longest_length_saves_and_reads_back(catalog: RegistryCatalog) -> None:
    longest = ServiceDefinition(
        name="n" * MAX_NAME_LENGTH,
        architecture=Architecture.MICROSERVICE,
        base_url="http://127.0.0.1:9000",
        version="v1",
    )

    await catalog.save([longest])

    assert await catalog.get(longest.name) == longest
    assert await catalog.list() == [longest]


async def test_a_stored_service_whose_name_breaks_the_rule_is_a_one_line_store_error(
    store: Any, catalog: RegistryCatalog
) -> None:
    # Saved before names were capped: the row is there, its definition no longer validates.
    name = "m" * 100
    definition = {"name": name, "architecture": "microservice", "base_url": "http://x"}
    await store.execute(
        "INSERT INTO services (name, architecture, version, base_url, owner, lifecycle, "
        "definition, source, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        name, "microservice", "v1", "http://x", "team", "production",
        json.dumps({**definition, "version": "v1"}), None, "2024-01-01T00:00:00+00:00",
    )  # fmt: skip

    for read in (catalog.list(), catalog.get(name)):
        with pytest.raises(StoreError) as raised:
            await read
        message = str(raised.value)
        assert "\n" not in message
        assert "it has 100 characters, more than 63" in message
        assert "hybridmesh registry load" in message
