"""Defining projections: names, patterns, import paths, loading by import path, and how a
gap in the log is described. No database needed."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from hybridmesh.core.errors import ConfigurationError, ValidationError
from hybridmesh.data.projections import (
    MAX_PROJECTION_NAME,
    Gap,
    Projection,
    ProjectionGapError,
    load_projection,
)
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.memory import MemoryEventBackend
from hybridmesh.store import Transaction


async def nothing(tx: Transaction) -> None:
    return None


async def ignore(tx: Transaction, event: CloudEvent) -> None:
    return None


def make(name: str = "orders", pattern: str = "erp.orders.*", **options: Any) -> Projection:
    return Projection(name, pattern, apply=ignore, setup=nothing, reset=nothing, **options)


def test_a_projection_consumes_as_a_group_named_after_it() -> None:
    assert make("order-totals").group == "projection-order-totals"
    longest = "p" * MAX_PROJECTION_NAME
    assert len(make(longest).group) == 63


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("Orders", "use lower case"),
        ("p" * (MAX_PROJECTION_NAME + 1), "projection-<name> is a name"),
        ("", "empty"),
    ],
)
def test_a_name_that_cannot_be_a_group_is_refused_with_the_rule(name: str, says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        make(name)
    assert says in str(refused.value)
    assert refused.value.problems[0].field == "name"


def test_a_pattern_that_is_not_a_subject_pattern_is_refused() -> None:
    with pytest.raises(ValidationError):
        make(pattern="erp..orders")


def test_a_projection_must_be_opened_before_it_consumes() -> None:
    with pytest.raises(ConfigurationError, match="open"):
        make().attach(EventBus(MemoryEventBackend()))


def test_the_import_path_is_as_given_else_unknown_when_made_in_a_function() -> None:
    assert make(import_path="myapp.read_models:orders").import_path == "myapp.read_models:orders"
    assert make().import_path is None


@pytest.fixture
def read_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of projections on the import path: one object, one factory, and a name
    that is not a projection."""
    module = f"read_models_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from hybridmesh.data.projections import Projection

            async def nothing(tx):
                return None

            async def ignore(tx, event):
                return None

            def build():
                return Projection(
                    "built", "erp.*", apply=ignore, setup=nothing, reset=nothing
                )

            orders = Projection("orders", "erp.orders.*", apply=ignore, setup=nothing,
                                reset=nothing)
            NOT_ONE = 42
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return module


def test_a_projection_is_loaded_from_its_module_or_made_by_a_factory(read_models: str) -> None:
    orders = load_projection(f"{read_models}:orders")
    assert orders.name == "orders"
    assert orders.import_path == f"{read_models}:orders"  # found where it is bound
    built = load_projection(f"{read_models}:build")
    assert built.name == "built"
    assert built.import_path == f"{read_models}:build"  # the factory makes it again


@pytest.mark.parametrize(
    ("attribute", "says"),
    [
        ("NOT_ONE", "is a int, not a hybridmesh Projection"),
        ("missing", "has no 'missing'"),
    ],
)
def test_loading_something_else_says_what_it_found(
    read_models: str, attribute: str, says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        load_projection(f"{read_models}:{attribute}")


@pytest.mark.parametrize("path", ["no_such_module_here:orders", "orders", ":orders", "module:"])
def test_an_import_path_that_cannot_be_loaded_is_refused(path: str) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot import|MODULE:ATTRIBUTE"):
        load_projection(path)


def test_a_gap_names_how_many_events_and_which_positions_are_gone() -> None:
    assert Gap(3, 1, 40, 41).describe() == (
        "3 event(s) it applied, at log positions 1 to 40, are gone "
        "(the log's oldest event is now at position 41)"
    )
    assert Gap(1, 7, 7, None).describe() == (
        "1 event(s) it applied, at log position 7, are gone (the log holds no event now)"
    )
    refused = ProjectionGapError("orders", Gap(3, 1, 40, 41))
    assert str(refused).startswith("projection 'orders' cannot be rebuilt from the log: 3 ")
    assert "Nothing was changed" in str(refused) and "--allow-gap" in str(refused)
