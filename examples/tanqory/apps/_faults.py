"""Fault injection: make a service fail or slow down on demand, to exercise callers.

``POST /_admin/faults`` sets the fault, ``GET /_admin/faults`` shows it. A fault never
applies to ``/_admin/*`` or ``/healthz``, so a test can always reach the switch.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from aiohttp import web
from aiohttp.typedefs import Handler

from tanqory.apps._problems import FieldErrors, ProblemError, read_json_object

FaultMode = Literal["error", "latency", "off"]
_MODES = ("error", "latency", "off")
_EXEMPT = ("/_admin/", "/healthz")


@dataclass
class Fault:
    """What to do to matching requests.

    ``count`` is how many requests are still to be affected (None: until turned off);
    ``paths`` are path prefixes (None: every path).
    """

    mode: FaultMode = "off"
    status: int = 503
    count: int | None = None
    paths: list[str] | None = None
    delay: float = 1.0
    retry_after: int | None = None

    def applies_to(self, path: str) -> bool:
        if self.mode == "off" or path.startswith(_EXEMPT):
            return False
        return self.paths is None or any(path.startswith(p) for p in self.paths)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Fault:
        """Reads a fault from the admin body; raises a 422 problem naming the bad field."""
        errors = FieldErrors()
        mode = body.get("mode")
        if mode not in _MODES:
            errors.add("mode", f"must be one of {', '.join(_MODES)}")
        status = body.get("status", 503)
        if not _is_int(status) or not 400 <= status <= 599:
            errors.add("status", "must be an HTTP error status (400-599)")
        count = body.get("count")
        if count is not None and (not _is_int(count) or count < 1):
            errors.add("count", "must be null or an integer of at least 1")
        paths = body.get("paths")
        if paths is not None and (
            not isinstance(paths, list) or not all(isinstance(p, str) for p in paths)
        ):
            errors.add("paths", "must be null or a list of path prefixes")
        delay = body.get("delay", 1.0)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            errors.add("delay", "must be a number of seconds, zero or more")
        retry_after = body.get("retry_after")
        if retry_after is not None and (not _is_int(retry_after) or retry_after < 0):
            errors.add("retry_after", "must be null or a whole number of seconds")
        errors.raise_if_any()
        return cls(cast(FaultMode, mode), status, count, paths, float(delay), retry_after)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class FaultInjector:
    """Holds the current fault and applies it to requests, counting them down."""

    def __init__(self) -> None:
        self.fault = Fault()

    def take(self, path: str) -> Fault | None:
        """The fault to apply to this request, if any; uses one of a counted fault's turns."""
        fault = self.fault
        if not fault.applies_to(path):
            return None
        if fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                self.fault = Fault()
        return fault

    def describe(self) -> dict[str, Any]:
        return asdict(self.fault)


FAULTS = web.AppKey("faults", FaultInjector)


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Fails or delays requests as the current fault says, before the handler runs."""
    fault = request.app[FAULTS].take(request.path)
    if fault is not None and fault.mode == "latency":
        await asyncio.sleep(fault.delay)
    elif fault is not None and fault.mode == "error":
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        raise ProblemError(
            fault.status,
            f"injected fault: {request.method} {request.path} fails on purpose",
            slug="injected-fault",
            headers=headers,
        )
    return await handler(request)


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[FAULTS].describe())


async def set_faults(request: web.Request) -> web.Response:
    injector = request.app[FAULTS]
    injector.fault = Fault.from_json(await read_json_object(request))
    return web.json_response(injector.describe())
