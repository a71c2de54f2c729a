"""Exports of the registry: Backstage catalog entities, Mermaid and Graphviz dot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hybridmesh.registry import (
    ALL_SERVICES,
    Architecture,
    DependencyType,
    ServiceConsumer,
    ServiceDefinition,
    ServiceDependency,
    backstage_entity,
    load_definitions,
    to_backstage,
    to_dot,
    to_mermaid,
)

REFERENCE = Path(__file__).resolve().parents[3] / "examples" / "tanqory" / "services"


@pytest.fixture(scope="module")
def definitions() -> list[ServiceDefinition]:
    return load_definitions(REFERENCE).definitions()


def _edges(definitions: list[ServiceDefinition]) -> list[tuple[str, str, DependencyType]]:
    names = {d.name for d in definitions}
    return [
        (d.name, dep.service, dep.type)
        for d in definitions
        for dep in d.dependencies
        if dep.service in names
    ]


# --------------------------------------------------------------------------- Backstage


def test_backstage_export_is_one_component_document_per_service(
    definitions: list[ServiceDefinition],
) -> None:
    text = to_backstage(definitions)
    docs = list(yaml.safe_load_all(text))

    assert text.startswith("---")
    assert len(docs) == len(definitions) == 14
    assert [doc["metadata"]["name"] for doc in docs] == [d.name for d in definitions]
    for doc in docs:
        assert doc["apiVersion"] == "backstage.io/v1alpha1"
        assert doc["kind"] == "Component"
        assert doc["spec"]["type"] == "service"
        assert doc["spec"]["owner"]
        assert doc["spec"]["lifecycle"] in ("experimental", "production", "deprecated")


def test_backstage_entity_carries_owner_lifecycle_dependencies_and_annotations(
    definitions: list[ServiceDefinition],
) -> None:
    by_name = {d.name: d for d in definitions}
    for doc in yaml.safe_load_all(to_backstage(definitions)):
        d = by_name[doc["metadata"]["name"]]
        spec = doc["spec"]
        annotations = doc["metadata"]["annotations"]

        assert spec["owner"] == f"group:{d.owner_name}"
        assert spec["lifecycle"] == d.lifecycle
        expected = sorted({f"component:{x.service}" for x in d.dependencies})
        assert spec.get("dependsOn", []) == expected
        assert all(entry.startswith("component:") for entry in spec.get("dependsOn", []))
        assert annotations["hybridmesh.dev/architecture"] == d.architecture.value
        assert annotations["hybridmesh.dev/base-url"] == d.base_url
        assert annotations["hybridmesh.dev/version"] == d.version
        assert d.architecture.value in doc["metadata"]["tags"]


def test_backstage_entity_of_the_legacy_erp(definitions: list[ServiceDefinition]) -> None:
    erp = next(d for d in definitions if d.name == "legacy-erp")

    entity = backstage_entity(erp)

    assert entity["spec"]["owner"] == "group:erp-team"
    assert entity["spec"]["lifecycle"] == "deprecated"
    assert "dependsOn" not in entity["spec"]
    assert entity["metadata"]["annotations"]["hybridmesh.dev/architecture"] == (
        "traditional-monolith"
    )
    assert entity["metadata"]["annotations"]["hybridmesh.dev/patterns"] == "rest,batch"


def test_backstage_entity_of_order_processing_depends_on_its_dependencies(
    definitions: list[ServiceDefinition],
) -> None:
    order = next(d for d in definitions if d.name == "order-processing")

    depends = backstage_entity(order)["spec"]["dependsOn"]

    assert "component:legacy-erp" in depends
    assert "component:user-service" in depends
    assert depends == sorted(depends)
    assert len(depends) == len({d.service for d in order.dependencies})


def _minimal(name: str, **extra: object) -> ServiceDefinition:
    return ServiceDefinition.model_validate(
        {
            "name": name,
            "architecture": "serverless",
            "base_url": f"http://{name}.local",
            "version": "v2",
            **extra,
        }
    )


def test_backstage_owner_falls_back_to_team_then_unknown_and_keeps_a_kind_prefix() -> None:
    assert backstage_entity(_minimal("svc-a"))["spec"]["owner"] == "group:unknown"
    assert backstage_entity(_minimal("svc-b", team="Platform"))["spec"]["owner"] == (
        "group:Platform"
    )
    assert backstage_entity(_minimal("svc-c", owner="user:jane"))["spec"]["owner"] == "user:jane"


def test_backstage_skips_all_services_and_default_lifecycle_is_production() -> None:
    d = _minimal(
        "svc-a",
        dependencies=[{"service": "svc-b", "type": "async"}],
        consumers=[{"service": ALL_SERVICES, "type": "async"}],
    )

    entity = backstage_entity(d)

    assert entity["spec"]["dependsOn"] == ["component:svc-b"]
    assert entity["spec"]["lifecycle"] == "production"


def test_backstage_export_of_nothing_is_empty() -> None:
    assert list(yaml.safe_load_all(to_backstage([]))) == []


# --------------------------------------------------------------------------- Mermaid


def test_mermaid_has_a_flowchart_a_subgraph_per_architecture_and_an_edge_per_dependency(
    definitions: list[ServiceDefinition],
) -> None:
    text = to_mermaid(definitions)
    lines = text.splitlines()

    assert lines[0].startswith("flowchart")
    subgraphs = [line.strip() for line in lines if line.strip().startswith("subgraph ")]
    architectures = {d.architecture.value for d in definitions}
    assert len(subgraphs) == len(architectures) == 4
    for arch in architectures:
        assert sum(f"[{arch}]" in s for s in subgraphs) == 1
    assert sum(line.strip() == "end" for line in lines) == len(subgraphs)

    edges = _edges(definitions)
    arrow = re.compile(r"^\s*(\S+) (-->|-\.->|==>)\|(\w+)\| (\S+)$")
    found = [m.groups() for m in map(arrow.match, lines) if m]
    assert len(found) == len(edges)
    for source, target, kind in edges:
        expected_arrow = {"sync": "-->", "async": "-.->", "batch": "==>"}[kind.value]
        edge = (source.replace("-", "_"), expected_arrow, kind.value, target.replace("-", "_"))
        assert edge in found


def test_mermaid_lists_each_service_inside_its_architectures_subgraph(
    definitions: list[ServiceDefinition],
) -> None:
    lines = to_mermaid(definitions).splitlines()
    current: str | None = None
    placed: dict[str, str] = {}
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("subgraph "):
            current = stripped.split("[", 1)[1].rstrip("]")
        elif stripped == "end":
            current = None
        elif current is not None:
            placed[stripped.split("[", 1)[1].rstrip("]")] = current

    assert placed == {d.name: d.architecture.value for d in definitions}


def test_mermaid_leaves_out_edges_to_services_not_exported() -> None:
    a = _minimal("svc-a", dependencies=[{"service": "svc-b", "type": "sync"}])

    text = to_mermaid([a])

    assert "svc_b" not in text
    assert "-->" not in text


# --------------------------------------------------------------------------- Graphviz


def test_dot_is_a_digraph_with_a_cluster_per_architecture_and_an_edge_per_dependency(
    definitions: list[ServiceDefinition],
) -> None:
    text = to_dot(definitions)

    assert text.startswith("digraph ")
    assert text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")
    for arch in Architecture:
        assert f'subgraph "cluster_{arch.value}"' in text
    for d in definitions:
        assert f'"{d.name}";' in text
    edges = _edges(definitions)
    assert text.count(" -> ") == len(edges)
    for source, target, kind in edges:
        assert f'"{source}" -> "{target}" [label="{kind.value}"' in text


def test_dot_styles_edges_by_dependency_type() -> None:
    a = ServiceDefinition(
        name="svc-a",
        architecture=Architecture.MICROSERVICE,
        base_url="http://a",
        version="v1",
        dependencies=(
            ServiceDependency(service="svc-b", type=DependencyType.SYNC),
            ServiceDependency(service="svc-c", type=DependencyType.ASYNC),
            ServiceDependency(service="svc-d", type=DependencyType.BATCH),
        ),
    )
    others = [
        _minimal(n, consumers=[ServiceConsumer(service="svc-a", type=DependencyType.SYNC)])
        for n in ("svc-b", "svc-c", "svc-d")
    ]

    text = to_dot([a, *others])

    assert '"svc-a" -> "svc-b" [label="sync", style=solid];' in text
    assert '"svc-a" -> "svc-c" [label="async", style=dashed];' in text
    assert '"svc-a" -> "svc-d" [label="batch", style=bold];' in text


def test_backstage_names_fit_backstage_at_the_longest_name_and_longer_cannot_be_defined() -> None:
    longest = "s" * 63
    entity = backstage_entity(
        ServiceDefinition(
            name=longest,
            architecture=Architecture.MICROSERVICE,
            base_url="http://x",
            version="v1",
            dependencies=(ServiceDependency(service="d" * 63, type=DependencyType.SYNC),),
        )
    )
    assert entity["metadata"]["name"] == longest
    assert entity["spec"]["dependsOn"] == ["component:" + "d" * 63]
    with pytest.raises(ValueError, match="more than 63"):
        ServiceDefinition(
            name="s" * 64, architecture=Architecture.MICROSERVICE, base_url="http://x", version="v1"
        )
