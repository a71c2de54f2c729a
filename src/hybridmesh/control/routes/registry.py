"""``/api/v1/services`` and ``/api/v1/registry``: the service registry, as ``hybridmesh
registry list|show|graph|recommend|load`` has it, with the same JSON as their ``--json``."""

from __future__ import annotations

from typing import Literal

import pydantic

from hybridmesh.control.auth import Role
from hybridmesh.control.declare import Call, Operations, invalid_input
from hybridmesh.registry import (
    Architecture,
    RegistryCatalog,
    ServiceDefinition,
    ServiceRegistry,
    graph_json,
    inspect_text,
    problem_json,
    recommend,
    service_detail,
    to_dot,
    to_mermaid,
)

operations = Operations()

_TAGS = ("registry",)
#: The name a request body's problems are reported under, in place of a file's.
BODY_NAME = "<body>"


class _Query(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class ServiceName(pydantic.BaseModel):
    name: str = pydantic.Field(description="The service's name.")


class ServiceListQuery(_Query):
    architecture: Architecture | None = pydantic.Field(
        default=None, description="Only services of this architecture."
    )


class ServiceList(pydantic.RootModel[list[ServiceDefinition]]):
    """The services, by name."""


class ServiceLink(pydantic.BaseModel):
    """A dependency of the service, and the integration patterns both sides share."""

    service: str
    type: str
    purpose: str
    patterns: list[str]


class ServiceDetail(ServiceDefinition):
    """A service's definition, and the patterns each of its dependencies uses."""

    links: list[ServiceLink]


class GraphQuery(_Query):
    format: Literal["mermaid", "dot"] = pydantic.Field(
        default="mermaid", description="The text's format: Mermaid flowchart or Graphviz dot."
    )


class GraphNode(pydantic.BaseModel):
    name: str
    architecture: Architecture
    lifecycle: str
    version: str


class GraphEdge(pydantic.BaseModel):
    """A dependency of ``source`` on ``target``, and the patterns both sides share."""

    source: str
    target: str
    type: str
    patterns: list[str]


class Graph(pydantic.BaseModel):
    """The dependency graph of the stored services: as data (as `registry graph --format
    json` prints it), and as text in ``format`` (as `registry graph --format FORMAT`)."""

    nodes: list[GraphNode]
    edges: list[GraphEdge]
    format: Literal["mermaid", "dot"]
    source: str


class RecommendQuery(_Query):
    source: Architecture = pydantic.Field(description="The calling side's architecture.")
    target: Architecture = pydantic.Field(description="The called side's architecture.")
    use_case: str | None = pydantic.Field(
        default=None, max_length=1_000, description="What the call is for, e.g. 'nightly report'."
    )


class RecommendationOut(pydantic.BaseModel):
    """The preferred integration patterns from one architecture to another, and why."""

    source: Architecture
    target: Architecture
    preferred: list[str]
    rationale: str
    rule: str
    use_case: str | None
    for_use_case: str | None


class ApplyQuery(_Query):
    replace: bool = pydantic.Field(
        default=False, description="Remove stored services the body does not define."
    )


class RegistryProblem(pydantic.BaseModel):
    """A warning about the definitions: they were saved all the same."""

    file: str | None
    line: int | None
    field: str | None
    message: str
    severity: str


class Applied(pydantic.BaseModel):
    """What ``registry/apply`` saved."""

    loaded: int
    services: list[str]
    warnings: list[RegistryProblem]


async def _stored(call: Call) -> ServiceRegistry:
    return await RegistryCatalog(call.plane.store).registry()


@operations.operation(
    "GET",
    "/api/v1/services",
    summary="List the services",
    tags=_TAGS,
    role=Role.READ,
    query=ServiceListQuery,
    response=ServiceList,
)
async def list_services(call: Call) -> object:
    """The services in the store, by name, as `hybridmesh registry list --json`."""
    query: ServiceListQuery = call.query
    services = await RegistryCatalog(call.plane.store).list()
    return [
        d.model_dump(mode="json")
        for d in services
        if query.architecture is None or d.architecture is query.architecture
    ]


@operations.operation(
    "GET",
    "/api/v1/services/{name}",
    summary="Show a service",
    tags=_TAGS,
    role=Role.READ,
    path_params=ServiceName,
    response=ServiceDetail,
    errors=(404,),
)
async def get_service(call: Call) -> object:
    """One service's definition and, under `links`, the patterns each of its dependencies
    uses, as `hybridmesh registry show NAME --json`."""
    path: ServiceName = call.path
    return service_detail(await _stored(call), path.name)


@operations.operation(
    "GET",
    "/api/v1/registry/graph",
    summary="The dependency graph",
    tags=_TAGS,
    role=Role.READ,
    query=GraphQuery,
    response=Graph,
)
async def get_registry_graph(call: Call) -> object:
    """The stored services' dependency graph: nodes and edges, and the text `hybridmesh
    registry graph` writes in `format`."""
    query: GraphQuery = call.query
    definitions = await RegistryCatalog(call.plane.store).list()
    text = to_mermaid(definitions) if query.format == "mermaid" else to_dot(definitions)
    return {**graph_json(ServiceRegistry(definitions)), "format": query.format, "source": text}


@operations.operation(
    "GET",
    "/api/v1/registry/recommend",
    summary="Recommend integration patterns",
    tags=_TAGS,
    role=Role.READ,
    query=RecommendQuery,
    response=RecommendationOut,
)
async def recommend_patterns(call: Call) -> object:
    """The preferred patterns from one architecture to another, and why, as `hybridmesh
    registry recommend SOURCE TARGET [--use-case TEXT] --json`."""
    query: RecommendQuery = call.query
    return recommend(query.source.value, query.target.value, query.use_case).to_dict()


@operations.operation(
    "POST",
    "/api/v1/registry/apply",
    summary="Validate and save service definitions",
    tags=_TAGS,
    role=Role.OPERATE,
    query=ApplyQuery,
    raw_body={
        "application/yaml": {
            "type": "string",
            "description": "Service definitions as `hybridmesh registry load` reads a file.",
        },
        "application/json": {"description": "The same, as JSON."},
    },
    response=Applied,
)
async def apply_registry(call: Call) -> object:
    """Validate the service definitions in the body (YAML, or JSON) with every check of
    `hybridmesh registry load`, and save them; with `replace`, remove the stored services
    they do not define. Any error saves nothing and answers 400, `errors` naming the line
    and field of each."""
    query: ApplyQuery = call.query
    # The app's body limit (1 MiB by default) is below the YAML reader's file limit.
    result = inspect_text(await call.request.read(), BODY_NAME)
    if result.errors:
        return invalid_input("the service definitions are not valid", result.errors)
    definitions = result.definitions()
    count = await RegistryCatalog(call.plane.store).save(
        definitions, source="api", replace=query.replace
    )
    return {
        "loaded": count,
        "services": [d.name for d in definitions],
        "warnings": [problem_json(p) for p in result.warnings],
    }


__all__ = ["operations"]
