"""RFC 9457 problem details: how every error of the HTTP API is answered.

A problem is a JSON object with ``type`` (a URI naming the kind of problem, ``about:blank``
when the HTTP status says it all), ``title``, ``status`` and ``detail``; input errors add
``errors``, one ``{"field", "message"}`` per thing wrong, where ``field`` names the attribute
(``type``, ``[1].type``, ``content-type``) or ``body`` for the request body as a whole, and
``line`` is added where the input has lines (a YAML document) and the problem is on one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web

from hybridmesh.core.errors import Problem
from hybridmesh.core.serialization import dumps

PROBLEM_CONTENT_TYPE = "application/problem+json"

#: The ``type`` of a request whose CloudEvents did not parse or validate.
INVALID_EVENT = "urn:hybridmesh:problem:invalid-event"
#: The ``type`` of a request whose input (other than events) did not validate.
INVALID_INPUT = "urn:hybridmesh:problem:invalid-input"


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    type: str = "about:blank",
    title: str | None = None,
    errors: Iterable[Problem] | None = None,
    headers: Mapping[str, str] | None = None,
    **members: Any,
) -> web.Response:
    """A ``application/problem+json`` response. ``title`` defaults to the status phrase;
    ``members`` are extension members added to the object."""
    body: dict[str, Any] = {
        "type": type,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = [_error(p) for p in errors]
    body.update(members)
    response = web.Response(status=status, text=dumps(body), headers=headers)
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def _error(problem: Problem) -> dict[str, Any]:
    error: dict[str, Any] = {"field": problem.field or "body", "message": problem.message}
    if problem.line is not None:
        error["line"] = problem.line
    return error


__all__ = ["INVALID_EVENT", "INVALID_INPUT", "PROBLEM_CONTENT_TYPE", "problem_response"]
