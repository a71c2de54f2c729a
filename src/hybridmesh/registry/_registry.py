"""The in-memory registry the client and the engines read."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from hybridmesh.core.errors import UnknownServiceError
from hybridmesh.registry.models import (
    DependencyType,
    IntegrationPattern,
    PatternType,
    ServiceDefinition,
)
from hybridmesh.registry.recommend import Recommendation, recommend

_PATTERNS_FOR: dict[DependencyType, frozenset[PatternType]] = {
    DependencyType.SYNC: frozenset({PatternType.REST, PatternType.GRAPHQL, PatternType.WEBSOCKET}),
    DependencyType.ASYNC: frozenset({PatternType.EVENTS, PatternType.WEBSOCKET}),
    DependencyType.BATCH: frozenset({PatternType.BATCH}),
}


class ServiceRegistry:
    """Service definitions by name. Registering a name again replaces its definition."""

    def __init__(self, definitions: Iterable[ServiceDefinition] = ()) -> None:
        self._services: dict[str, ServiceDefinition] = {}
        for definition in definitions:
            self.register(definition)

    @classmethod
    def from_path(cls, path: str | Path) -> ServiceRegistry:
        """Load a folder or file of YAML definitions; raises ``ValidationError`` when bad."""
        from hybridmesh.registry.loader import load_definitions

        return cls(load_definitions(path).definitions())

    def register(self, definition: ServiceDefinition) -> None:
        self._services[definition.name] = definition

    def get(self, name: str) -> ServiceDefinition:
        """The definition of ``name``; raises ``UnknownServiceError``."""
        try:
            return self._services[name]
        except KeyError:
            raise UnknownServiceError(name) from None

    def find(self, name: str) -> ServiceDefinition | None:
        return self._services.get(name)

    def with_base_url(self, name: str, base_url: str) -> ServiceDefinition:
        """Point ``name`` at ``base_url`` (a local instance, a test server)."""
        updated = self.get(name).model_copy(update={"base_url": base_url.rstrip("/")})
        self.register(updated)
        return updated

    def names(self) -> list[str]:
        return sorted(self._services)

    def __iter__(self) -> Iterator[ServiceDefinition]:
        return iter([self._services[n] for n in self.names()])

    def __len__(self) -> int:
        return len(self._services)

    def __contains__(self, name: object) -> bool:
        return name in self._services

    def patterns_between(self, source: str, target: str) -> list[IntegrationPattern]:
        """The target's patterns that the source's declared dependency on it uses.

        Empty when ``source`` does not list ``target`` as a dependency.
        """
        src, tgt = self.get(source), self.get(target)
        kinds = {d.type for d in src.dependencies if d.service == target}
        wanted: set[PatternType] = set()
        for kind in kinds:
            wanted |= _PATTERNS_FOR[kind]
        return [p for p in tgt.integration_patterns if p.type in wanted]

    def recommend(self, source: str, target: str, use_case: str | None = None) -> Recommendation:
        """The matrix's recommendation for two registered services."""
        return recommend(self.get(source).architecture, self.get(target).architecture, use_case)


__all__ = ["ServiceRegistry"]
