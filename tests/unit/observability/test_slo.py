"""SLO arithmetic (budget, burn rate, status), p95 from buckets, and the Prometheus rules:
valid for promtool, firing when they should, and naming only metrics the mesh exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from hybridmesh.data.reconcile_records import ReconcileMetrics
from hybridmesh.data.reconcile_report import ReconcileReport, TableReport
from hybridmesh.observability import MeshMetrics
from hybridmesh.observability.slo import Measurement, histogram_quantile
from hybridmesh.observability.slo_rules import prometheus_rules, rules_yaml

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian: apt-get install prometheus; .ci/run does)",
)


# -- budget, burn rate, status ----------------------------------------------------------------


def test_budget_and_burn_rate_of_a_window() -> None:
    # 99.9 %: 10,000 calls allow 10 failures; 4 failed, so 40 % of the budget is spent.
    m = Measurement(good=9_996, total=10_000, objective=0.999)
    assert m.sli == pytest.approx(0.9996)
    assert m.error_rate == pytest.approx(0.0004)
    assert m.burn_rate == pytest.approx(0.4)
    assert m.error_budget_remaining == pytest.approx(0.6)
    assert m.status == "ok"


def test_half_the_budget_spent_is_burning_and_all_of_it_exhausted() -> None:
    assert Measurement(good=9_994, total=10_000, objective=0.999).status == "burning"
    spent = Measurement(good=9_990, total=10_000, objective=0.999)
    assert (spent.burn_rate, spent.error_budget_remaining, spent.status) == (
        pytest.approx(1.0),
        pytest.approx(0.0),
        "exhausted",
    )
    # Overspent: the burn rate says by how much; the budget left does not go below 0.
    over = Measurement(good=9_856, total=10_000, objective=0.999)
    assert over.burn_rate == pytest.approx(14.4)
    assert over.error_budget_remaining == 0.0
    assert over.status == "exhausted"


def test_no_events_is_no_data_not_a_perfect_score() -> None:
    m = Measurement(good=0, total=0, objective=0.995, excluded=3)
    assert (m.sli, m.burn_rate, m.error_budget_remaining, m.status) == (
        None,
        None,
        None,
        "no_data",
    )
    assert m.to_json()["status"] == "no_data"


# -- p95 from buckets --------------------------------------------------------------------------


def test_quantile_interpolates_linearly_within_the_bucket() -> None:
    bounds = (0.05, 0.1, 0.25)
    # 100 values: 60 up to 50 ms, 30 in (50, 100] ms, 10 in (100, 250] ms.
    counts = [60, 30, 10, 0]
    # Rank 95 is the 5th of 10 in the third bucket: 100 + 150 * 5/10 = 175 ms.
    assert histogram_quantile(0.95, bounds, counts) == pytest.approx(0.175)
    # Rank 50 is in the first bucket, interpolated from 0.
    assert histogram_quantile(0.5, bounds, counts) == pytest.approx(0.05 * 50 / 60)
    # Rank 90 ends the second bucket exactly.
    assert histogram_quantile(0.9, bounds, counts) == pytest.approx(0.1)


def test_quantile_in_the_open_bucket_is_the_largest_bound() -> None:
    assert histogram_quantile(0.95, (0.1, 1.0), [1, 1, 8]) == 1.0


def test_quantile_of_an_empty_histogram_is_none() -> None:
    assert histogram_quantile(0.95, (0.1, 1.0), [0, 0, 0]) is None
    with pytest.raises(ValueError, match="one entry per bound"):
        histogram_quantile(0.95, (0.1, 1.0), [1, 2])


# -- the rules ---------------------------------------------------------------------------------


def exported_names() -> set[str]:
    """Every sample name the mesh's registry renders once each metric has a value."""
    metrics = MeshMetrics()
    metrics.observe_call("orders", "users", "rest", "success", 0.01)
    metrics.observe_communication(
        "orders", "users", "microservice", "microservice", "success", 0.01
    )
    metrics.observe_execution_ended("workflow", "onboarding", "completed")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    ReconcileMetrics(metrics.registry).observe(
        ReconcileReport(
            "orders-sync", "run-1", "source", False, at, at, [TableReport("a", "b", "sql", 10)]
        )
    )
    text = metrics.render().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def test_every_metric_the_rules_read_is_one_the_mesh_exports() -> None:
    rules = [rule for group in prometheus_rules()["groups"] for rule in group["rules"]]
    recorded = {rule["record"] for rule in rules if "record" in rule}
    exported = exported_names()
    read = set()
    for rule in rules:
        # Names: identifiers followed by a selector, a range or whitespace and an operator;
        # label names inside {...} and function names before ( are not metrics.
        expr = re.sub(r"\{[^}]*\}", "", rule["expr"])
        expr = re.sub(r"\[[^\]]*\]", "", expr)
        expr = re.sub(r"by \([^)]*\)", "", expr)
        names = re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?!\s*\()", expr)
        read |= {n for n in names if n.startswith("hybridmesh")}
    assert read, "the rules read no metric"
    assert read - recorded <= exported, sorted(read - recorded - exported)
    # The ratios are read back only under the names they are recorded as.
    assert read & recorded == recorded
    assert {
        "hybridmesh_communications_total",
        "hybridmesh_communication_duration_seconds_bucket",
        "hybridmesh_communication_duration_seconds_count",
        "hybridmesh_executions_ended_total",
        "hybridmesh_reconcile_inconsistency_rate",
    } <= read


