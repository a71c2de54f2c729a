"""Gates: whether a step's backend is healthy enough for the plan to go on.

A gate reads the per-second windows every gateway replica (or an abstraction) writes
(:func:`hybridmesh.gateway.stats.window_stats`) for the step's route and backend, and
judges them against the step's :class:`~hybridmesh.migration.plans.Criteria`:

- **fail**: the error rate (answers of 500 and over, the gateway's own 502/503/504
  included) is at or over ``max_error_rate``, or the p95 at or over ``max_p95_ms``;
- **inconclusive**: fewer than ``min_requests`` requests: too little traffic to tell. A gate
  never passes on a missing metric;
- **pass** otherwise.

:class:`Tally` keeps a step's measurements through its window (it is stored with the plan,
so a runner that takes over goes on counting).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from hybridmesh.gateway.stats import MAX_WINDOW_SECONDS, BackendWindow, window_stats
from hybridmesh.migration.plans import Criteria, Measure
from hybridmesh.store import Store


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Measurement:
    """One look at a backend over ``seconds``."""

    seconds: int
    requests: int
    errors: int
    p95_ms: float | None
    verdict: Verdict
    #: Why it failed or was inconclusive (empty when it passed).
    reasons: tuple[str, ...] = ()
    #: A parallel run's answers compared with the primary's, and those that differed.
    compared: int = 0
    mismatches: int = 0

    @property
    def mismatch_rate(self) -> float:
        return self.mismatches / self.compared if self.compared else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "p95_ms": None if self.p95_ms is None else round(self.p95_ms, 3),
            "verdict": self.verdict.value,
            "reasons": list(self.reasons),
            "compared": self.compared,
            "mismatches": self.mismatches,
            "mismatch_rate": round(self.mismatch_rate, 6),
        }


def judge(window: BackendWindow | None, seconds: int, criteria: Criteria) -> Measurement:
    """The verdict on ``window`` (None: no request reached the backend)."""
    requests = window.requests if window is not None else 0
    errors = window.errors if window is not None else 0
    p95 = window.p95_ms if window is not None else None
    compared = window.compared if window is not None else 0
    mismatches = window.mismatches if window is not None else 0

    def measured(verdict: Verdict, reasons: tuple[str, ...]) -> Measurement:
        return Measurement(seconds, requests, errors, p95, verdict, reasons, compared, mismatches)

    if requests < criteria.min_requests:
        reason = f"{requests} requests, fewer than the {criteria.min_requests} needed"
        return measured(Verdict.INCONCLUSIVE, (reason,))
    if criteria.max_mismatch_rate is not None and compared < criteria.min_compared:
        reason = f"{compared} answers compared, fewer than the {criteria.min_compared} needed"
        return measured(Verdict.INCONCLUSIVE, (reason,))
    reasons = []
    rate = errors / requests
    if rate >= criteria.max_error_rate:
        reasons.append(f"error rate {rate:.2%} is at or over {criteria.max_error_rate:.2%}")
    if p95 is not None and p95 >= criteria.max_p95_ms:
        reasons.append(f"p95 {p95:.0f} ms is at or over {criteria.max_p95_ms:g} ms")
    limit = criteria.max_mismatch_rate
    if limit is not None and mismatches and mismatches / compared >= limit:
        reasons.append(
            f"mismatch rate {mismatches / compared:.2%} ({mismatches} of {compared} compared) "
            f"is at or over {limit:.2%}"
        )
    return measured(Verdict.FAIL if reasons else Verdict.PASS, tuple(reasons))


async def measure(
    store: Store, what: Measure, since: int, until: int, criteria: Criteria
) -> Measurement:
    """Judge ``what``'s backend over the seconds ``since`` (included) to ``until``
    (excluded; at least one, at most :data:`MAX_WINDOW_SECONDS`)."""
    span = max(1, min(until - since, MAX_WINDOW_SECONDS))
    stats = await window_stats(store, what.route, span, now=since + span)
    return judge(stats.backends.get(what.backend), span, criteria)


@dataclass
class Tally:
    """A step's measurements so far in its window."""

    measurements: int = 0
    passed: int = 0
    failed: int = 0
    inconclusive: int = 0
    #: Measurements in a row that could not be taken (the store unreachable, say).
    errors_in_row: int = 0
    #: When the last measurement was taken, and the first second not judged yet.
    measured_at: float | None = None
    measured_until: int | None = None
    requests: int = 0
    last: dict[str, Any] | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Tally:
        return cls(**data) if data else cls()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, measurement: Measurement) -> None:
        self.measurements += 1
        self.errors_in_row = 0
        self.requests += measurement.requests
        self.last = measurement.to_dict()
        if measurement.verdict is Verdict.PASS:
            self.passed += 1
        elif measurement.verdict is Verdict.FAIL:
            self.failed += 1
            self.failures = [*self.failures[-4:], measurement.to_dict()]
        else:
            self.inconclusive += 1

    def could_not_measure(self, error: str) -> None:
        self.measurements += 1
        self.errors_in_row += 1
        self.last = {"error": error}


__all__ = ["Measurement", "Tally", "Verdict", "judge", "measure"]
