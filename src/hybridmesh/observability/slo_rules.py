"""Prometheus recording and alerting rules for the SLOs of :mod:`~hybridmesh.observability.slo`.

Prometheus sees each process's counters while it runs, so the rules give fast alerts the
store's report cannot; the report (``hybridmesh slo report``) gives the long windows and
what happened while no one scraped.

Recording rules: ``hybridmesh:slo_errors:ratio_rate<W>{slo="..."}``, the SLI's error ratio
(bad events / valid events) over each window of :data:`RATIO_WINDOWS`, for the three SLOs
Prometheus can count:

- integration-reliability: ``hybridmesh_communications_total``, outcome ``failure`` over
  every outcome but ``client_error``;
- sync-latency: ``hybridmesh_communication_duration_seconds``, the calls above 100 ms (not in
  the ``le="0.1"`` bucket) over all of them;
- workflow-completion: ``hybridmesh_executions_ended_total``, the bad statuses over every
  status but ``cancelled``.

Alerts: multi-window, multi-burn-rate, as the SRE workbook sets them out (:data:`BURN_ALERTS`):
an alert fires when the error ratio is above ``burn rate * (1 - objective)`` over both a long
window (the budget is really being spent) and a short one (it still is). Data consistency is a
gauge set by each reconciliation (``hybridmesh_reconcile_inconsistency_rate``), not a rate of
events: its alert is a threshold on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from hybridmesh.observability.slo import (
    BAD_EXECUTION_STATUSES,
    DATA_CONSISTENCY,
    LATENCY,
    LATENCY_THRESHOLD_SECONDS,
    RELIABILITY,
    WORKFLOW_COMPLETION,
    SloDefinition,
    error_budget,
)

#: The windows error ratios are recorded over.
RATIO_WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
#: The name of the recorded error ratio over ``window``.
RECORD_NAME = "hybridmesh:slo_errors:ratio_rate{window}"


@dataclass(frozen=True)
class BurnAlert:
    """Fire at ``severity`` when both windows of either pair burn faster than their rate."""

    severity: str
    #: (burn rate, long window, short window), any of which fires the alert.
    conditions: tuple[tuple[float, str, str], ...]


#: The SRE workbook's policy for a 30-day budget: page when 2 % of it goes in an hour or
#: 5 % in six hours; open a ticket when 10 % goes in a day or 10 % in three days.
BURN_ALERTS: tuple[BurnAlert, ...] = (
    BurnAlert("page", ((14.4, "1h", "5m"), (6.0, "6h", "30m"))),
    BurnAlert("ticket", ((3.0, "1d", "2h"), (1.0, "3d", "6h"))),
)

_BAD_STATUSES = "|".join(BAD_EXECUTION_STATUSES)


def _ratios(window: str) -> dict[str, str]:
    """Each Prometheus-counted SLO's error ratio expression over ``window``."""
    le = _le(LATENCY_THRESHOLD_SECONDS)
    return {
        RELIABILITY.name: (
            f'sum(rate(hybridmesh_communications_total{{outcome="failure"}}[{window}]))\n'
            f'/\nsum(rate(hybridmesh_communications_total{{outcome!="client_error"}}[{window}]))'
        ),
        LATENCY.name: (
            f"1 - (\n  sum(rate(hybridmesh_communication_duration_seconds_bucket"
            f'{{le="{le}"}}[{window}]))\n  /\n'
            f"  sum(rate(hybridmesh_communication_duration_seconds_count[{window}]))\n)"
        ),
        WORKFLOW_COMPLETION.name: (
            f'sum(rate(hybridmesh_executions_ended_total{{status=~"{_BAD_STATUSES}"}}[{window}]))'
            f'\n/\nsum(rate(hybridmesh_executions_ended_total{{status!="cancelled"}}[{window}]))'
        ),
    }


def _le(bound: float) -> str:
    """A bucket bound as prometheus_client writes it in ``le`` (``0.1``, ``1.0``)."""
    return repr(float(bound))


#: The SLOs the rules alert on by burn rate.
BURN_SLOS: tuple[SloDefinition, ...] = (RELIABILITY, LATENCY, WORKFLOW_COMPLETION)


