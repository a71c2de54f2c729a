"""What a service definition may not hold: resilience numbers the guards cannot work with,
and base URLs a call cannot be sent to as they are."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import pydantic
import pytest

from hybridmesh.registry import inspect_definitions, load_definitions
from hybridmesh.resilience import ResilienceOverrides

SERVICE = """\
name: svc-a
architecture: microservice
version: v1
base_url: {url}
"""


def write(folder: Path, text: str) -> Path:
    path = folder / "service.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(path: Path) -> list[str]:
    return [str(problem) for problem in inspect_definitions(path).errors]


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("rate_limit: .inf", "rate_limit", "must be a finite number"),
        ("rate_limit: .nan", "rate_limit", "must be a finite number"),
        ("rate_limit: 0", "rate_limit", "must be more than 0"),
        ("rate_limit: 1e9", "rate_limit", "must be at most 1e+06 per second"),
        ("timeout: .inf", "timeout", "must be a finite number"),
        ("timeout: 99999999999999999999999", "timeout", "must be at most 86400 seconds (one day)"),
        ("deadline: .nan", "deadline", "must be a finite number"),
        ("retries: 99999999999999999999", "retries", "must be at most 99"),
        ("backoff_initial: -.inf", "backoff_initial", "must be a finite number"),
        ("backoff_max: 1e300", "backoff_max", "must be at most 86400 seconds (one day)"),
        ("failure_rate_threshold: .nan", "failure_rate_threshold", "must be a finite number"),
        ("slow_call_duration: .inf", "slow_call_duration", "must be a finite number"),
        ("minimum_calls: 10000000", "minimum_calls", "must be at most 1000000"),
        ("window_size: 99999999999999999999", "window_size", "must be at most 1000000"),
        ("wait_in_open: .inf", "wait_in_open", "must be a finite number"),
        ("max_concurrent: 0", "max_concurrent", "must be at least 1"),
        ("max_wait: .inf", "max_wait", "must be a finite number"),
        ("burst: 99999999999999999999", "burst", "must be at most 1000000"),
    ],
)
def test_resilience_numbers_out_of_bounds_name_file_line_and_field(
    tmp_path: Path, line: str, field: str, message: str
) -> None:
    path = write(tmp_path, SERVICE.format(url="http://svc-a.local") + f"resilience:\n  {line}\n")

    assert errors_of(path) == [f"{path}:6: error [resilience.{field}]: {message}"]


def test_the_reference_resilience_settings_are_within_bounds() -> None:
    reference = Path(__file__).resolve().parents[3] / "examples" / "tanqory" / "services"

    assert inspect_definitions(reference).errors == []


@pytest.mark.parametrize(
    "knobs",
    [{"rate_limit": math.inf}, {"timeout": math.nan}, {"retries": 10**20}, {"burst": 0}],
)
def test_overrides_built_in_python_are_refused_too(knobs: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        ResilienceOverrides(**knobs)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://a b/", "'http://a b/' is not an http(s) URL: it contains ' '"),
        ("http://a\tb/", "it contains '\\t'"),
        ("http://host/\x7f", "it contains '\\x7f'"),
        ("http://host\\evil/", "it contains '\\\\'"),
        ("http://host/?x=1", "a URL here has no query or fragment"),
        ("http://host/#top", "a URL here has no query or fragment"),
        ("http://host/api?", "a URL here has no query or fragment"),
        ("http://host/api/../admin", "its path has a '.' or '..' segment"),
        ("http://host/%2e%2e/admin", "its path has a '.' or '..' segment"),
        ("http://host:0/", "port 0 is not a port a service listens on"),
        ("http://host:99999/", "its host or port is malformed"),
        ("http://[::1/", "its host or port is malformed"),
        ("file:///etc/passwd", "is not an http(s) URL with a host"),
    ],
)
def test_a_base_url_that_a_call_cannot_use_as_it_is_is_refused(
    tmp_path: Path, url: str, shown: str
) -> None:
    path = write(tmp_path, SERVICE.format(url=json.dumps(url)))

    (error,) = errors_of(path)
    assert error.startswith(f"{path}:4: error [base_url]: ")
    assert shown in error


def test_a_base_url_with_credentials_is_refused_without_repeating_them(tmp_path: Path) -> None:
    path = write(tmp_path, SERVICE.format(url="http://admin:s3cr3t@erp.internal/api"))

    assert errors_of(path) == [
        f"{path}:4: error [base_url]: http://…@erp.internal: a URL here carries no user or password"
    ]


@pytest.mark.parametrize(
    "url",
    ["http://svc-a.local", "https://a.b:8443/api/v1/", "http://127.0.0.1:8080", "http://[::1]:80"],
)
def test_well_formed_base_urls_load(tmp_path: Path, url: str) -> None:
    (definition,) = load_definitions(write(tmp_path, SERVICE.format(url=url))).definitions()

    assert definition.base_url == url.rstrip("/")
