"""Properties of the service registry loader on any file: it answers with services or with
errors at the file (and the line, where known), each on one line; it never raises anything
else, and what it accepts is bounded by the reader's limits."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.core.yaml_trees import Model, documents

from hybridmesh.core.errors import ValidationError
from hybridmesh.core.yaml_source import YamlLimits
from hybridmesh.registry import inspect_definitions, load_definitions

LIMITS = YamlLimits(max_nodes=80, max_depth=6)
PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELDS = (
    "name",
    "architecture",
    "base_url",
    "version",
    "services",
    "dependencies",
    "consumers",
    "service",
    "type",
    "capabilities",
    "resilience",
)
VALUES = (
    "svc-a",
    "svc-b",
    "microservice",
    "serverless",
    "http://a.local:8080",
    "v1",
    "sync",
    "async",
    "*",
)


def check(data: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "services.yaml"
        path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)

        result = inspect_definitions(path, limits=LIMITS)

        for problem in result.errors + result.warnings:
            assert problem.file == str(path), problem
            assert problem.line is None or problem.line >= 1
            assert "\n" not in str(problem)
        if result.errors:
            try:
                load_definitions(path, limits=LIMITS)
            except ValidationError as refused:
                assert refused.problems == result.errors
            else:
                raise AssertionError("load_definitions accepted what inspection refused")
        else:
            assert result.services
            assert len(result.services) <= LIMITS.max_nodes


@PROPERTY
@given(data=st.binary(max_size=300))
def test_any_bytes_give_services_or_errors_at_the_file(data: bytes) -> None:
    check(data)


@PROPERTY
@given(text=st.text(max_size=300))
def test_any_text_gives_services_or_errors_at_the_file(text: str) -> None:
    check(text)


@PROPERTY
@given(model=documents(keys=FIELDS, values=VALUES))
def test_service_like_yaml_gives_services_or_errors_at_the_file(model: Model) -> None:
    check(model.text)
