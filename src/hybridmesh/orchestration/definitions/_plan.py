"""A valid definition's plan: :func:`validate`, then compile."""

from __future__ import annotations

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.names import quoted
from hybridmesh.orchestration.definitions._compile import compile_plan
from hybridmesh.orchestration.definitions._model import Definition, definition_key
from hybridmesh.orchestration.definitions._validate import validate
from hybridmesh.orchestration.plan import Plan
from hybridmesh.registry import ServiceRegistry


def to_plan(
    definition: Definition,
    *,
    registry: ServiceRegistry | None = None,
    version: int | None = None,
) -> Plan:
    """The plan that runs ``definition``.

    The version is ``version``, else the definition's, else 1 (a
    :class:`~hybridmesh.orchestration.catalog.DefinitionCatalog` assigns real ones). Steps
    get their architecture from the definition, else from ``registry`` when given, else
    None (the engine asks its registry). Raises
    :class:`~hybridmesh.core.errors.ValidationError` listing the errors :func:`validate`
    finds.
    """
    errors = [p for p in validate(definition, registry=registry) if p.severity == "error"]
    if errors:
        kind, name = definition_key(definition)
        raise ValidationError(
            [Problem(f"{kind.value} {quoted(name)}: {p.message}", field=p.field) for p in errors]
        )
    if version is None:
        version = definition.version if definition.version is not None else 1
    return compile_plan(definition, registry=registry, version=version)


__all__ = ["to_plan"]
