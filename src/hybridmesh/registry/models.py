"""Service definitions: what the registry knows about each service, as written in YAML."""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hybridmesh.core.names import Name
from hybridmesh.core.serialization import WIDE_INT_PROBLEM, json_problems
from hybridmesh.core.urls import http_url_problem
from hybridmesh.resilience.overrides import ResilienceOverrides

#: A consumer entry naming every service at once, as the guide writes for notifications.
ALL_SERVICES = "all-services"


class Architecture(enum.StrEnum):
    MICROSERVICE = "microservice"
    MODULAR_MONOLITH = "modular-monolith"
    TRADITIONAL_MONOLITH = "traditional-monolith"
    SERVERLESS = "serverless"


class PatternType(enum.StrEnum):
    REST = "rest"
    GRAPHQL = "graphql"
    EVENTS = "events"
    WEBSOCKET = "websocket"
    BATCH = "batch"


class DependencyType(enum.StrEnum):
    SYNC = "sync"
    ASYNC = "async"
    BATCH = "batch"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class Capabilities(_Strict):
    """What a service can do; each defaults to False."""

    synchronous: bool = False
    asynchronous: bool = False
    graphql: bool = False
    websocket: bool = False
    bulk_operations: bool = False


class IntegrationPattern(_Strict):
    """One way a service can be integrated with, and what for."""

    type: PatternType
    description: str = ""
    use_cases: tuple[str, ...] = ()
    implementation: dict[str, Any] = Field(default_factory=dict)

    @field_validator("implementation")
    @classmethod
    def _check_numbers(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Stored as JSON, which holds whole numbers within 64 bits only.
        wide = [where for where, what in json_problems(value) if what == WIDE_INT_PROBLEM]
        if wide:
            raise ValueError(f"{', '.join(wide)}: {WIDE_INT_PROBLEM}")
        return value

    def __hash__(self) -> int:
        return hash((self.type, self.description, self.use_cases))


class ServiceDependency(_Strict):
    """A service this one calls (``sync``), listens to (``async``) or exchanges files with."""

    service: Name
    type: DependencyType
    purpose: str = ""


class ServiceConsumer(_Strict):
    """A service that calls this one; ``all-services`` stands for every service."""

    service: Name
    type: DependencyType
    purpose: str = ""


class ServiceDefinition(_Strict):
    """One service of the hybrid system.

    ``resilience`` overrides the architecture's default policy for calls to this service;
    ``graphql_path`` is where its GraphQL endpoint lives, relative to ``base_url``.
    ``name`` follows the one name rule (:mod:`hybridmesh.core.names`).
    """

    name: Name
    architecture: Architecture
    base_url: str
    version: str
    description: str = ""
    owner: str | None = None
    team: str | None = None
    lifecycle: Literal["experimental", "production", "deprecated"] = "production"
    tags: tuple[str, ...] = ()
    capabilities: Capabilities = Field(default_factory=Capabilities)
    integration_patterns: tuple[IntegrationPattern, ...] = ()
    dependencies: tuple[ServiceDependency, ...] = ()
    consumers: tuple[ServiceConsumer, ...] = ()
    resilience: ResilienceOverrides | None = None
    graphql_path: str = "/graphql"

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        problem = http_url_problem(value)  # the rule is in hybridmesh.core.urls
        if problem is not None:
            raise ValueError(problem)
        return value.rstrip("/")

    @field_validator("graphql_path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    def pattern_types(self) -> list[PatternType]:
        """The integration pattern types this service offers, in its own order."""
        return [p.type for p in self.integration_patterns]

    @property
    def owner_name(self) -> str:
        """Who owns it: ``owner``, else ``team``, else ``unknown``."""
        return self.owner or self.team or "unknown"


__all__ = [
    "ALL_SERVICES",
    "Architecture",
    "Capabilities",
    "DependencyType",
    "IntegrationPattern",
    "PatternType",
    "ServiceConsumer",
    "ServiceDefinition",
    "ServiceDependency",
]