def recording_rules() -> list[dict[str, Any]]:
    """One rule per SLO of :data:`BURN_SLOS` and window of :data:`RATIO_WINDOWS`."""
    rules = []
    for window in RATIO_WINDOWS:
        for slo, expr in _ratios(window).items():
            rules.append(
                {
                    "record": RECORD_NAME.format(window=window),
                    "expr": expr + "\n",
                    "labels": {"slo": slo},
                }
            )
    return rules


def _alert_name(slo: SloDefinition) -> str:
    return "Hybridmesh" + "".join(part.title() for part in slo.name.split("-")) + "BudgetBurn"


def _burn_expr(slo: SloDefinition, alert: BurnAlert) -> str:
    budget = error_budget(slo.objective)
    clauses = []
    for rate, long_window, short_window in alert.conditions:
        threshold = f"({rate:g} * {budget:.6g})"
        long_name = RECORD_NAME.format(window=long_window)
        short_name = RECORD_NAME.format(window=short_window)
        clauses.append(
            f'(\n  {long_name}{{slo="{slo.name}"}} > {threshold}\n'
            f'  and\n  {short_name}{{slo="{slo.name}"}} > {threshold}\n)'
        )
    return "\nor\n".join(clauses) + "\n"


def alerting_rules() -> list[dict[str, Any]]:
    """The burn-rate alerts of every SLO of :data:`BURN_SLOS`, and the data consistency
    threshold."""
    rules: list[dict[str, Any]] = []
    for slo in BURN_SLOS:
        for alert in BURN_ALERTS:
            windows = " or ".join(
                f"{rate:g}x over {long} and {short}" for rate, long, short in alert.conditions
            )
            rules.append(
                {
                    "alert": _alert_name(slo),
                    "expr": _burn_expr(slo, alert),
                    "labels": {"severity": alert.severity, "slo": slo.name},
                    "annotations": {
                        "summary": f"{slo.name} is spending its error budget too fast",
                        "description": (
                            f"The {slo.name} SLO ({slo.objective:.1%}) is burning its error "
                            f"budget faster than the policy allows ({windows} the sustainable "
                            "rate). `hybridmesh slo report` shows the subjects affected."
                        ),
                    },
                }
            )
    limit = error_budget(DATA_CONSISTENCY.objective)
    rules.append(
        {
            "alert": "HybridmeshDataInconsistency",
            "expr": f"max by (replication) (hybridmesh_reconcile_inconsistency_rate) > {limit:g}\n",
            "labels": {"severity": "ticket", "slo": DATA_CONSISTENCY.name},
            "annotations": {
                "summary": "a replication's last reconciliation found too many differing rows",
                "description": (
                    f"More than {limit:.0%} of a replication's rows differed between source "
                    "and target at its last reconciliation. See `hybridmesh reconcile history`."
                ),
            },
        }
    )
    return rules


def prometheus_rules() -> dict[str, Any]:
    """The rules file's content: a recording group and an alerting group."""
    return {
        "groups": [
            {"name": "hybridmesh-slo-recording", "rules": recording_rules()},
            {"name": "hybridmesh-slo-alerts", "rules": alerting_rules()},
        ]
    }


class _Literal(yaml.SafeDumper):
    """Writes multi-line strings (the expressions) as ``|`` blocks, as people write them."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Literal.add_representer(str, _string)


def rules_yaml() -> str:
    """:func:`prometheus_rules` as a Prometheus rules file."""
    header = (
        "# hybridmesh SLO rules, written by `hybridmesh slo rules`; see docs/slo.md.\n"
        "# Load with rule_files in prometheus.yml; check with `promtool check rules`.\n"
    )
    return header + yaml.dump(
        prometheus_rules(), Dumper=_Literal, sort_keys=False, width=100, allow_unicode=True
    )


__all__ = [
    "BURN_ALERTS",
    "BURN_SLOS",
    "RATIO_WINDOWS",
    "RECORD_NAME",
    "BurnAlert",
    "alerting_rules",
    "prometheus_rules",
    "recording_rules",
    "rules_yaml",
]
