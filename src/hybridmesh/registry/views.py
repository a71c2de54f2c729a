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


__all__ = ["problem_json", "service_detail"]
