"""Settings, read from ``HYBRIDMESH_*`` environment variables.

Every field has a default that is safe for a single machine; the scaled mode changes URLs only.
"""

from __future__ import annotations

from typing import Literal

import pydantic
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.limits import Port, describe

DEFAULT_DATABASE_URL = "sqlite:///.hybridmesh/mesh.db"


class Settings(BaseSettings):
    """Process-wide settings. Construct with keyword arguments to override the environment."""

    model_config = SettingsConfigDict(env_prefix="HYBRIDMESH_", extra="ignore", frozen=True)

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="Where state lives: sqlite:///PATH (default .hybridmesh/mesh.db) or "
        "postgresql://user@host:port/db.",
    )
    events_url: str | None = Field(
        None, description="Event backend: unset for the SQL log in the store, or nats://host:port."
    )
    service_name: str = Field("hybridmesh", description="This process's name in logs and traces.")
    log_level: str = Field("INFO", description="Root log level.")
    log_format: Literal["json", "text"] = Field("json", description="Log line format.")
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        "none", description="Where spans go. 'otlp' sends to otlp_endpoint over HTTP."
    )
    otlp_endpoint: str = Field(
        "http://127.0.0.1:4318/v1/traces", description="OTLP/HTTP traces endpoint."
    )
    # The OpenTelemetry standard names, without this project's prefix.
    otel_traces_sampler: str = Field(
        "parentbased_always_on",
        validation_alias=AliasChoices("otel_traces_sampler"),
        description="OTEL_TRACES_SAMPLER: which spans are recorded (the OpenTelemetry names: "
        "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, "
        "parentbased_traceidratio).",
    )
    otel_traces_sampler_arg: str | None = Field(
        None,
        validation_alias=AliasChoices("otel_traces_sampler_arg"),
        description="OTEL_TRACES_SAMPLER_ARG: the ratio of the *traceidratio samplers, 0 to 1.",
    )
    http_host: str = Field("127.0.0.1", description="Address `hybridmesh serve` binds.")
    http_port: Port = Field(8700, description="Port `hybridmesh serve` binds (0: any free one).")
    registry_path: str | None = Field(
        None, description="Folder or file of service definitions loaded at start, if set."
    )


def read_settings() -> Settings:
    """:class:`Settings` from the environment. Raises
    :class:`~hybridmesh.core.errors.ValidationError` naming each variable whose value is
    wrong (``HYBRIDMESH_HTTP_PORT: must be a whole number``), for a one-line error where
    pydantic would give a report."""
    try:
        return Settings()
    except pydantic.ValidationError as invalid:
        raise ValidationError(
            [Problem(describe(error), field=_variable(error["loc"])) for error in invalid.errors()]
        ) from None


def _variable(loc: tuple[int | str, ...]) -> str | None:
    """The environment variable a field is read from."""
    if not loc:
        return None
    name = str(loc[0])
    known = Settings.model_fields.get(name)
    if known is not None and known.validation_alias is not None:
        return name.upper()  # an OpenTelemetry variable, without this project's prefix
    return f"HYBRIDMESH_{name.upper()}"


def get_settings() -> Settings:
    """Settings from the environment (read each time; cheap, and tests can monkeypatch env)."""
    return Settings()


__all__ = ["DEFAULT_DATABASE_URL", "Settings", "get_settings", "read_settings"]
