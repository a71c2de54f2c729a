"""The OpenAPI 3.1 document of the control plane, made from the declared operations.

Schemas come from the operations' pydantic models (``model_json_schema``, with references
into ``#/components/schemas``); parameters from the fields of the path and query models;
error answers share one problem-details schema. Nothing here is written by hand per
operation, so the document says what the routes do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

import pydantic

from hybridmesh import __version__
from hybridmesh.api.problems import PROBLEM_CONTENT_TYPE
from hybridmesh.control.declare import REALM, Operation

REF_TEMPLATE = "#/components/schemas/{model}"


class ProblemError(pydantic.BaseModel):
    """One thing wrong with the input."""

    field: str = pydantic.Field(description="The field, parameter or `body` as a whole.")
    message: str
    line: int | None = pydantic.Field(
        default=None, description="The line of a YAML or JSON body, when the input has lines."
    )


class Problem(pydantic.BaseModel):
    """RFC 9457 problem details: how every error is answered."""

    type: str = pydantic.Field(description="A URI naming the kind of problem.")
    title: str
    status: int
    detail: str | None = None
    errors: list[ProblemError] | None = pydantic.Field(
        default=None, description="With 400: each field that is not valid."
    )


_ERROR_TEXT = {
    400: "Invalid input: a body that is not JSON, or input that does not validate; "
    "`errors` names each field (and the line, for a YAML or JSON document).",
    401: "No bearer token, or an unknown or revoked one.",
    403: "The token's role is below the one the operation needs.",
    404: "Nothing of that name or id.",
    409: "The request conflicts with the current state.",
}


class _Components:
    """The schemas the document refers to, collected as operations name models."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[pydantic.BaseModel]) -> dict[str, Any]:
        name = model.__name__
        if name not in self.schemas:
            self.schemas[name] = self._schema(model)
        return {"$ref": REF_TEMPLATE.format(model=name)}

    def _schema(self, model: type[pydantic.BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template=REF_TEMPLATE)
        for name, sub in schema.pop("$defs", {}).items():
            self.schemas.setdefault(name, sub)
        return schema

    def parameters(self, model: type[pydantic.BaseModel], where: str) -> list[dict[str, Any]]:
        schema = self._schema(model)
        required = set(schema.get("required", ()))
        found = []
        for name, prop in schema.get("properties", {}).items():
            parameter: dict[str, Any] = {
                "name": name,
                "in": where,
                "required": where == "path" or name in required,
                "schema": {k: v for k, v in prop.items() if k != "description"},
            }
            if "description" in prop:
                parameter["description"] = prop["description"]
            found.append(parameter)
        return found


def openapi_document(
    operations: Iterable[Operation], *, tags: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``; ``tags`` describes each tag."""
    components = _Components()
    problem = components.ref(Problem)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, components, problem)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "hybridmesh control plane",
            "version": __version__,
            "description": "Manage a hybridmesh deployment over HTTP: the same operations, "
            "validation and JSON as the `hybridmesh` CLI. Send `Authorization: Bearer TOKEN` "
            "(`hybridmesh tokens create`); roles: read < operate < admin.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `hybridmesh tokens create NAME --role ROLE`.",
                }
            },
        },
    }
    if tags:
        document["tags"] = [{"name": name, "description": text} for name, text in tags.items()]
    return document


def _operation(op: Operation, components: _Components, problem: dict[str, Any]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    if op.path_params is not None:
        parameters += components.parameters(op.path_params, "path")
    if op.query is not None:
        parameters += components.parameters(op.query, "query")
    described: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": list(op.tags),
    }
    if op.description:
        described["description"] = op.description
    if parameters:
        described["parameters"] = parameters
    if op.body is not None:
        described["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": components.ref(op.body)}},
        }
    elif op.raw_body:
        described["requestBody"] = {
            "required": True,
            "content": {media: {"schema": dict(schema)} for media, schema in op.raw_body.items()},
        }
    success = components.ref(op.response) if op.response else dict(op.media_schema)
    responses: dict[str, Any] = {
        str(op.status): {
            "description": HTTPStatus(op.status).phrase,
            "content": {op.media: {"schema": success}},
        }
    }
    for status in op.error_statuses():
        answer: dict[str, Any] = {
            "description": _ERROR_TEXT.get(status, HTTPStatus(status).phrase),
            "content": {PROBLEM_CONTENT_TYPE: {"schema": problem}},
        }
        if status == 401:
            answer["headers"] = {
                "WWW-Authenticate": {
                    "description": f"`{REALM}`",
                    "schema": {"type": "string"},
                }
            }
        responses[str(status)] = answer
    described["responses"] = responses
    if op.role is None:
        described["security"] = []
    else:
        described["security"] = [{"bearer": []}]
        described["x-required-role"] = op.role.value
    return described


__all__ = ["REF_TEMPLATE", "Problem", "ProblemError", "openapi_document"]
