"""Which traces are recorded: the OpenTelemetry samplers ``OTEL_TRACES_SAMPLER`` names.

A sampler decides once per span, when it starts. A span that is not sampled still carries
its trace and span ids (logs and the outbound ``traceparent`` name them) with the sampled
flag off, so that parent-based samplers downstream drop the rest of the trace too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from opentelemetry.sdk.trace import sampling
from opentelemetry.trace import SpanContext

from hybridmesh.core.settings import Settings

log = logging.getLogger("hybridmesh.observability")

#: Trace ids are compared by their lower 64 bits, as the OpenTelemetry SDK does, so that a
#: trace sampled here is sampled by every SDK sampling it at the same ratio.
_LOW_64 = (1 << 64) - 1
_ALL = 1 << 64
_NAMES = frozenset(
    {
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    }
)


@dataclass(frozen=True, slots=True)
class Sampler:
    """A sampling rule: follow a valid parent's decision (``parent_based``), and otherwise
    record the traces whose trace id falls below ``bound`` (of 2**64): ``ratio`` of them."""

    name: str
    parent_based: bool
    ratio: float
    bound: int

    @classmethod
    def named(cls, name: str, arg: str | None = None) -> Sampler:
        """The sampler ``OTEL_TRACES_SAMPLER=name`` with ``OTEL_TRACES_SAMPLER_ARG=arg``.

        As the specification asks, an unknown name is logged and gives the default,
        ``parentbased_always_on``; a ratio that is missing, not a number or outside 0..1 is
        logged and gives 1.0.
        """
        name = name.strip().lower()
        if name not in _NAMES:
            log.warning("OTEL_TRACES_SAMPLER %r is not known; using parentbased_always_on", name)
            name = "parentbased_always_on"
        ratio = 1.0
        if name.endswith("always_off"):
            ratio = 0.0
        elif name.endswith("traceidratio"):
            ratio = _ratio(arg)
        return cls(name, name.startswith("parentbased_"), ratio, round(ratio * _ALL))

    @classmethod
    def from_settings(cls, settings: Settings) -> Sampler:
        """The sampler ``settings`` (the ``OTEL_TRACES_SAMPLER*`` variables) name."""
        return cls.named(settings.otel_traces_sampler, settings.otel_traces_sampler_arg)

    def sampled(self, parent: SpanContext, trace_id: int) -> bool:
        """Whether a new span in trace ``trace_id`` under ``parent`` (valid or not) is
        recorded."""
        if self.parent_based and parent.is_valid:
            return bool(parent.trace_flags & 0x01)
        return (trace_id & _LOW_64) < self.bound

    def for_sdk(self) -> sampling.Sampler:
        """The same rule as the OpenTelemetry SDK's sampler, for spans the SDK makes."""
        root: sampling.Sampler = sampling.TraceIdRatioBased(self.ratio)
        if self.ratio >= 1.0:
            root = sampling.ALWAYS_ON
        elif self.ratio <= 0.0:
            root = sampling.ALWAYS_OFF
        return sampling.ParentBased(root) if self.parent_based else root


def _ratio(arg: str | None) -> float:
    try:
        ratio = float(arg) if arg is not None else None
    except ValueError:
        ratio = None
    if ratio is None or not 0.0 <= ratio <= 1.0:
        log.warning("OTEL_TRACES_SAMPLER_ARG %r is not a ratio from 0 to 1; using 1.0", arg)
        return 1.0
    return ratio


__all__ = ["Sampler"]
