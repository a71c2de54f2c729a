"""``hybridmesh chaos lab --quick`` end to end: one reference experiment in its own
environment (the reference services, a gateway, two workers, a migration runner), its
hypothesis checked, its reports written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.integration.chaos.test_experiments import HYBRIDMESH, run

pytestmark = pytest.mark.chaos_lab


async def test_a_bad_version_at_25_percent_is_rolled_back_by_the_plans_gate(
    tmp_path: Path,
) -> None:
    reports = tmp_path / "reports"
    code, out, err = await run(
        *HYBRIDMESH,
        "chaos",
        "lab",
        "--quick",
        "bad-version-at-25",
        "--report-dir",
        str(reports),
        "--json",
    )
    assert code == 0, out + err
    report = json.loads((reports / "bad-version-at-25.json").read_text())
    assert report["status"] == "completed" and report["hypothesis_held"] is True
    method = {r["name"]: r for r in report["run"]}
    plan = method["the-plan-after-its-gate"]["output"]
    assert plan["status"] == "rolled_back" and "failed its gate" in plan["reason"]
    # The bad version was really reached: some of /content's requests got its 503s.
    assert method["content-during-the-shift"]["output"]["errors"] > 0
    after = {p["name"]: p["output"] for p in report["steady_states"]["after"]["probes"]}
    assert after["new-version-weight"] == 0.0 and after["content-answers"] == 1.0
    assert report["rollbacks"][0]["output"] == {"route": "content-creation", "removed": True}
    assert "**the hypothesis held**" in (reports / "bad-version-at-25.md").read_text()


async def test_an_experiment_the_lab_does_not_know_is_refused(tmp_path: Path) -> None:
    code, out, err = await run(*HYBRIDMESH, "chaos", "lab", "--quick", "no-such-experiment")
    assert code == 2, out + err
    assert "legacy-erp-down" in err
