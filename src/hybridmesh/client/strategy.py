"""Which patterns a call uses, by the pair of architectures and the kind of request.

This is the integration guide's ``getOptimalStrategy`` as data. Each strategy lists the
patterns to try in order, each with optional timeout/retry settings that override the
target's policy for that pattern, and what to do when they all fail:

========================================  =========  ===========================================
source -> target                          request    patterns, then fallback
========================================  =========  ===========================================
microservice -> microservice              query      graphql when a query document is given,
                                                     else rest (5 s, 3 retries); cached answer
microservice -> microservice              command    events (30 s); then direct rest (15 s, 1 retry)
microservice -> modular-monolith          any        rest (10 s, 2 retries, pooled); queries: cached
                                                     answer, commands: batch
modular-monolith -> microservice          query      rest; cached answer
modular-monolith -> microservice          command    rest; then events
modular-monolith -> modular-monolith      query      rest; cached answer
modular-monolith -> modular-monolith      command    events; then rest
* -> traditional-monolith                 query      rest (conservative policy); cached answer
* -> traditional-monolith                 command    rest (conservative policy); then batch
traditional-monolith -> *                 query      rest; cached answer
traditional-monolith -> *                 command    rest; then batch
* -> serverless                           any        rest (the function's HTTP endpoint); queries:
                                                     cached answer
any                                       batch      batch
========================================  =========  ===========================================

A request may name its pattern (``CommunicationRequest.pattern``); then only that pattern is
used, with the cached answer as fallback for queries.

The target's ``capabilities`` then rule patterns out (:func:`fit_to_capabilities`): GraphQL
only where ``graphql: true``, events only where ``asynchronous: true``, batch only where
``bulk_operations: true``; REST is always allowed. A service whose definition states no
``capabilities`` is taken as it comes. When no pattern is left, the call fails with
:class:`PatternNotAllowedError` before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from hybridmesh.core.errors import ConfigurationError
from hybridmesh.registry.models import Capabilities, ServiceDefinition

#: The capability a pattern needs of its target; a pattern not named here needs none.
PATTERN_NEEDS = {"graphql": "graphql", "events": "asynchronous", "batch": "bulk_operations"}


class PatternNotAllowedError(ConfigurationError):
    """No pattern of a call's strategy is one its target's capabilities allow.

    ``ruled_out`` lists the patterns the strategy had, each refused by ``capabilities``.
    """

    retryable = False

    def __init__(self, service: str, ruled_out: Iterable[str]) -> None:
        self.service = service
        self.ruled_out = tuple(ruled_out)
        needs = ", ".join(f"{p} needs {PATTERN_NEEDS[p]}: true" for p in self.ruled_out)
        super().__init__(
            f"{service} allows none of the patterns this call may use "
            f"({', '.join(self.ruled_out)}): its capabilities rule them out ({needs})"
        )


class RequestType(StrEnum):
    """What a call does: reads (query), changes state (command), or moves records in bulk."""

    QUERY = "query"
    COMMAND = "command"
    BATCH = "batch"


@dataclass(frozen=True, slots=True)
class PatternStep:
    """One pattern of a strategy, with settings that override the target's policy."""

    pattern: str
    timeout: float | None = None
    retries: int | None = None


@dataclass(frozen=True, slots=True)
class Strategy:
    """Patterns tried in order; ``use_cache`` serves the last good answer when all fail."""

    name: str
    steps: tuple[PatternStep, ...]
    use_cache: bool = False

    @property
    def patterns(self) -> tuple[str, ...]:
        return tuple(step.pattern for step in self.steps)


_MS = "microservice"
_MM = "modular-monolith"
_TM = "traditional-monolith"
_SL = "serverless"


def select_strategy(
    source_architecture: str,
    target_architecture: str,
    request_type: RequestType | str,
    *,
    has_graphql_query: bool = False,
) -> Strategy:
    """The strategy for a call from one architecture to another (see the module table)."""
    return _select(
        str(source_architecture),
        str(target_architecture),
        RequestType(request_type),
        has_graphql_query,
    )


