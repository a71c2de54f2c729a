"""The request context: who is calling, under which request id, bound through contextvars.

A context bound with :func:`bind_context` is visible to everything that runs inside the
``with`` block in the same thread or task, including asyncio tasks created there (each task
copies the context it was created in). Log lines read it, so they carry the request id
without it being passed around.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What is known about the request being handled: its id, its caller, and extra fields.

    ``extra`` holds any other fields given to :func:`bind_context`; they appear in JSON logs.
    """

    request_id: str | None = None
    source_service: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


_EMPTY_CONTEXT = RequestContext()
_current: ContextVar[RequestContext] = ContextVar("hybridmesh_request_context")


def current_context() -> RequestContext:
    """The context bound in the running thread or task (empty when nothing is bound)."""
    return _current.get(_EMPTY_CONTEXT)


def current_request_id() -> str | None:
    """The request id bound in the running thread or task, or ``None``."""
    return _current.get(_EMPTY_CONTEXT).request_id


class bind_context:
    """Bind ``fields`` on top of the current context for the duration of a ``with`` block.

    ``request_id`` and ``source_service`` replace the current values; any other keyword is
    merged into :attr:`RequestContext.extra`. Fields not given keep their current values, so
    blocks nest. The previous context is restored on exit, also when the block raises.
    Entering yields the context now in force.
    """

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: Any) -> None:
        self._fields = fields
        self._token: Token[RequestContext] | None = None

    def __enter__(self) -> RequestContext:
        before = _current.get(_EMPTY_CONTEXT)
        fields = self._fields
        if len(fields) == 2 and "request_id" in fields and "source_service" in fields:
            # The common case, on every call and every event: no extra fields to merge.
            bound = RequestContext(fields["request_id"], fields["source_service"], before.extra)
            self._token = _current.set(bound)
            return bound
        fields = dict(fields)
        request_id = fields.pop("request_id", before.request_id)
        source_service = fields.pop("source_service", before.source_service)
        extra = MappingProxyType({**before.extra, **fields}) if fields else before.extra
        bound = RequestContext(request_id=request_id, source_service=source_service, extra=extra)
        self._token = _current.set(bound)
        return bound

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None


__all__ = ["RequestContext", "bind_context", "current_context", "current_request_id"]
