"""The middleware every request goes through: request id, trace, log context, errors.

- ``X-Request-ID``: the caller's value when it is 1 to 128 visible ASCII characters, else a
  new one; it is bound to the log context and set on every response (WebSocket upgrades
  included).
- ``traceparent``/``tracestate``: continued, so spans and the events published while
  handling the request belong to the caller's trace.
- Errors become problem details: aiohttp's HTTP errors (404, 405, 413, …) keep their status,
  ``ValidationError`` is 400, ``NotFoundError`` is 404, anything else is logged and is 500.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry.trace import SpanKind

from hybridmesh.api._context import REQUEST_ID
from hybridmesh.api.problems import INVALID_INPUT, problem_response
from hybridmesh.core.errors import NotFoundError, ValidationError
from hybridmesh.core.ids import new_request_id
from hybridmesh.observability import bind_context, continue_trace, get_logger, start_call_span

log = get_logger("hybridmesh.api")

_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind the request id and trace context, run the handler, answer errors as problems."""
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else new_request_id()
    request[REQUEST_ID] = request_id
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    with (
        bind_context(request_id=request_id, source_service=request.headers.get("X-Source-Service")),
        continue_trace(request.headers),
        start_call_span(
            f"{request.method} {route}",
            attributes={"http.request.method": request.method, "http.route": route},
            kind=SpanKind.SERVER,
        ),
    ):
        try:
            return await handler(request)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return _from_http_error(request, error)
        except ValidationError as error:
            return problem_response(
                400, str(error), type=INVALID_INPUT, title="Invalid input", errors=error.problems
            )
        except NotFoundError as error:
            return problem_response(404, str(error))
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return problem_response(500, "the server failed to handle the request")


def _from_http_error(request: web.Request, error: web.HTTPException) -> web.Response:
    default_text = f"{error.status}: {error.reason}"
    detail = error.text if error.text and error.text != default_text else None
    if detail is None and error.status == 404:
        detail = f"nothing is served at {request.path}"
    elif detail is None and error.status == 405:
        allowed = error.headers.get("Allow", "")
        detail = f"{request.method} is not allowed on {request.path}; allowed: {allowed}"
    kept = {k: v for k, v in error.headers.items() if k in ("Allow", "Upgrade", "Retry-After")}
    title = error.reason or HTTPStatus(error.status).phrase
    response = problem_response(error.status, detail, title=title, headers=kept)
    if error.status == 408:  # the rest of a late body cannot be told from a next request
        response.force_close()
    return response


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every response carries the request's ``X-Request-ID``."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers["X-Request-ID"] = request_id


__all__ = ["request_context", "stamp_request_id"]
