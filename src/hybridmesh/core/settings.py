"""Settings, read from ``HYBRIDMESH_*`` environment variables.

Every field has a default that is safe for a single machine; the scaled mode changes URLs only.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hybridmesh.core.errors import InvalidSettingError, Problem
from hybridmesh.core.limits import Port, Seconds, describe

DEFAULT_DATABASE_URL = "sqlite:///.hybridmesh/mesh.db"
_REDIS_SCHEMES = ("redis", "rediss", "unix")


def _redis_url(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in _REDIS_SCHEMES or not rest:
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    return value


RedisUrl = Annotated[str, AfterValidator(_redis_url)]


class Settings(BaseSettings):
    """Process-wide settings. Construct with keyword arguments to override the environment."""

    model_config = SettingsConfigDict(env_prefix="HYBRIDMESH_", extra="ignore", frozen=True)

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="Where state lives: sqlite:///PATH (default .hybridmesh/mesh.db) or "
        "postgresql://user@host:port/db.",
    )
    events_url: str | None = Field(
        None,
        description=(
            "Event backend: unset for the SQL log in the store, nats://host:port, or "
            "kafka://host:9092[,host:9092][?options]."
        ),
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
    redis_url: RedisUrl | None = Field(
        None,
        description="redis://[:password@]host:port/db (or rediss:// for TLS, unix:///path): "
        "the gateway's rate limits are shared across its replicas through it; unset, each "
        "replica counts alone.",
    )
    http_host: str = Field("127.0.0.1", description="Address `hybridmesh serve` binds.")
    http_port: Port = Field(8700, description="Port `hybridmesh serve` binds (0: any free one).")
    http_header_timeout: Seconds = Field(
        10.0,
        description="Seconds a connection to `hybridmesh serve` gets to send a complete "
        "request head, from when it opens or from its previous answer; after that it is "
        "closed, so idle keep-alive connections close after the same time.",
    )
    http_body_timeout: Seconds = Field(
        30.0,
        description="Seconds a request to `hybridmesh serve` gets to send its whole body, once "
        "its head has arrived; after that it is answered 408 and the connection closed.",
    )
    call_rollup_retention_days: int = Field(
        35,
        ge=1,
        le=3650,
        description="Days of per-minute call counts kept in the store for `hybridmesh slo "
        "report` (the 30-day window needs at least 30).",
    )
    registry_path: str | None = Field(
        None, description="Folder or file of service definitions loaded at start, if set."
    )
    contracts_record: str | None = Field(
        None,
        description="Folder to record Pact contracts into from the calls this process's "
        "hybrid client and gateway carry and the events its bus handles; unset, nothing is "
        "recorded.",
    )
    contracts_rules: str | None = Field(
        None,
        description="YAML file of field rules (per service, JSONPath to Pact matcher) for "
        "recorded contracts; unset: contracts.yaml in the recording folder, if there.",
    )
    contracts_record_services: str | None = Field(
        None,
        description="Comma-separated services: only interactions with one of them as "
        "consumer or provider are recorded (unset: all).",
    )


def get_settings(**overrides: Any) -> Settings:
    """Settings from the environment (read each time; cheap, and tests can monkeypatch env),
    with ``overrides`` taking precedence.

    Raises :class:`~hybridmesh.core.errors.InvalidSettingError` naming the environment
    variable of each value that does not validate (``HYBRIDMESH_HTTP_PORT: …``).
    """
    try:
        return Settings(**overrides)
    except pydantic.ValidationError as invalid:
        problems = []
        for error in invalid.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            problems.append(Problem(describe(error), field=env_name(name)))
        raise InvalidSettingError(problems) from None


def env_name(field: str) -> str:
    """The environment variable of a settings field (``http_port`` → ``HYBRIDMESH_HTTP_PORT``;
    the OpenTelemetry ones keep their standard names)."""
    if field.startswith("otel_traces_"):
        return field.upper()
    return f"HYBRIDMESH_{field.upper()}"


__all__ = ["DEFAULT_DATABASE_URL", "Settings", "env_name", "get_settings"]
