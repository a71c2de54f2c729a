"""Running an experiment without the Chaos Toolkit: what ``hybridmesh chaos run`` does.

The order is the toolkit's: the steady-state hypothesis before the method (a hypothesis
that does not hold then stops the experiment, ``failed``: there is nothing to learn from
breaking what is already broken), the method's activities in turn with their pauses, the
hypothesis again (``deviated`` when it no longer holds), and the rollbacks. Unlike the
toolkit's default, the rollbacks **always** run, whether the experiment completed, deviated,
failed midway or was interrupted, so every fault the method injected is cleared; a
rollback that fails is recorded and the next one still runs. Faults also expire by
themselves (docs/resilience.md), for a runner that dies outright.

A probe's value is checked against its ``tolerance`` as the toolkit does: a bool, number
or text must be equal; a list of two numbers is a range, any other list the values
allowed; a mapping is ``{type: range, range: [lo, hi], target: key}``, ``{type: jsonpath,
path: $.a.b, expect: value}`` (dotted paths only) or ``{type: regex, pattern, target}``.

The experiment's ``configuration`` is resolved when the runner is made (environment values
read, ``--var`` overrides applied) and its ``${name}`` forms replaced in every activity's
arguments and pauses, as the toolkit does.

The journal (:meth:`Journal.to_json`) says whether the hypothesis held, with every probe's
value: it is the ``--report`` file.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import re
import string
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from hybridmesh.chaos.experiment import Activity, EnvValue, Experiment
from hybridmesh.core.errors import Problem, ValidationError

#: What an experiment ends as: the toolkit's statuses.
COMPLETED = "completed"
DEVIATED = "deviated"
FAILED = "failed"
INTERRUPTED = "interrupted"


@dataclass
class Run:
    """One activity as it ran."""

    phase: str
    name: str
    type: str
    status: str = "running"
    output: Any = None
    error: str | None = None
    tolerance_met: bool | None = None
    start: float = 0.0
    end: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "phase": self.phase,
            "name": self.name,
            "type": self.type,
            "status": self.status,
            "output": self.output,
            "duration": round(self.end - self.start, 3),
        }
        if self.error is not None:
            data["error"] = self.error
        if self.tolerance_met is not None:
            data["tolerance_met"] = self.tolerance_met
        return data


@dataclass
class Journal:
    """What happened: the runs in order, and the verdict."""

    title: str
    status: str = "running"
    start: float = field(default_factory=time.time)
    end: float = 0.0
    before: bool | None = None
    after: bool | None = None
    runs: list[Run] = field(default_factory=list)

    @property
    def hypothesis_held(self) -> bool:
        """Whether the steady state held before and after (true without a hypothesis)."""
        return self.before is not False and self.after is not False

    def to_json(self) -> dict[str, Any]:
        def phase(name: str) -> list[dict[str, Any]]:
            return [run.to_json() for run in self.runs if run.phase == name]

        return {
            "title": self.title,
            "status": self.status,
            "hypothesis_held": self.hypothesis_held and self.status == COMPLETED,
            "start": self.start,
            "end": self.end,
            "duration": round(self.end - self.start, 3),
            "steady_states": {
                "before": {"steady_state_met": self.before, "probes": phase("before")},
                "after": {"steady_state_met": self.after, "probes": phase("after")},
            },
            "run": phase("method"),
            "rollbacks": phase("rollbacks"),
        }


Listener = Callable[[Journal], None]

_ENV_TYPES: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": lambda text: text.strip().lower() in ("1", "true", "yes", "on"),
}


def resolve_configuration(
    configuration: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The configuration's values: ``{type: env, ...}`` read from the environment, then
    ``overrides`` (``--var``) on top. An environment variable that is unset and has no
    default is refused, naming the key."""
    values: dict[str, Any] = {}
    problems = []
    for name, value in configuration.items():
        if name in (overrides or {}):
            continue
        if not isinstance(value, dict):
            values[name] = value
            continue
        env = EnvValue.model_validate(value)
        text = os.environ.get(env.key)
        if text is None:
            if env.default is None:
                problems.append(
                    Problem(
                        f"environment variable {env.key} is not set and there is no default",
                        field=f"configuration.{name}",
                    )
                )
            values[name] = env.default
            continue
        try:
            values[name] = _ENV_TYPES[env.env_var_type or "str"](text)
        except ValueError:
            problems.append(Problem(f"{env.key}={text!r} is not a {env.env_var_type}", field=name))
    if problems:
        raise ValidationError(problems)
    return {**values, **(overrides or {})}


