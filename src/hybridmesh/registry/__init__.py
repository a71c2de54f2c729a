"""The service registry: definitions from YAML, validation, the integration matrix,
persistence in the store, and exports (Backstage, Mermaid, Graphviz)."""

from hybridmesh.registry._registry import ServiceRegistry
from hybridmesh.registry.catalog import RegistryCatalog
from hybridmesh.registry.export import backstage_entity, to_backstage, to_dot, to_mermaid
from hybridmesh.registry.loader import (
    LoadedService,
    RegistryLoad,
    inspect_definitions,
    inspect_text,
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
from hybridmesh.registry.views import graph_json, problem_json, service_detail

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
    "graph_json",
    "inspect_definitions",
    "inspect_text",
    "load_definitions",
    "matrix",
    "problem_json",
    "recommend",
    "service_detail",
    "sync_cycles",
    "to_backstage",
    "to_dot",
    "to_mermaid",
]
