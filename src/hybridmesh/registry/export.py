"""The registry in other tools' formats: Backstage catalog entities, Mermaid and Graphviz."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from hybridmesh.registry.models import (
    ALL_SERVICES,
    Architecture,
    DependencyType,
    ServiceDefinition,
)

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


def _layout(
    definitions: Iterable[ServiceDefinition],
) -> tuple[dict[Architecture, list[str]], list[tuple[str, str, DependencyType]]]:
    """The services grouped by architecture, and the dependency edges between known ones."""
    defs = list(definitions)
    groups: dict[Architecture, list[str]] = {}
    for d in sorted(defs, key=lambda d: d.architecture):
        groups.setdefault(d.architecture, []).append(d.name)
    known = {d.name for d in defs}
    edges = [
        (d.name, dep.service, dep.type)
        for d in defs
        for dep in d.dependencies
        if dep.service in known
    ]
    return groups, edges


def to_mermaid(definitions: Iterable[ServiceDefinition]) -> str:
    """A Mermaid flowchart: one subgraph per architecture, an edge per dependency
    (solid sync, dotted async, thick batch)."""
    groups, edges = _layout(definitions)
    lines = ["flowchart LR"]
    for arch, names in groups.items():
        lines.append(f"  subgraph {_node(arch.value)}[{arch.value}]")
        lines.extend(f"    {_node(name)}[{name}]" for name in names)
        lines.append("  end")
    lines.extend(
        f"  {_node(src)} {_ARROWS[kind]}|{kind.value}| {_node(dst)}" for src, dst, kind in edges
    )
    return "\n".join(lines) + "\n"


def to_dot(definitions: Iterable[ServiceDefinition]) -> str:
    """A Graphviz digraph with one cluster per architecture."""
    groups, edges = _layout(definitions)
    lines = ["digraph hybridmesh {", "  rankdir=LR;", "  node [shape=box];"]
    for arch, names in groups.items():
        lines.append(f'  subgraph "cluster_{arch.value}" {{')
        lines.append(f'    label="{arch.value}";')
        lines.extend(f'    "{name}";' for name in names)
        lines.append("  }")
    lines.extend(
        f'  "{src}" -> "{dst}" [label="{kind.value}", style={_DOT_STYLE[kind]}];'
        for src, dst, kind in edges
    )
    lines.append("}")
    return "\n".join(lines) + "\n"


__all__ = ["backstage_entity", "to_backstage", "to_dot", "to_mermaid"]
