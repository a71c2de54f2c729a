"""HTTP functions: one JSON POST per invocation, OpenFaaS and Knative style."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.serialization import dumpb
from hybridmesh.transports._http import connection_error, decode_body, error_from_response

if TYPE_CHECKING:
    from hybridmesh.functions.registry import FunctionCall, FunctionDefinition

#: The ``pattern`` of function calls: in a failed call's ``TransportError`` and in metrics.
FUNCTION_PATTERN = "function"


async def post_function(
    session: aiohttp.ClientSession,
    definition: FunctionDefinition,
    call: FunctionCall,
    headers: dict[str, str],
) -> Any:
    """POST ``call.payload`` as JSON to the function's URL; the answer parsed (JSON) or as
    text, ``None`` when empty.

    Redirects are not followed: a function endpoint that redirects is misconfigured. Raises
    ``TransportError`` with the status for any answer outside 2xx, with ``status=None`` when
    no answer came back, and ``ValidationError`` for a payload that is not JSON.
    """
    assert definition.url is not None  # an http function always has one
    try:
        body = dumpb(call.payload)
    except TypeError as error:
        raise ValidationError(
            [
                Problem(
                    f"function {definition.name!r}: payload is not JSON: {error}", field="payload"
                )
            ]
        ) from error
    try:
        async with session.post(
            definition.url, data=body, headers=headers, allow_redirects=False
        ) as response:
            data, text = await decode_body(response)
            if not 200 <= response.status < 300:
                raise error_from_response(response, text, definition.name, FUNCTION_PATTERN)
            return data
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
        raise connection_error(error, definition.name, FUNCTION_PATTERN) from error


__all__ = ["FUNCTION_PATTERN", "post_function"]
