"""The integration matrix: which patterns two architectures should use, and why.

The rules are the integration guide's. They are tried most specific first: the exact pair,
then a traditional monolith on either side (it is protected whoever calls), then a serverless
function on either side, then the guide's fallback, which treats an unknown pair as
conservatively as a legacy target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hybridmesh.registry.models import Architecture, PatternType

_R, _G, _E, _B = PatternType.REST, PatternType.GRAPHQL, PatternType.EVENTS, PatternType.BATCH

_RULES: dict[str, tuple[tuple[PatternType, ...], str]] = {
    "microservice->microservice": (
        (_E, _R, _G),
        "Loose coupling through events, direct sync calls when needed",
    ),
    "microservice->modular-monolith": ((_E, _R), "Events for notifications, REST for queries"),
    "modular-monolith->microservice": (
        (_R, _E),
        "REST for simple operations, events for complex workflows",
    ),
    "modular-monolith->modular-monolith": (
        (_E, _B, _R),
        "Events for decoupling, batch for efficiency",
    ),
    "traditional-monolith->*": (
        (_R, _B),
        "Conservative integration to protect legacy system",
    ),
    "*->traditional-monolith": ((_R, _B), "API gateway proxy with rate limiting"),
    "serverless->*": (
        (_E, _R),
        "Event-triggered functions; HTTP calls for API integration and transformations",
    ),
    "*->serverless": (
        (_E, _R),
        "Trigger functions with events; API proxy functions for synchronous translation",
    ),
}

#: Words in a use case that point at one pattern, from the guide's use-case lists.
_USE_CASE_HINTS: tuple[tuple[tuple[str, ...], PatternType], ...] = (
    (("bulk", "nightly", "report", "etl", "export", "import", "sync", "scheduled"), _B),
    (("notif", "event", "workflow", "trigger", "analytics", "track", "decoupl"), _E),
    (("mobile", "aggregat", "flexible", "dashboard"), _G),
    (("live", "real-time update", "realtime", "push", "stream"), PatternType.WEBSOCKET),
    (("query", "lookup", "validat", "fetch", "read", "real-time", "crud", "user-facing"), _R),
)


@dataclass(frozen=True)
class Recommendation:
    """The preferred patterns for a pair of architectures, best first.

    ``rule`` is the matrix entry that matched; ``for_use_case`` is the preferred pattern the
    use case points at, when one was given and a preferred pattern fits it.
    """

    source: Architecture
    target: Architecture
    preferred: tuple[PatternType, ...]
    rationale: str
    rule: str
    use_case: str | None = None
    for_use_case: PatternType | None = None

    def to_dict(self) -> dict[str, Any]:
        """As ``hybridmesh registry recommend --json`` prints it and the API answers it."""
        return {
            "source": self.source.value,
            "target": self.target.value,
            "preferred": [p.value for p in self.preferred],
            "rationale": self.rationale,
            "rule": self.rule,
            "use_case": self.use_case,
            "for_use_case": self.for_use_case.value if self.for_use_case else None,
        }


def _rule_for(source: Architecture, target: Architecture) -> str:
    legacy, serverless = Architecture.TRADITIONAL_MONOLITH, Architecture.SERVERLESS
    candidates = [f"{source}->{target}"]
    # A traditional monolith on either side outranks a serverless function on the other.
    for arch in (legacy, serverless):
        if source is arch:
            candidates.append(f"{arch}->*")
        if target is arch:
            candidates.append(f"*->{arch}")
    for key in candidates:
        if key in _RULES:
            return key
    return "*->traditional-monolith"


def recommend(
    source_architecture: str, target_architecture: str, use_case: str | None = None
) -> Recommendation:
    """The guide's recommendation for ``source_architecture`` calling ``target_architecture``.

    Raises ``ValueError`` for an architecture that is not one of the four.
    """
    source = Architecture(source_architecture)
    target = Architecture(target_architecture)
    rule = _rule_for(source, target)
    preferred, rationale = _RULES[rule]
    hint: PatternType | None = None
    if use_case:
        words = use_case.lower()
        for needles, pattern in _USE_CASE_HINTS:
            if pattern in preferred and any(n in words for n in needles):
                hint = pattern
                break
    return Recommendation(source, target, preferred, rationale, rule, use_case, hint)


def matrix() -> list[Recommendation]:
    """The recommendation for every ordered pair of the four architectures."""
    return [recommend(s, t) for s in Architecture for t in Architecture]


__all__ = ["Recommendation", "matrix", "recommend"]
