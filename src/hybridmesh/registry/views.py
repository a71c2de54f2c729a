"""The registry as the CLI's ``--json`` and the control-plane API both show it."""

from __future__ import annotations

from typing import Any

from hybridmesh.core.errors import Problem
from hybridmesh.registry._registry import ServiceRegistry


def problem_json(problem: Problem) -> dict[str, Any]:
    """A problem with some definitions, as ``registry validate --json`` lists it."""
    return {
        "file": problem.file,
        "line": problem.line,
        "field": problem.field,
        "message": problem.message,
        "severity": problem.severity,
    }


def service_detail(registry: ServiceRegistry, name: str) -> dict[str, Any]:
    """The definition of ``name`` and, under ``links``, each of its dependencies with the
    patterns it uses (none for a dependency the registry does not hold). Raises
    ``UnknownServiceError``."""
    definition = registry.get(name)
    links = [
        {
            "service": dep.service,
            "type": dep.type.value,
            "purpose": dep.purpose,
            "patterns": [p.type.value for p in registry.patterns_between(name, dep.service)]
            if dep.service in registry
            else [],
        }
        for dep in definition.dependencies
    ]
    return {**definition.model_dump(mode="json"), "links": links}


def graph_json(registry: ServiceRegistry) -> dict[str, Any]:
    """The dependency graph as data: a node per service, and an edge per dependency on a
    service the registry holds, with the patterns both sides share (what a drawing of the
    services needs; ``registry graph --format json``)."""
    nodes = [
        {
            "name": d.name,
            "architecture": d.architecture.value,
            "lifecycle": d.lifecycle,
            "version": d.version,
        }
        for d in registry
    ]
    edges = [
        {
            "source": d.name,
            "target": dep.service,
            "type": dep.type.value,
            "patterns": [p.type.value for p in registry.patterns_between(d.name, dep.service)],
        }
        for d in registry
        for dep in d.dependencies
        if dep.service in registry
    ]
    return {"nodes": nodes, "edges": edges}


__all__ = ["graph_json", "problem_json", "service_detail"]