@lru_cache(maxsize=256)
def _select(src: str, tgt: str, kind: RequestType, has_graphql_query: bool) -> Strategy:
    if kind is RequestType.BATCH:
        return Strategy("batch", (PatternStep("batch"),))
    query = kind is RequestType.QUERY
    rest = PatternStep("rest")

    if tgt == _TM or src == _TM:
        name = "legacy-protected" if tgt == _TM else "legacy-outbound"
        if query:
            return Strategy(f"{name}-query", (rest,), use_cache=True)
        return Strategy(f"{name}-command", (rest, PatternStep("batch")))
    if tgt == _SL:
        return Strategy("serverless-function", (rest,), use_cache=query)
    if src == _MS and tgt == _MS:
        if query:
            first = (
                PatternStep("graphql", timeout=10.0)
                if has_graphql_query
                else PatternStep("rest", timeout=5.0, retries=3)
            )
            return Strategy("micro-to-micro-query", (first,), use_cache=True)
        return Strategy(
            "micro-to-micro-command",
            (PatternStep("events", timeout=30.0, retries=0), PatternStep("rest", 15.0, 1)),
        )
    if tgt == _MM and src in (_MS, _SL):
        step = PatternStep("rest", timeout=10.0, retries=2)
        if query:
            return Strategy("micro-to-monolith-query", (step,), use_cache=True)
        return Strategy("micro-to-monolith-command", (step, PatternStep("batch")))
    if src == _MM and tgt == _MS:
        if query:
            return Strategy("monolith-to-micro-query", (rest,), use_cache=True)
        return Strategy("monolith-to-micro-command", (rest, PatternStep("events")))
    if src == _MM and tgt == _MM:
        if query:
            return Strategy("monolith-to-monolith-query", (rest,), use_cache=True)
        return Strategy("monolith-to-monolith-command", (PatternStep("events"), rest))
    # serverless -> microservice and anything not named above: plain REST.
    return Strategy("default", (rest,), use_cache=query)


@lru_cache(maxsize=64)
def forced_strategy(pattern: str, request_type: RequestType | str) -> Strategy:
    """A strategy that uses only ``pattern`` (the caller named it)."""
    query = RequestType(request_type) is RequestType.QUERY
    return Strategy(f"explicit-{pattern}", (PatternStep(pattern),), use_cache=query)


def ruled_out(patterns: Iterable[str], capabilities: Capabilities) -> tuple[str, ...]:
    """The ``patterns`` that ``capabilities`` do not allow, in their order."""
    return tuple(
        p for p in patterns if p in PATTERN_NEEDS and not getattr(capabilities, PATTERN_NEEDS[p])
    )


def states_capabilities(service: ServiceDefinition) -> bool:
    """Whether ``service``'s definition states its capabilities (else none are filtered)."""
    return "capabilities" in service.model_fields_set


def fit_to_capabilities(strategy: Strategy, service: ServiceDefinition) -> Strategy:
    """``strategy`` without the patterns ``service``'s capabilities rule out.

    Raises :class:`PatternNotAllowedError` naming the service and the patterns ruled out
    when none is left. A service that states no capabilities keeps the whole strategy.
    """
    if not states_capabilities(service):
        return strategy
    return _fit(strategy, service.name, service.capabilities)


@lru_cache(maxsize=512)
def _fit(strategy: Strategy, service: str, capabilities: Capabilities) -> Strategy:
    refused = ruled_out(strategy.patterns, capabilities)
    if not refused:
        return strategy
    steps = tuple(step for step in strategy.steps if step.pattern not in refused)
    if not steps:
        raise PatternNotAllowedError(service, refused)
    return Strategy(strategy.name, steps, strategy.use_cache)


__all__ = [
    "PATTERN_NEEDS",
    "PatternNotAllowedError",
    "PatternStep",
    "RequestType",
    "Strategy",
    "fit_to_capabilities",
    "forced_strategy",
    "ruled_out",
    "select_strategy",
    "states_capabilities",
]
