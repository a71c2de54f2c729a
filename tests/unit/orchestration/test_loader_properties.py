"""Properties of the saga and workflow loader on any file: it answers with definitions or
with errors at the file (and the line, where known), each on one line, and never raises
anything else."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.core.yaml_trees import Model, documents

from hybridmesh.core.yaml_source import YamlLimits
from hybridmesh.orchestration.loader import load_definitions
from hybridmesh.registry import ServiceRegistry

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "tanqory"
LIMITS = YamlLimits(max_nodes=80, max_depth=6)
PROPERTY = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

FIELDS = (
    "saga_type",
    "sagaType",
    "workflow_id",
    "steps",
    "sagas",
    "workflows",
    "step_id",
    "stepId",
    "service_name",
    "operation",
    "payload",
    "timeout",
    "retry_policy",
    "max_attempts",
    "dependencies",
    "service_info",
)
VALUES = ("order", "user-service", "reserve", "a", "b", "{{ input.id }}", 1000, 3)


@pytest.fixture(scope="module")
def registry() -> ServiceRegistry:
    return ServiceRegistry.from_path(EXAMPLES / "services")


def check(data: str | bytes, registry: ServiceRegistry | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "definitions.yaml"
        path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)

        result = load_definitions(path, registry=registry, limits=LIMITS)

        for problem in result.errors + result.warnings:
            assert problem.file == str(path), problem
            assert problem.line is None or problem.line >= 1
            assert "\n" not in str(problem)
        assert result.errors or result.definitions
        for loaded in result.definitions:
            assert loaded.file == str(path)
            assert loaded.line >= 1
            assert loaded.line_of("steps", 0, "timeout") >= loaded.line


@PROPERTY
@given(data=st.binary(max_size=300))
def test_any_bytes_give_definitions_or_errors_at_the_file(data: bytes) -> None:
    check(data, None)


@PROPERTY
@given(text=st.text(max_size=300))
def test_any_text_gives_definitions_or_errors_at_the_file(text: str) -> None:
    check(text, None)


@PROPERTY
@given(model=documents(keys=FIELDS, values=VALUES))
def test_definition_like_yaml_gives_definitions_or_errors_at_the_file(
    model: Model, registry: ServiceRegistry
) -> None:
    check(model.text, registry)
