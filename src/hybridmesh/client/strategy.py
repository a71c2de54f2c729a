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
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache


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


__all__ = ["PatternStep", "RequestType", "Strategy", "forced_strategy", "select_strategy"]
