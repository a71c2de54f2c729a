"""Migration plans as written: validation with file, line and field; the strangler fig's
generated steps; rollback targets; gate verdicts."""

from __future__ import annotations

import pytest

from hybridmesh.core.errors import ValidationError
from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.stats import BackendWindow, LatencyHistogram
from hybridmesh.migration.gates import Verdict, judge
from hybridmesh.migration.plans import (
    Criteria,
    PrepareRoute,
    RetireBackend,
    RetireReplication,
    SetReplication,
    SetWeight,
    build_plan,
    parse_plans,
)

ROUTES = {
    loaded.route.name: loaded.route
    for loaded in parse_routes(
        """
routes:
  - name: content-delivery
    match: {path: {prefix: /content}}
    backends:
      - {name: monolith, service: content-management, weight: 100}
      - {name: delivery, service: content-delivery, weight: 0}
""",
        "routes.yaml",
    )
}

PLAN = """\
name: split-content
source: content-management
strategy: strangler_fig
criteria: {interval: 30s, window: 5m}
targets:
  - service: content-delivery
    approve_at: [50]
"""


def test_the_strangler_fig_prepares_the_route_then_steps_through_the_guides_percents() -> None:
    (loaded,) = parse_plans(PLAN, "plan.yaml")
    plan = build_plan(loaded.spec, ROUTES)
    actions = [step.action for step in plan.steps]
    assert actions[0] == PrepareRoute(
        route="content-delivery", source_backend="monolith", target_backend="delivery"
    )
    weights = [a.percent for a in actions if isinstance(a, SetWeight)]
    assert weights == [1, 5, 10, 25, 50, 75, 100]
    assert actions[-1] == RetireBackend(route="content-delivery", backend="monolith")
    assert plan.steps[-1].approval, "retiring the old path waits for a person"
    assert [s.approval for s in plan.steps[1:-1]] == [False] * 4 + [True] + [False] * 2
    gate = plan.steps[1].gate
    assert gate is not None and (gate.interval, gate.window) == (30, 300)
    assert (gate.max_error_rate, gate.max_p95_ms) == (0.01, 500)  # the guide's thresholds