def substitute(data: Any, values: Mapping[str, Any]) -> Any:
    """``data`` with ``${name}`` replaced by the configuration's values: a string that is
    only ``${name}`` becomes the value itself (a number stays a number), one that holds it
    among other text becomes text; an unknown name is left as it is (the toolkit's rule)."""
    if isinstance(data, str):
        template = string.Template(data)
        match = template.pattern.fullmatch(data)
        if match is not None:
            name = match.group("braced") or match.group("named")
            if name in values:
                return values[name]
        return template.safe_substitute({k: str(v) for k, v in values.items()})
    if isinstance(data, dict):
        return {key: substitute(value, values) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [substitute(value, values) for value in data]
    return data


def call_provider(activity: Activity, configuration: Mapping[str, Any] | None = None) -> Any:
    """Import the activity's module and call its function with its arguments, ``${name}``
    taken from ``configuration`` (a coroutine function is run to its end)."""
    provider = activity.provider
    module = importlib.import_module(provider.module)
    function = getattr(module, provider.func, None)
    if not callable(function):
        raise LookupError(f"{provider.module} has no function {provider.func!r}")
    result = function(**substitute(provider.arguments, configuration or {}))
    if inspect.isawaitable(result):
        result = asyncio.run(_awaited(result))
    return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _target(value: Any, tolerance: dict[str, Any]) -> Any:
    target = tolerance.get("target")
    if target and isinstance(value, dict):
        return value.get(target, value)
    return value


def _jsonpath(value: Any, path: str) -> list[Any]:
    """The values at a dotted ``$.a.b`` path (the subset of JSONPath the checks need)."""
    if path == "$":
        return [value]
    if not path.startswith("$."):
        raise ValueError(f"only dotted paths like $.a.b are supported, not {path!r}")
    for part in path[2:].split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return []
    return [value]


def within_tolerance(tolerance: Any, value: Any) -> bool:
    """Whether a probe's ``value`` meets ``tolerance``, as the Chaos Toolkit checks it."""
    if isinstance(tolerance, bool | str):
        return bool(value == tolerance)
    if isinstance(tolerance, int | float):
        if isinstance(value, dict) and "status" in value:
            return bool(value["status"] == tolerance)
        return bool(value == tolerance)
    if isinstance(tolerance, list):
        if isinstance(value, dict) and "status" in value:
            return value["status"] in tolerance
        if len(tolerance) == 2 and all(isinstance(t, int | float) for t in tolerance):
            try:
                return bool(tolerance[0] <= value <= tolerance[1])
            except TypeError:
                return False
        return value in tolerance
    if isinstance(tolerance, dict):
        kind = tolerance.get("type")
        if kind == "range":
            low, high = tolerance["range"]
            try:
                number = Decimal(_target(value, tolerance))
            except (InvalidOperation, TypeError, ValueError):
                return False
            return Decimal(low) <= number <= Decimal(high)
        if kind == "jsonpath":
            found = _jsonpath(_target(value, tolerance), str(tolerance["path"]))
            if "expect" in tolerance:
                expect = tolerance["expect"]
                return found == (expect if isinstance(expect, list) else [expect])
            return bool(found)
        if kind == "regex":
            return re.search(str(tolerance["pattern"]), str(_target(value, tolerance))) is not None
        raise ValueError(f"tolerance type {kind!r} is not supported by hybridmesh chaos run")
    raise ValueError(f"a tolerance of type {type(tolerance).__name__} cannot be checked")


class Runner:
    """Runs one experiment, telling ``listener`` after every change of the journal."""

    def __init__(
        self,
        experiment: Experiment,
        *,
        listener: Listener | None = None,
        sleep: Callable[[float], None] = time.sleep,
        variables: Mapping[str, Any] | None = None,
    ) -> None:
        self.experiment = experiment
        self.configuration = resolve_configuration(experiment.configuration, variables)
        self.journal = Journal(experiment.title)
        self.listener = listener or (lambda _: None)
        self.sleep = sleep

    def run(self) -> Journal:
        journal = self.journal
        try:
            journal.before = self._hypothesis("before")
            if journal.before is False:
                journal.status = FAILED
            else:
                if self._method():
                    journal.after = self._hypothesis("after")
                    journal.status = DEVIATED if journal.after is False else COMPLETED
                else:
                    journal.status = FAILED
        except KeyboardInterrupt:
            journal.status = INTERRUPTED
        finally:
            if journal.status == "running":
                journal.status = FAILED
            self._rollbacks()
            journal.end = time.time()
            self.listener(journal)
        return journal

    def _hypothesis(self, phase: str) -> bool | None:
        hypothesis = self.experiment.steady_state_hypothesis
        if hypothesis is None:
            return None
        for probe in hypothesis.probes:
            run = self._activity(phase, probe)
            if run.status != "succeeded":
                return False
            try:
                run.tolerance_met = within_tolerance(probe.tolerance, run.output)
            except (ValueError, KeyError, TypeError) as error:
                run.error = f"tolerance: {error}"
                run.tolerance_met = False
            self.listener(self.journal)
            if not run.tolerance_met:
                return False
        return True

    def _method(self) -> bool:
        """Run the method's activities; False when one failed (the rest are skipped)."""
        return all(
            self._activity("method", activity).status == "succeeded"
            for activity in self.experiment.method
        )

    def _rollbacks(self) -> None:
        for activity in self.experiment.rollbacks:
            self._activity("rollbacks", activity)

    def _activity(self, phase: str, activity: Activity) -> Run:
        run = Run(phase, activity.name, activity.type, start=time.time())
        self.journal.runs.append(run)
        self.listener(self.journal)
        try:
            before, after = self._pauses(activity)
        except ValueError as error:
            run.status, run.error, run.end = "failed", str(error), time.time()
            self.listener(self.journal)
            return run
        if before:
            self.sleep(before)
        try:
            run.output = _plain(call_provider(activity, self.configuration))
            run.status = "succeeded"
        except Exception as error:  # any failure of the user's function is the verdict's
            run.status = "failed"
            run.error = f"{type(error).__name__}: {error}"
            run.output = None
            traceback.clear_frames(error.__traceback__)
        run.end = time.time()
        self.listener(self.journal)
        if after and run.status == "succeeded":
            self.sleep(after)
        return run

    def _pauses(self, activity: Activity) -> tuple[float, float]:
        """The activity's pauses in seconds (a ``${name}`` read from the configuration)."""
        pauses = activity.pauses
        found = []
        for which, value in (("before", pauses.before), ("after", pauses.after)):
            value = substitute(value, self.configuration)
            try:
                found.append(max(0.0, float(value)))
            except (TypeError, ValueError):
                raise ValueError(f"pauses.{which}: {value!r} is not a number of seconds") from None
        return found[0], found[1]


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it (the report is JSON)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    return str(value)


__all__ = [
    "COMPLETED",
    "DEVIATED",
    "FAILED",
    "INTERRUPTED",
    "Journal",
    "Run",
    "Runner",
    "call_provider",
    "resolve_configuration",
    "substitute",
    "within_tolerance",
]
