"""HTTP functions: one JSON POST per invocation, OpenFaaS and Knative style."""

from __future__ import annotations

from typing import Any

import aiohttp

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.serialization import dumpb
from hybridmesh.transports._http import connection_error, decode_body, error_from_response

#: The ``pattern`` of function calls: in a failed call's ``TransportError`` and in metrics.
FUNCTION_PATTERN = "function"


async def post_function(
    session: aiohttp.ClientSession,
    name: str,
    url: str,
    payload: Any,
    headers: dict[str, str],
) -> Any:
    """POST ``payload`` as JSON to function ``name`` at ``url``; the answer parsed (JSON)
    or as text, ``None`` when empty.

    Redirects are not followed: a function endpoint that redirects is misconfigured. Raises
    ``TransportError`` with the status for any answer outside 2xx, with ``status=None`` when
    no answer came back, and ``ValidationError`` for a payload that is not JSON.
    """
    try:
        body = dumpb(payload)
    except TypeError as error:
        raise ValidationError(
            [Problem(f"function {name!r}: payload is not JSON: {error}", field="payload")]
        ) from error
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            data, text = await decode_body(response)
            if not 200 <= response.status < 300:
                raise error_from_response(response, text, name, FUNCTION_PATTERN)
            return data
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
        raise connection_error(error, name, FUNCTION_PATTERN) from error


__all__ = ["FUNCTION_PATTERN", "post_function"]
