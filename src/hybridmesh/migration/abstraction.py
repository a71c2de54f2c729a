"""Branch by abstraction: an old and a new implementation behind one callable.

An :class:`Abstraction` holds two async implementations of one interface (same arguments,
same kind of result). On each ``await abstraction.call(context, *args, **kwargs)`` its
``choose(context)`` says which one runs, ``"old"`` or ``"new"``: a plain synchronous
function of a mapping (the user, tenant, region...), so that a feature flag evaluation can
stand behind it later. Anything else it returns, or an exception it raises, means
``"old"`` (and is logged).

When the new implementation raises, or takes longer than ``timeout`` seconds, the call
falls back to the old one with the same arguments (unless ``fallback=False``, when the
new one's exception reaches the caller). The old implementation has no fallback: its
exceptions are the caller's. Each implementation counts its calls, errors, fallbacks (calls
it failed that the old one then answered) and a latency histogram in memory
(:meth:`Abstraction.snapshot`); with a ``recorder`` (a
:class:`~hybridmesh.gateway.stats.WindowRecorder`) each call is also counted in the store's
per-second windows as route ``abstraction:<name>``, backend ``old`` or ``new``, status 200
or 500, so :func:`~hybridmesh.gateway.stats.window_stats` gives each implementation's error
rate and latency percentiles over the last seconds, across processes::

    orders = Abstraction("orders", old=legacy_orders, new=orders_service,
                         choose=lambda context: "new" if context["beta"] else "old",
                         timeout=2.0, recorder=recorder)
    order = await orders.call({"beta": user.beta}, order_id)
    stats = await window_stats(store, "abstraction:orders", 300)
    stats.backends["new"].error_rate, stats.backends["new"].p95_ms

With ``shadow=True`` the implementation not chosen also runs, as the candidate of an
:class:`~hybridmesh.migration.experiment.Experiment` whose control is the chosen one: the
caller still gets the chosen one's answer, and :attr:`Abstraction.shadow_stats` counts how
often the two agree (candidate ``new`` when the old one served, ``old`` when the new one
did). Shadow runs are not counted in the implementations' metrics or windows, and they
run the other implementation for real: only for calls without side effects. The
experiments are in :attr:`Abstraction.shadows` (by the implementation that serves) for
tuning, such as a ``sample`` rate or a ``compare``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, ParamSpec, TypeVar

from hybridmesh.flags.client import FlagClient
from hybridmesh.gateway.stats import LatencyHistogram, WindowRecorder
from hybridmesh.migration.experiment import DEFAULT_TIMEOUT, Experiment, ExperimentStats
from hybridmesh.observability import get_logger

log = get_logger("hybridmesh.migration.abstraction")

P = ParamSpec("P")
R = TypeVar("R")

OLD: Literal["old"] = "old"
NEW: Literal["new"] = "new"
Implementation = Literal["old", "new"]
#: Picks the implementation of one call from its context: ``"old"`` or ``"new"``.
Chooser = Callable[[Mapping[str, Any]], str]
#: The statuses a call is counted with in the windows.
OK_STATUS = 200
ERROR_STATUS = 500


def always(implementation: Implementation) -> Chooser:
    """A chooser that always picks ``implementation``."""

    def choose(context: Mapping[str, Any]) -> str:
        return implementation

    return choose


def flag_chooser(flags: FlagClient, key: str) -> Chooser:
    """A chooser that asks feature flag ``key`` (variants named ``old`` and ``new``) for
    each call, with the call's context as the evaluation context (its ``targetingKey``
    keeps a user on one side while a ``branch_by_abstraction`` plan grows the new one).
    Any error of the flag serves ``old``."""

    def choose(context: Mapping[str, Any]) -> str:
        variant = flags.evaluate(key, context).variant
        return variant if variant in (OLD, NEW) else OLD

    return choose


@dataclass
class ImplementationStats:
    """One implementation's calls, errors (timeouts included), fallbacks and latency."""

    calls: int = 0
    errors: int = 0
    #: Calls it failed that the old implementation then answered (the new one's only).
    fallbacks: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram, repr=False)

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0

    def percentile_ms(self, percent: float) -> float | None:
        return self.latency.percentile_ms(percent)

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "calls": self.calls,
            "errors": self.errors,
            "fallbacks": self.fallbacks,
            "error_rate": round(self.error_rate, 6),
            "p50_ms": rounded(self.percentile_ms(50)),
            "p95_ms": rounded(self.percentile_ms(95)),
        }


