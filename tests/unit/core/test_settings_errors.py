"""Settings that do not validate, and how errors embed each other without saying "error"
twice."""

from __future__ import annotations

import pytest

from hybridmesh.core.errors import (
    ConfigurationError,
    InvalidSettingError,
    Problem,
    ValidationError,
    exit_code_for,
)
from hybridmesh.core.settings import env_name, get_settings


def test_a_bad_environment_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDMESH_HTTP_PORT", "eighty")
    monkeypatch.setenv("HYBRIDMESH_HTTP_HEADER_TIMEOUT", "0")

    with pytest.raises(InvalidSettingError) as raised:
        get_settings()

    fields = sorted(p.field or "" for p in raised.value.problems)
    assert fields == ["HYBRIDMESH_HTTP_HEADER_TIMEOUT", "HYBRIDMESH_HTTP_PORT"]
    assert exit_code_for(raised.value) == 2


def test_environment_names_of_fields() -> None:
    assert env_name("database_url") == "HYBRIDMESH_DATABASE_URL"
    assert env_name("otel_exporter") == "HYBRIDMESH_OTEL_EXPORTER"
    assert env_name("otel_traces_sampler") == "OTEL_TRACES_SAMPLER"


def test_an_invalid_setting_is_configuration_and_validation_and_can_name_its_source() -> None:
    error = InvalidSettingError("bad database URL 'sqlite://': the SQLite path is empty")
    named = error.for_setting("--database-url")
    assert isinstance(named, ConfigurationError) and isinstance(named, ValidationError)
    assert str(named) == (
        "error [--database-url]: bad database URL 'sqlite://': the SQLite path is empty"
    )


def test_a_validation_error_embedded_in_another_message_says_error_once() -> None:
    error = ValidationError(
        [Problem("not JSON", field="payload"), Problem("too long", file="a.yaml", line=3)]
    )
    assert str(error) == "error [payload]: not JSON\na.yaml:3: error: too long"
    assert error.reason == "payload: not JSON; a.yaml:3: too long"


def test_a_redis_url_must_name_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDMESH_REDIS_URL", "http://:secret@cache:6379")
    with pytest.raises(InvalidSettingError) as raised:
        get_settings()
    [problem] = raised.value.problems
    assert problem.field == "HYBRIDMESH_REDIS_URL"
    assert "secret" not in str(raised.value)
    for good in ("redis://cache:6379/1", "rediss://:pw@cache:6380/0", "unix:///run/redis.sock"):
        monkeypatch.setenv("HYBRIDMESH_REDIS_URL", good)
        assert get_settings().redis_url == good
