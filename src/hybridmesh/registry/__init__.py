"""The service registry: definitions from YAML, validation, the integration matrix,
persistence in the store, and exports (Backstage, Mermaid, Graphviz)."""

from hybridmesh.registry._registry import ServiceRegistry
from hybridmesh.registry.catalog import RegistryCatalog
from hybridmesh.registry.export import backstage_entity, to_backstage, to_dot, to_mermaid
from hybridmesh.registry.loader import (
    LoadedService,
    RegistryLoad,
    inspect_definitions,
    load_definitions,
    sync_cycles,
)
from hybridmesh.registry.models import (
    ALL_SERVICES,
    Architecture,
    Capabilities,
    DependencyType,
    IntegrationPattern,
    PatternType,
    ServiceConsumer,
    ServiceDefinition,
    ServiceDependency,
)
from hybridmesh.registry.recommend import Recommendation, matrix, recommend

__all__ = [
    "ALL_SERVICES",
    "Architecture",
    "Capabilities",
    "DependencyType",
    "IntegrationPattern",
    "LoadedService",
    "PatternType",
    "Recommendation",
    "RegistryCatalog",
    "RegistryLoad",
    "ServiceConsumer",
    "ServiceDefinition",
    "ServiceDependency",
    "ServiceRegistry",
    "backstage_entity",
    "inspect_definitions",
    "load_definitions",
    "matrix",
    "recommend",
    "sync_cycles",
    "to_backstage",
    "to_dot",
    "to_mermaid",
]