class Abstraction(Generic[P, R]):
    """Two implementations of one async interface, one chosen per call; see the module."""

    def __init__(
        self,
        name: str,
        old: Callable[P, Awaitable[R]],
        new: Callable[P, Awaitable[R]],
        *,
        choose: Chooser,
        timeout: float | None = None,
        fallback: bool = True,
        recorder: WindowRecorder | None = None,
        shadow: bool = False,
    ) -> None:
        self.name = name
        self.route = f"abstraction:{name}"
        self.implementations: dict[Implementation, Callable[P, Awaitable[R]]] = {
            OLD: old,
            NEW: new,
        }
        self.choose = choose
        self.timeout = timeout
        self.fallback = fallback
        self.recorder = recorder
        self.stats: dict[Implementation, ImplementationStats] = {
            OLD: ImplementationStats(),
            NEW: ImplementationStats(),
        }
        self.shadow_stats: ExperimentStats | None = None
        self.shadows: dict[Implementation, Experiment[P, R]] = {}
        if shadow:
            self.shadow_stats = ExperimentStats()
            for served, other in ((OLD, NEW), (NEW, OLD)):
                self.shadows[served] = Experiment(
                    name,
                    self._serving(served),
                    {other: self.implementations[other]},
                    timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
                    publishers=[self.shadow_stats],
                )

    async def call(self, context: Mapping[str, Any], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """The chosen implementation's answer (the old one's after a fallback)."""
        chosen = self._choose(context)
        shadow = self.shadows.get(chosen)
        if shadow is not None:
            return await shadow.run(*args, **kwargs)
        return await self._serve(chosen, *args, **kwargs)

    def snapshot(self) -> dict[str, Any]:
        """The in-memory metrics: per implementation, and the shadow runs' if any."""
        shown: dict[str, Any] = {
            "name": self.name,
            OLD: self.stats[OLD].to_dict(),
            NEW: self.stats[NEW].to_dict(),
        }
        if self.shadow_stats is not None:
            shown["shadow"] = self.shadow_stats.snapshot()
        return shown

    async def drain(self) -> None:
        """Wait for the shadow runs under way to be compared."""
        for experiment in self.shadows.values():
            await experiment.drain()

    async def close(self) -> None:
        """Stop shadow runs (the recorder is the owner's to close)."""
        for experiment in self.shadows.values():
            await experiment.close()

    def _choose(self, context: Mapping[str, Any]) -> Implementation:
        try:
            chosen = self.choose(context)
        except Exception:
            log.exception("abstraction %s: choose failed; the old implementation runs", self.name)
            return OLD
        if chosen == NEW:
            return NEW
        if chosen != OLD:
            log.warning("abstraction %s: choose gave %r; the old one runs", self.name, chosen)
        return OLD

    def _serving(self, chosen: Implementation) -> Callable[P, Awaitable[R]]:
        async def serve(*args: P.args, **kwargs: P.kwargs) -> R:
            return await self._serve(chosen, *args, **kwargs)

        return serve

    async def _serve(self, chosen: Implementation, *args: P.args, **kwargs: P.kwargs) -> R:
        if chosen == OLD:
            return await self._timed(OLD, *args, **kwargs)
        try:
            return await self._timed(NEW, *args, **kwargs)
        except Exception as error:
            if not self.fallback:
                raise
            log.warning(
                "abstraction %s: the new implementation failed (%r); the old one answers",
                self.name,
                error,
            )
            self.stats[NEW].fallbacks += 1
        return await self._timed(OLD, *args, **kwargs)

    async def _timed(
        self,
        implementation: Implementation,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """One implementation's answer, counted (the new one bounded by ``timeout``)."""
        timeout = self.timeout if implementation == NEW else None
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(timeout):
                value = await self.implementations[implementation](*args, **kwargs)
        except Exception:
            self._count(implementation, loop.time() - started, failed=True)
            raise
        self._count(implementation, loop.time() - started, failed=False)
        return value

    def _count(self, implementation: Implementation, seconds: float, *, failed: bool) -> None:
        stats = self.stats[implementation]
        stats.calls += 1
        stats.errors += failed
        stats.latency.add(seconds)
        if self.recorder is not None:
            status = ERROR_STATUS if failed else OK_STATUS
            self.recorder.observe(self.route, implementation, status, seconds)


__all__ = [
    "NEW",
    "OLD",
    "Abstraction",
    "Chooser",
    "Implementation",
    "ImplementationStats",
    "always",
    "flag_chooser",
]
