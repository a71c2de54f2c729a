"""Errors as RFC 9457 problem details, and checks of JSON request bodies.

A handler raises :class:`ProblemError` (or lets aiohttp raise one of its HTTP errors); the
middleware here turns either into an ``application/problem+json`` answer. Anything else that
escapes a handler becomes a 500 problem, so no service ever answers an HTML error page.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://problems.tanqory.example/"

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_log = logging.getLogger(__name__)


class ProblemError(Exception):
    """An error a handler reports to its caller as a problem+json answer.

    ``slug`` names the problem type (``https://problems.tanqory.example/<slug>``); without
    one the type is ``about:blank`` and the title is the status's reason phrase.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = f"{PROBLEM_BASE}{slug}" if slug else "about:blank"
        self.title = title or _reason(status)
        self.headers = dict(headers or {})
        self.extensions = extensions

    def to_response(self, instance: str | None = None) -> web.Response:
        """The problem+json answer for this error."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            body["instance"] = instance
        body.update(self.extensions)
        return web.Response(
            status=self.status,
            text=json.dumps(body),
            content_type=PROBLEM_CONTENT_TYPE,
            headers=self.headers,
        )


def not_found(what: str, ident: str) -> ProblemError:
    """The 404 for a resource that does not exist."""
    return ProblemError(404, f"{what} {ident!r} does not exist", slug="not-found")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answers every 4xx/5xx as problem+json, including unknown routes and crashes."""
    try:
        return await handler(request)
    except ProblemError as error:
        return error.to_response(request.path)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        dropped = ("content-type", "content-length")
        headers = {k: v for k, v in error.headers.items() if k.lower() not in dropped}
        detail = {
            404: f"no route for {request.method} {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
        }.get(error.status, error.text or error.reason)
        return ProblemError(error.status, detail, headers=headers).to_response(request.path)
    except Exception:
        _log.exception("unhandled error in %s %s", request.method, request.path)
        return ProblemError(500, "the service failed to handle the request").to_response(
            request.path
        )


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; 400 when it is not JSON, 422 when not an object."""
    raw = await request.read()
    if not raw:
        raise ProblemError(400, "the request needs a JSON body", slug="malformed-body")
    try:
        body = json.loads(raw)
    except ValueError as error:
        raise ProblemError(
            400, f"the body is not valid JSON: {error}", slug="malformed-body"
        ) from error
    if not isinstance(body, dict):
        raise FieldErrors().add("body", "must be a JSON object").as_problem()
    return body


class FieldErrors:
    """Collects what is wrong with each field of a body, then raises one 422 for all.

    The 422 names the first bad field in ``detail`` and lists every one in ``errors`` as
    ``{"field", "message"}``.
    """

    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> FieldErrors:
        self.errors.append({"field": field, "message": message})
        return self

    def as_problem(self) -> ProblemError:
        first = self.errors[0]
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        return ProblemError(
            422,
            f"{first['field']}: {first['message']}{more}",
            slug="validation-error",
            title="Request body does not validate",
            errors=list(self.errors),
        )

    def raise_if_any(self) -> None:
        """Raises the 422 when any error was recorded."""
        if self.errors:
            raise self.as_problem()

    def text(
        self, body: Mapping[str, Any], field: str, *, prefix: str = "", required: bool = True
    ) -> str | None:
        """A non-empty string field; records an error when absent (if required) or not one."""
        value = body.get(field)
        if value is None:
            if required:
                self.add(prefix + field, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(prefix + field, "must be a non-empty string")
            return None
        return value.strip()

    def email(
        self,
        body: Mapping[str, Any],
        field: str = "email",
        *,
        prefix: str = "",
        required: bool = True,
    ) -> str | None:
        """A string field that looks like an e-mail address."""
        value = self.text(body, field, prefix=prefix, required=required)
        if value is not None and not _EMAIL.match(value):
            self.add(prefix + field, f"{value!r} is not a valid e-mail address")
            return None
        return value

    def positive_int(self, body: Mapping[str, Any], field: str, *, prefix: str = "") -> int | None:
        """A required integer greater than zero."""
        value = body.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.add(prefix + field, "must be an integer greater than zero")
            return None
        return value

    def objects(self, body: Mapping[str, Any], field: str) -> list[Mapping[str, Any]]:
        """A required, non-empty list of JSON objects."""
        value = body.get(field)
        if not isinstance(value, list) or not value:
            self.add(field, "must be a non-empty list")
            return []
        bad = [i for i, item in enumerate(value) if not isinstance(item, dict)]
        for i in bad:
            self.add(f"{field}[{i}]", "must be an object")
        return [] if bad else value
