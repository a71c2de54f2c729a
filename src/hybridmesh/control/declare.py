"""Declaring an operation of the control-plane API once: the route and its documentation.

An :class:`Operations` table collects operations declared with :meth:`Operations.operation`
on their handlers: method, path, summary, tags, the role needed, the pydantic models of the
path parameters, the query, the body and the answer, and the error statuses. From that one
declaration :meth:`Operations.routes` makes the aiohttp routes and
:mod:`hybridmesh.control.openapi` the OpenAPI document, so the two cannot drift apart.

Every route runs the same steps around its handler:

1. **Authenticate** (unless the operation is open): the ``Authorization: Bearer`` header
   only, never a cookie. No token: 401 with ``WWW-Authenticate: Bearer``; an unknown or
   revoked one: 401; a role below the operation's: 403.
2. **Parse** path parameters, query and body into their models. A body that is not JSON
   is a 400; input that does not validate is a 400 too, ``errors`` naming each field.
3. **Call** the handler with a :class:`Call`. What it returns is answered as JSON with the
   operation's status, unless it is a response already. Domain errors become problem
   details: ``ValidationError`` 400 (``errors`` with the line where the input has lines),
   ``NotFoundError`` 404; aiohttp's HTTP errors keep their status.
4. **Audit** a write (POST, PUT, PATCH, DELETE) made with a valid token, whatever status it
   ended with; see :mod:`hybridmesh.control.audit`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic
from aiohttp import web

from hybridmesh.api._context import REQUEST_ID
from hybridmesh.api.problems import INVALID_INPUT, problem_response
from hybridmesh.control.audit import WRITE_METHODS, AuditEntry
from hybridmesh.control.auth import Principal, Role
from hybridmesh.control.plane import PLANE, ControlPlane
from hybridmesh.core.errors import NotFoundError, Problem, ValidationError
from hybridmesh.core.serialization import JSONNumberError, dumps, loads_input
from hybridmesh.observability import get_logger

log = get_logger("hybridmesh.control")

#: The ``type`` of a request whose body is not JSON.
MALFORMED_BODY = "urn:hybridmesh:problem:malformed-body"
#: The ``type`` of a request without valid credentials, or with too little a role.
UNAUTHORIZED = "urn:hybridmesh:problem:unauthorized"
FORBIDDEN = "urn:hybridmesh:problem:forbidden"

#: What ``WWW-Authenticate`` says to a request that needs a token.
REALM = 'Bearer realm="hybridmesh"'

_PATH_PARAMETER = re.compile(r"{(\w+)}")


@dataclass
class Call:
    """One request to an operation, parsed: what a handler receives.

    ``path``, ``query`` and ``body`` are instances of the operation's models (None where it
    declares none). A handler that acts on something the path does not name sets
    ``target``, which the audit trail records (by default, the path's first parameter).
    """

    request: web.Request
    plane: ControlPlane
    principal: Principal | None
    path: Any = None
    query: Any = None
    body: Any = None
    target: str | None = None


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    """One operation, as declared: see :meth:`Operations.operation`."""

    method: str
    path: str
    operation_id: str
    summary: str
    description: str
    tags: tuple[str, ...]
    role: Role | None
    handler: Handler
    path_params: type[pydantic.BaseModel] | None = None
    query: type[pydantic.BaseModel] | None = None
    body: type[pydantic.BaseModel] | None = None
    #: A body that is not a JSON object of ``body``: media type -> JSON Schema.
    raw_body: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    response: type[pydantic.BaseModel] | None = None
    #: The answer's media type and, without ``response``, its JSON Schema.
    media: str = "application/json"
    media_schema: Mapping[str, Any] = field(default_factory=dict)
    status: int = 200
    errors: tuple[int, ...] = ()

    @property
    def writes(self) -> bool:
        return self.method in WRITE_METHODS

    def error_statuses(self) -> list[int]:
        """Every error status the operation may answer, in order."""
        found = set(self.errors)
        if self.role is not None:
            found |= {401, 403}
        if self.path_params or self.query or self.body or self.raw_body:
            found.add(400)
        return sorted(found)


class Operations:
    """A table of operations, declared on their handlers with :meth:`operation`."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def operation(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tags: tuple[str, ...],
        role: Role | None,
        path_params: type[pydantic.BaseModel] | None = None,
        query: type[pydantic.BaseModel] | None = None,
        body: type[pydantic.BaseModel] | None = None,
        raw_body: Mapping[str, Mapping[str, Any]] | None = None,
        response: type[pydantic.BaseModel] | None = None,
        media: str = "application/json",
        media_schema: Mapping[str, Any] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
    ) -> Callable[[Handler], Handler]:
        """Declare the decorated handler as ``method path``. Its name is the operation id
        and its docstring the description. ``role`` None makes the operation open to
        anyone; otherwise it needs a token of that role or above. ``errors`` lists the
        statuses the handler itself answers (404, 409); 400, 401 and 403 are added from
        the rest of the declaration."""
        names = set(_PATH_PARAMETER.findall(path))
        declared = set(path_params.model_fields) if path_params else set()
        if names != declared:
            raise ValueError(f"{path}: path parameters {sorted(names)} need a model of them")

        def declare(handler: Handler) -> Handler:
            doc = (handler.__doc__ or "").strip()
            self.operations.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    operation_id=handler.__name__,
                    summary=summary,
                    description=" ".join(doc.split()),
                    tags=tags,
                    role=role,
                    handler=handler,
                    path_params=path_params,
                    query=query,
                    body=body,
                    raw_body=raw_body or {},
                    response=response,
                    media=media,
                    media_schema=media_schema or {},
                    status=status,
                    errors=errors,
                )
            )
            return handler

        return declare

    def routes(self) -> list[web.RouteDef]:
        """One aiohttp route per operation, each running the steps of the module doc."""
        return [web.route(op.method, op.path, _endpoint(op)) for op in self.operations]


