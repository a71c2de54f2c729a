"""The reference experiments in ``experiments/``: each one loads, names actions and probes
that exist with arguments they take, and defines every ``${name}`` it uses; a malformed
one is refused with file, line and field; ``expected.json`` covers what the lab runs."""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path

import pytest

from hybridmesh.chaos.experiment import Activity, load_experiment, parse_experiment
from hybridmesh.chaos.lab import EXPERIMENTS, experiments_folder, regressions
from hybridmesh.chaos.runner import resolve_configuration, substitute
from hybridmesh.core.errors import ValidationError

FOLDER = experiments_folder()
FILES = sorted(FOLDER.glob("*.yaml"))


def _activities(path: Path) -> list[Activity]:
    experiment = load_experiment(path).experiment
    probes = experiment.steady_state_hypothesis.probes if experiment.steady_state_hypothesis else ()
    return [*probes, *experiment.method, *experiment.rollbacks]


def test_the_lab_runs_every_experiment_of_the_folder() -> None:
    assert sorted(p.stem for p in FILES) == sorted(EXPERIMENTS)
    expected = json.loads((FOLDER / "expected.json").read_text())
    assert sorted(expected) == sorted(EXPERIMENTS)
    assert all(isinstance(held, bool) for held in expected.values())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_an_experiment_calls_functions_that_exist_with_arguments_they_take(path: Path) -> None:
    experiment = load_experiment(path).experiment
    assert experiment.steady_state_hypothesis is not None
    kills = any(a.provider.func.startswith("kill_") for a in experiment.method)
    assert experiment.rollbacks or kills, "an experiment that injects a fault has a rollback"
    for activity in _activities(path):
        module = importlib.import_module(activity.provider.module)
        function = getattr(module, activity.provider.func)
        inspect.signature(function).bind(**activity.provider.arguments)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_variable_an_experiment_uses_is_configured(path: Path) -> None:
    experiment = load_experiment(path).experiment
    used = set(re.findall(r"\$\{(\w+)\}", path.read_text()))
    assert used <= set(experiment.configuration), used - set(experiment.configuration)


def test_a_malformed_experiment_is_refused_with_file_line_and_field(tmp_path: Path) -> None:
    text = (FOLDER / "worker-killed.yaml").read_text()
    broken = text.replace('pauses: {after: "${observe_seconds}"}', "pauses: {after: soon}")
    broken = broken.replace(
        "window: {type: env, key: HYBRIDMESH_CHAOS_WINDOW, default: 40s}",
        "window: {type: env, name: HYBRIDMESH_CHAOS_WINDOW, default: 40s}",
    )
    assert broken != text
    path = tmp_path / "worker-killed.yaml"
    path.write_text(broken)
    lines = broken.splitlines()
    pauses_line = next(i for i, line in enumerate(lines, 1) if "after: soon" in line)
    env_line = next(i for i, line in enumerate(lines, 1) if "  window:" in line)
    with pytest.raises(ValidationError) as refused:
        parse_experiment(broken, str(path))
    found = {(p.line, p.field) for p in refused.value.problems}
    assert (pauses_line, "method.0.pauses.after") in found
    assert (env_line, "configuration.window.key") in found


def test_configuration_comes_from_the_environment_and_var_overrides_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAB_SECONDS", "7.5")
    monkeypatch.delenv("LAB_URL", raising=False)
    configuration = {
        "seconds": {"type": "env", "key": "LAB_SECONDS", "env_var_type": "float"},
        "url": {"type": "env", "key": "LAB_URL", "default": "http://127.0.0.1:8800"},
        "route": "shop",
    }
    values = resolve_configuration(configuration, {"route": "erp"})
    assert values == {"seconds": 7.5, "url": "http://127.0.0.1:8800", "route": "erp"}
    arguments = {"duration": "${seconds}", "url": "${url}/shop", "routes": ["${route}"]}
    assert substitute(arguments, values) == {
        "duration": 7.5,
        "url": "http://127.0.0.1:8800/shop",
        "routes": ["erp"],
    }


def test_an_unset_environment_variable_without_default_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LAB_MISSING", raising=False)
    with pytest.raises(ValidationError) as refused:
        resolve_configuration({"db": {"type": "env", "key": "LAB_MISSING"}})
    assert refused.value.problems[0].field == "configuration.db"
    assert "LAB_MISSING" in refused.value.problems[0].message


def test_only_a_hypothesis_that_held_before_and_no_longer_does_fails_ci() -> None:
    def report(name: str, held: bool) -> dict[str, object]:
        return {"experiment": name, "hypothesis_held": held}

    reports = [report("a", True), report("b", False), report("c", False), report("d", False)]
    # b held before and no longer does; c was known not to hold; d is new, so it counts.
    assert regressions(reports, {"a": True, "b": True, "c": False}) == ["b", "d"]
    assert regressions(reports, None) == ["b", "c", "d"]
    assert regressions([report("a", True)], {"a": False}) == []
