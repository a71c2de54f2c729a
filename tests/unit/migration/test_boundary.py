"""Boundary experiments' pure parts: the verdict on the candidate's figures, the spec, and
the route with the candidate added and taken out again."""

from __future__ import annotations

from typing import Any

import pytest

from hybridmesh.core.errors import ValidationError
from hybridmesh.gateway.config import Route, parse_routes
from hybridmesh.migration.boundary import (
    Figures,
    Hypothesis,
    Verdict,
    judge,
    parse_spec,
    with_candidate,
    without_candidate,
)

HYPOTHESIS = Hypothesis(
    max_error_rate=0.01, max_p95_ms=200, max_mismatch_rate=0.05, min_requests=10, min_compared=10
)


def figures(**given: Any) -> Figures:
    base: dict[str, Any] = {
        "requests": 100,
        "errors": 0,
        "p95_ms": 50.0,
        "compared": 100,
        "mismatches": 0,
    }
    return Figures(**{**base, **given})


def test_every_threshold_met_is_confirmed() -> None:
    # A threshold is met at its value: at most 1 % errors, 200 ms, 5 % mismatches.
    at_limits = figures(errors=1, p95_ms=200.0, mismatches=5)
    assert judge(HYPOTHESIS, at_limits) == (Verdict.CONFIRMED, ())


def test_each_threshold_missed_is_named_with_the_value_measured() -> None:
    verdict, reasons = judge(HYPOTHESIS, figures(errors=2, p95_ms=250.0, mismatches=6))
    assert verdict is Verdict.REJECTED
    assert reasons == (
        "error rate 2.00% (2 of 100) is over max_error_rate 1.00%",
        "p95 250.0 ms is over max_p95_ms 200 ms",
        "mismatch rate 6.00% (6 of 100 compared) is over max_mismatch_rate 5.00%",
    )


def test_too_little_traffic_is_inconclusive_unless_what_was_judged_is_already_missed() -> None:
    verdict, reasons = judge(HYPOTHESIS, figures(requests=9, compared=9))
    assert verdict is Verdict.INCONCLUSIVE
    assert reasons == (
        "9 requests reached the candidate, fewer than the 10 needed (min_requests): error "
        "rate and p95 not judged",
        "9 answers compared, fewer than the 10 needed (min_compared): mismatch rate not judged",
    )
    # A candidate that is down answers nothing to compare, and is still rejected.
    verdict, reasons = judge(HYPOTHESIS, figures(errors=100, p95_ms=1.0, compared=0))
    assert verdict is Verdict.REJECTED
    assert reasons == ("error rate 100.00% (100 of 100) is over max_error_rate 1.00%",)


ROUTE = """
name: shop
backends:
  - {name: legacy, url: "http://127.0.0.1:9001", weight: 90}
  - {name: modern, url: "http://127.0.0.1:9002", weight: 10}
mirror: {backend: modern, percent: 50}
"""


def route() -> Route:
    return parse_routes(ROUTE, "routes.yaml")[0].route


def spec(**given: Any) -> Any:
    data = {
        "id": "try-1",
        "route": "shop",
        "candidate": {"url": "http://127.0.0.1:9003/v2/"},
        "duration": "5m",
        "compare": {"ignore": ["request_id"]},
        **given,
    }
    return parse_spec(data)


def test_the_candidate_joins_the_route_at_0_percent_and_is_mirrored() -> None:
    changed = with_candidate(route(), spec())
    assert [(b.name, b.weight) for b in changed.backends] == [
        ("legacy", 90),
        ("modern", 10),
        ("try-1", 0),
    ]
    assert changed.backend("try-1").url == "http://127.0.0.1:9003/v2"
    assert changed.mirror is not None
    assert changed.mirror.backend == "try-1" and changed.mirror.percent == 100
    assert changed.mirror.compare.ignore == ("request_id",)
    assert spec().duration == 300


def test_taking_the_candidate_out_of_a_changed_route_keeps_the_change() -> None:
    original = route()
    changed = with_candidate(original, spec()).with_weight("legacy", 50)
    cleaned = without_candidate(changed, original, spec())
    assert cleaned == original.with_weight("legacy", 50)
    # Traffic given to the candidate meanwhile: its backend stays, its mirror goes.
    sent = with_candidate(original, spec()).with_weight("try-1", 5)
    kept = without_candidate(sent, original, spec())
    assert kept.backend("try-1").weight == 5
    assert kept.mirror == original.mirror


def test_a_spec_that_is_wrong_names_each_field() -> None:
    with pytest.raises(ValidationError) as invalid:
        spec(duration="soon", candidate={}, hypothesis={"max_error_rate": 2}, method="switch")
    fields = sorted(p.field or "" for p in invalid.value.problems)
    assert fields == ["candidate", "duration", "hypothesis.max_error_rate", "method"]