# -- what every route does -------------------------------------------------------------------


def _endpoint(op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        plane = request.app[PLANE]
        principal: Principal | None = None
        if op.role is not None:
            principal, refusal = await _authenticate(request, plane, op.role)
            if refusal is not None:
                if principal is not None and op.writes:  # a known token with too little a role
                    target = next(iter(request.match_info.values()), None)
                    await _audit(request, plane, op, principal, target, refusal.status)
                return refusal
        call = Call(request, plane, principal)
        status = 500
        try:
            response = await _answer(op, call)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            if op.writes and principal is not None:
                await _audit(request, plane, op, principal, call.target, status)

    endpoint.__name__ = op.operation_id
    return endpoint


async def _answer(op: Operation, call: Call) -> web.StreamResponse:
    request = call.request
    try:
        if op.path_params is not None:
            call.path = _parsed(
                op.path_params, dict(request.match_info), "the path parameters are not valid"
            )
            call.target = next(iter(request.match_info.values()), None)
        if op.query is not None:
            call.query = _parsed(
                op.query, dict(request.query), "the query parameters are not valid"
            )
        if op.body is not None:
            call.body = _parsed(op.body, await _json_body(request), "the request body is not valid")
        result = await op.handler(call)
    except _BadRequest as bad:
        return bad.response
    except ValidationError as error:
        return invalid_input("the input is not valid", error.problems)
    except NotFoundError as error:
        return problem_response(404, str(error))
    if isinstance(result, web.StreamResponse):
        return result
    return web.Response(status=op.status, text=dumps(result), content_type="application/json")


class _BadRequest(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


def _parsed(model: type[pydantic.BaseModel], data: Any, detail: str) -> pydantic.BaseModel:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as invalid:
        problems = [
            Problem(_message(detail), field=".".join(str(p) for p in detail["loc"]) or None)
            for detail in invalid.errors()
        ]
        raise _BadRequest(invalid_input(detail, problems)) from None


def _message(detail: Any) -> str:
    if detail["type"] == "extra_forbidden":
        return "unknown field"
    return str(detail["msg"]).removeprefix("Value error, ")


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return loads_input(raw)
    except JSONNumberError as error:
        problems = [Problem(what, field=where or None) for where, what in error.problems]
        raise _BadRequest(invalid_input("the request body is not valid", problems)) from None
    except ValueError as error:
        raise _BadRequest(
            problem_response(
                400,
                f"the request body is not JSON: {error}",
                type=MALFORMED_BODY,
                title="Malformed body",
                errors=[Problem("not valid JSON", field="body")],
            )
        ) from None


def invalid_input(detail: str, problems: list[Problem]) -> web.Response:
    """400 problem details listing each problem: its field (``body`` when it has none), its
    message, and the line of the input where the input had lines."""
    return problem_response(400, detail, type=INVALID_INPUT, title="Invalid input", errors=problems)


# -- credentials and the audit trail --------------------------------------------------------


async def _authenticate(
    request: web.Request, plane: ControlPlane, needed: Role
) -> tuple[Principal | None, web.Response | None]:
    """The request's principal, and the 401/403 answer when it may not go on. Only the
    Authorization header counts: a cookie, which a browser adds to cross-site requests
    too, never does."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None, _unauthorized("this operation needs a bearer token (Authorization: Bearer …)")
    principal = await plane.tokens.authenticate(token.strip())
    if principal is None:
        return None, _unauthorized("the token is unknown or revoked", error="invalid_token")
    if not principal.role.allows(needed):
        detail = (
            f"the token {principal.name!r} has the role {principal.role.value}; "
            f"this operation needs {needed.value}"
        )
        return principal, problem_response(403, detail, type=FORBIDDEN)
    return principal, None


def _unauthorized(detail: str, *, error: str | None = None) -> web.Response:
    challenge = REALM if error is None else f'{REALM}, error="{error}"'
    return problem_response(401, detail, type=UNAUTHORIZED, headers={"WWW-Authenticate": challenge})


async def _audit(
    request: web.Request,
    plane: ControlPlane,
    op: Operation,
    principal: Principal,
    target: str | None,
    status: int,
) -> None:
    entry = AuditEntry(
        token_name=principal.name,
        role=principal.role.value,
        method=request.method,
        path=request.path,
        operation=op.operation_id,
        target=target,
        status=status,
        request_id=request.get(REQUEST_ID),
    )
    try:
        await plane.audit.record(entry)
    except Exception:  # the write is done: its answer must not be lost for want of a row
        log.exception("could not record %s %s in the audit trail", request.method, request.path)


__all__ = [
    "FORBIDDEN",
    "MALFORMED_BODY",
    "REALM",
    "UNAUTHORIZED",
    "Call",
    "Handler",
    "Operation",
    "Operations",
    "invalid_input",
]
