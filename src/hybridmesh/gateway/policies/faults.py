"""``faults``: delay or abort a share of a route's requests, for chaos experiments and for
testing the gates of a migration (Envoy's fault injection filter).

Settings::

    faults:
      delay: {percent: 10, seconds: 0.5}     # wait before sending on
      abort: {percent: 5, status: 503}       # answer this status instead
      header: x-fault                        # only requests carrying this header
      backends: [content-delivery]           # only requests sent to these backends
      expires_at: 1767225600                 # Unix seconds: inert from then on

Off unless a route names it; changed live like any route. An aborted request never reaches
a backend, and counts as refused with reason ``fault``.

``expires_at`` is what a chaos experiment sets (:mod:`hybridmesh.chaos.gateway_faults`):
every replica stops faulting at that moment by its own clock, so a fault whose runner died
before its rollback still ends after its declared duration, with no one writing to the
store.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from hybridmesh.core.limits import Delay
from hybridmesh.core.names import Name
from hybridmesh.gateway.config import HeaderName, Percent, PolicyKind, register_policy
from hybridmesh.gateway.http import Answer, ProxyRequest, problem
from hybridmesh.gateway.policies.base import ORDER_FAULTS, Policy, PolicyContext, register_builder


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultDelay(_Strict):
    percent: Percent
    seconds: Delay


class FaultAbort(_Strict):
    percent: Percent
    status: int = Field(503, ge=400, le=599)


class FaultSettings(_Strict):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None
    #: Only requests carrying this header are faulted (any value).
    header: HeaderName | None = None
    #: Only requests going to these backends of the route (by name); all when empty.
    backends: tuple[Name, ...] = ()
    #: Unix seconds from which the faults do nothing (None: until the route changes).
    expires_at: float | None = Field(None, ge=0, allow_inf_nan=False)


class Faults(Policy):
    """Runs once the backend is chosen, so that a fault can hit one backend of a split."""

    acts_before_send = True

    def __init__(
        self,
        settings: FaultSettings,
        context: PolicyContext,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.backends = frozenset(settings.backends)
        self.rng = random.Random()
        self.clock = clock

    async def before_send(self, request: ProxyRequest, backend: str) -> Answer | None:
        settings = self.settings
        if settings.expires_at is not None and self.clock() >= settings.expires_at:
            return None
        if settings.header is not None and settings.header not in request.headers:
            return None
        if self.backends and backend not in self.backends:
            return None
        delay = settings.delay
        if delay is not None and self.rng.random() * 100 < delay.percent:
            await asyncio.sleep(delay.seconds)
        abort = settings.abort
        if abort is not None and self.rng.random() * 100 < abort.percent:
            return problem(
                abort.status,
                "fault injected by the route's faults policy",
                request_id=request.request_id,
            )
        return None


register_policy(PolicyKind("faults", FaultSettings, ORDER_FAULTS, __doc__ or ""))
register_builder("faults", Faults)
