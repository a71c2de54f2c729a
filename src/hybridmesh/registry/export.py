"""The registry in other tools' formats: Backstage catalog entities, Mermaid and Graphviz."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from hybridmesh.registry.models import ALL_SERVICES, DependencyType, ServiceDefinition

ANNOTATION_PREFIX = "hybridmesh.dev"


def backstage_entity(definition: ServiceDefinition) -> dict[str, Any]:
    """One Backstage ``Component`` entity (catalog-info) for a service."""
    d = definition
    annotations = {
        f"{ANNOTATION_PREFIX}/architecture": d.architecture.value,
        f"{ANNOTATION_PREFIX}/base-url": d.base_url,
        f"{ANNOTATION_PREFIX}/version": d.version,
        f"{ANNOTATION_PREFIX}/patterns": ",".join(p.value for p in d.pattern_types()),
    }
    spec: dict[str, Any] = {
        "type": "service",
        "lifecycle": d.lifecycle,
        "owner": f"group:{d.owner_name}" if ":" not in d.owner_name else d.owner_name,
    }
    depends = sorted(
        {f"component:{x.service}" for x in d.dependencies if x.service != ALL_SERVICES}
    )
    if depends:
        spec["dependsOn"] = depends
    metadata: dict[str, Any] = {"name": d.name}
    if d.description:
        metadata["description"] = d.description
    metadata["annotations"] = annotations
    tags = sorted({*d.tags, d.architecture.value})
    metadata["tags"] = tags
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": metadata,
        "spec": spec,
    }


def to_backstage(definitions: Iterable[ServiceDefinition]) -> str:
    """Every service as one multi-document catalog-info YAML."""
    return yaml.safe_dump_all(
        [backstage_entity(d) for d in definitions], sort_keys=False, explicit_start=True
    )


_ARROWS = {DependencyType.SYNC: "-->", DependencyType.ASYNC: "-.->", DependencyType.BATCH: "==>"}
_DOT_STYLE = {
    DependencyType.SYNC: "solid",
    DependencyType.ASYNC: "dashed",
    DependencyType.BATCH: "bold",
}


def _node(name: str) -> str:
    return name.replace("-", "_")


def to_mermaid(definitions: Iterable[ServiceDefinition]) -> str:
    """A Mermaid flowchart: one subgraph per architecture, an edge per dependency
    (solid sync, dotted async, thick batch)."""
    defs = list(definitions)
    lines = ["flowchart LR"]
    for arch in sorted({d.architecture for d in defs}):
        lines.append(f"  subgraph {_node(arch.value)}[{arch.value}]")
        for d in defs:
            if d.architecture is arch:
                lines.append(f"    {_node(d.name)}[{d.name}]")
        lines.append("  end")
    known = {d.name for d in defs}
    for d in defs:
        for dep in d.dependencies:
            if dep.service in known:
                lines.append(
                    f"  {_node(d.name)} {_ARROWS[dep.type]}|{dep.type.value}| {_node(dep.service)}"
                )
    return "\n".join(lines) + "\n"


def to_dot(definitions: Iterable[ServiceDefinition]) -> str:
    """A Graphviz digraph with one cluster per architecture."""
    defs = list(definitions)
    lines = ["digraph hybridmesh {", "  rankdir=LR;", "  node [shape=box];"]
    for arch in sorted({d.architecture for d in defs}):
        lines.append(f'  subgraph "cluster_{arch.value}" {{')
        lines.append(f'    label="{arch.value}";')
        for d in defs:
            if d.architecture is arch:
                lines.append(f'    "{d.name}";')
        lines.append("  }")
    known = {d.name for d in defs}
    for d in defs:
        for dep in d.dependencies:
            if dep.service in known:
                lines.append(
                    f'  "{d.name}" -> "{dep.service}" '
                    f'[label="{dep.type.value}", style={_DOT_STYLE[dep.type]}];'
                )
    lines.append("}")
    return "\n".join(lines) + "\n"


__all__ = ["backstage_entity", "to_backstage", "to_dot", "to_mermaid"]