def test_rollback_goes_to_the_previous_step_or_to_zero() -> None:
    (loaded,) = parse_plans(PLAN, "plan.yaml")
    plan = build_plan(loaded.spec, ROUTES)
    at_five = next(i for i, s in enumerate(plan.steps) if s.name == "content-delivery 5%")
    assert plan.rollback_action(at_five) == SetWeight(
        route="content-delivery", backend="delivery", percent=1
    )
    zero = build_plan(loaded.spec.model_copy(update={"rollback": "zero"}), ROUTES)
    assert zero.rollback_action(at_five) == SetWeight(
        route="content-delivery", backend="delivery", percent=0
    )


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        (PLAN.replace("strangler_fig", "big_bang"), 3, "strategy", "strangler_fig"),
        (PLAN.replace("interval: 30s", "interval: soon"), 4, "criteria.interval", "duration"),
        (PLAN.replace("approve_at: [50]", "approve_at: [55]"), 6, "targets.0", "not steps"),
        (PLAN + "    steps: [10, 5]\n", 6, "targets.0", "grow"),
        (PLAN + "colour: blue\n", 8, "colour", "unknown field"),
    ],
)
def test_a_bad_plan_names_file_line_and_field(text: str, line: int, field: str, words: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_plans(text, "plans/split.yaml")
    (problem,) = refused.value.problems
    assert (problem.file, problem.line, problem.field) == ("plans/split.yaml", line, field)
    assert words in problem.message


def test_a_decomposition_plan_needs_its_replication() -> None:
    (loaded,) = parse_plans(PLAN.replace("strangler_fig", "database_decomposition"), "p.yaml")
    with pytest.raises(ValidationError) as refused:
        build_plan(loaded.spec, ROUTES)
    problem = refused.value.problems[0]
    assert problem.field == "targets.0.replication"
    assert "replicate apply" in problem.message


def test_a_decomposition_plan_follows_the_guides_cut_over() -> None:
    text = PLAN.replace("strangler_fig", "database_decomposition").replace(
        "approve_at: [50]", "replication: content-db"
    )
    (loaded,) = parse_plans(text, "p.yaml")
    plan = build_plan(loaded.spec, ROUTES)

    assert [s.name for s in plan.steps] == [
        "replicate",
        "backfill",
        "verify",
        "reverse sync",
        "writes to content-delivery",
        "confirm",
        "retire",
    ]
    assert [s.until.condition if s.until else None for s in plan.steps] == [
        "running",
        "backfilled",
        "reconciled",
        "reverse_running",
        None,
        None,
        None,
    ]
    switch = plan.steps[4]
    assert switch.action == SetWeight(route="content-delivery", backend="delivery", percent=100)
    assert switch.approval and switch.gate is not None
    assert plan.steps[5].approval
    assert plan.steps[-1].action == RetireReplication(replication="content-db")
    # Each step that changed something is undone by its rollback.
    assert plan.rollback_action(0) == SetReplication(replication="content-db", desired="stopped")
    assert plan.rollback_action(3) == SetReplication(replication="content-db", reverse=False)
    assert plan.rollback_action(4) == SetWeight(
        route="content-delivery", backend="delivery", percent=0
    )


def _window(requests: int, errors: int, seconds: float) -> BackendWindow:
    histogram = LatencyHistogram()
    histogram.add(seconds, requests)
    return BackendWindow("delivery", requests, errors, histogram)


def test_gate_verdicts_follow_the_guides_thresholds() -> None:
    criteria = Criteria(min_requests=20)
    assert judge(_window(100, 0, 0.05), 60, criteria).verdict is Verdict.PASS
    failed = judge(_window(100, 1, 0.05), 60, criteria)  # 1 % is not under 1 %
    assert failed.verdict is Verdict.FAIL and "error rate" in failed.reasons[0]
    slow = judge(_window(100, 0, 0.8), 60, criteria)
    assert slow.verdict is Verdict.FAIL and "p95" in slow.reasons[0]
    assert judge(_window(5, 5, 0.05), 60, criteria).verdict is Verdict.INCONCLUSIVE
    assert judge(None, 60, criteria).verdict is Verdict.INCONCLUSIVE


def test_a_parallel_run_is_judged_on_compared_answers() -> None:
    criteria = Criteria(min_requests=5, max_mismatch_rate=0.01, min_compared=50)
    window = _window(100, 0, 0.01)
    few = judge(BackendWindow("mirror:new", 100, 0, window.latency, 10, 0), 60, criteria)
    assert few.verdict is Verdict.INCONCLUSIVE and "compared" in few.reasons[0]
    bad = judge(BackendWindow("mirror:new", 100, 0, window.latency, 100, 2), 60, criteria)
    assert bad.verdict is Verdict.FAIL and "mismatch rate 2.00%" in bad.reasons[0]
    good = judge(BackendWindow("mirror:new", 100, 0, window.latency, 100, 0), 60, criteria)
    assert good.verdict is Verdict.PASS


def test_a_parallel_run_comes_before_any_traffic_and_ends_before_the_first_step() -> None:
    text = PLAN.replace("    approve_at: [50]\n", "    parallel_run: {max_mismatch_rate: 0.005}\n")
    (loaded,) = parse_plans(text, "plan.yaml")
    plan = build_plan(loaded.spec, ROUTES)
    names = [s.name for s in plan.steps[:4]]
    assert names == [
        "prepare content-delivery",
        "parallel run content-delivery",
        "end parallel run content-delivery",
        "content-delivery 1%",
    ]
    gate = plan.steps[1].gate
    assert gate is not None and gate.max_mismatch_rate == 0.005 and gate.min_compared == 50