def test_recorded_windows_and_burn_rate_policy() -> None:
    groups = {g["name"]: g["rules"] for g in yaml.safe_load(rules_yaml())["groups"]}
    records = {(r["record"], r["labels"]["slo"]) for r in groups["hybridmesh-slo-recording"]}
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        for slo in ("integration-reliability", "sync-latency", "workflow-completion"):
            assert (f"hybridmesh:slo_errors:ratio_rate{window}", slo) in records
    alerts = {
        (r["alert"], r["labels"]["severity"]): r["expr"] for r in groups["hybridmesh-slo-alerts"]
    }
    page = alerts[("HybridmeshIntegrationReliabilityBudgetBurn", "page")]
    assert 'ratio_rate1h{slo="integration-reliability"} > (14.4 * 0.001)' in page
    assert 'ratio_rate5m{slo="integration-reliability"} > (14.4 * 0.001)' in page
    assert 'ratio_rate6h{slo="integration-reliability"} > (6 * 0.001)' in page
    assert 'ratio_rate30m{slo="integration-reliability"} > (6 * 0.001)' in page
    ticket = alerts[("HybridmeshSyncLatencyBudgetBurn", "ticket")]
    assert 'ratio_rate1d{slo="sync-latency"} > (3 * 0.05)' in ticket
    assert 'ratio_rate3d{slo="sync-latency"} > (1 * 0.05)' in ticket
    assert ("HybridmeshDataInconsistency", "ticket") in alerts


@needs_promtool
def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    rules = tmp_path / "slo-rules.yml"
    rules.write_text(rules_yaml())
    checked = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(rules)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 28 rules found" in checked.stdout


_PAIR = (
    'source="orders",target="users",source_architecture="microservice",'
    'target_architecture="microservice"'
)


def _expected(severity: str) -> dict[str, object]:
    """The integration-reliability alert of ``severity``, as promtool reports it."""
    rule = next(
        rule
        for rule in prometheus_rules()["groups"][1]["rules"]
        if rule.get("alert") == "HybridmeshIntegrationReliabilityBudgetBurn"
        and rule["labels"]["severity"] == severity
    )
    return {"exp_labels": rule["labels"], "exp_annotations": rule["annotations"]}


def _unit_tests(failures_per_minute: int, expected: list[str]) -> dict[str, object]:
    """promtool's unit test: an hour of 1,000 calls a minute to one pair, some failing,
    and the severities of the alerts expected to fire."""
    return {
        "rule_files": ["slo-rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'hybridmesh_communications_total{{{_PAIR},outcome="success"}}',
                        "values": f"0+{1000 - failures_per_minute}x90",
                    },
                    {
                        "series": f'hybridmesh_communications_total{{{_PAIR},outcome="failure"}}',
                        "values": f"0+{failures_per_minute}x90",
                    },
                    {
                        # The caller's mistakes do not count: even many of them page no one.
                        "series": (
                            f'hybridmesh_communications_total{{{_PAIR},outcome="client_error"}}'
                        ),
                        "values": "0+500x90",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "60m",
                        "alertname": "HybridmeshIntegrationReliabilityBudgetBurn",
                        "exp_alerts": [_expected(severity) for severity in expected],
                    }
                ],
            }
        ],
    }


@needs_promtool
@pytest.mark.parametrize(
    ("failures_per_minute", "expected"),
    [
        # 2 % failing is a 20x burn: above 14.4x over 1h and 5m, so it pages (and, above
        # 3x over 1d and 2h, opens a ticket too).
        pytest.param(20, ["page", "ticket"], id="2%-failing-pages"),
        # 0.5 % is a 5x burn: under the 14.4x and 6x of a page, over the 3x of a ticket.
        pytest.param(5, ["ticket"], id="0.5%-failing-opens-a-ticket"),
        # No failure (only client errors): nothing fires.
        pytest.param(0, [], id="no-failure-is-silent"),
    ],
)
def test_promtool_alerts_fire_by_burn_rate(
    tmp_path: Path, failures_per_minute: int, expected: list[str]
) -> None:
    (tmp_path / "slo-rules.yml").write_text(rules_yaml())
    tests = tmp_path / "slo-rules.test.yml"
    tests.write_text(yaml.safe_dump(_unit_tests(failures_per_minute, expected), sort_keys=False))
    tested = subprocess.run(
        [str(PROMTOOL), "test", "rules", str(tests)], capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
