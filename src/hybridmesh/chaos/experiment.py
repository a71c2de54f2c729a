"""Chaos Toolkit experiments as ``hybridmesh chaos run`` reads them: validated with file,
line and field.

The format is the Chaos Toolkit's (JSON or YAML)::

    title: legacy-erp slow during the order saga
    description: ...
    steady-state-hypothesis:
      title: the success metrics hold
      probes:
        - type: probe
          name: calls-succeed
          tolerance: {type: range, range: [0.999, 1.0]}
          provider:
            type: python
            module: hybridmesh.chaos.probes
            func: http_success_ratio
            arguments: {url: "http://127.0.0.1:8080/erp/health", requests: 20}
    method:
      - type: action
        name: slow-erp
        provider: {type: python, module: hybridmesh.chaos.actions, func: inject_route_fault,
                   arguments: {route: legacy-erp, delay_seconds: 0.5, duration: 60}}
        pauses: {after: 5}
    rollbacks:
      - type: action
        name: clear-erp
        provider: {type: python, module: hybridmesh.chaos.actions, func: clear_route_faults,
                   arguments: {route: legacy-erp}}

``configuration`` is the toolkit's too: each key is a value, or ``{type: env, key: NAME,
default: ..., env_var_type: int|float|str|bool}`` read from the environment when the
experiment starts; ``${key}`` in an activity's arguments or pauses is replaced by it (a
string that is only ``${key}`` takes the value with its type), and ``hybridmesh chaos run
--var key=value`` overrides it, as ``chaos run --var`` does. So one file names its gateway,
store and processes by variables and runs against any environment.

Keys the toolkit knows and this runner does not use (``tags``, ``secrets``, ``controls``,
``extensions``, ...) are accepted and left alone. Only the
``python`` provider is run here; an activity given by ``ref`` or another provider type is
refused with its line, so a file that this runner accepts runs the same under ``chaos run``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.limits import DAY_SECONDS, describe, location
from hybridmesh.core.yaml_lines import Lines
from hybridmesh.core.yaml_source import DEFAULT_LIMITS, YamlLimits, YamlReader


class _Open(BaseModel):
    """A part of the format that may carry the toolkit's other keys."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Provider(_Strict):
    type: Literal["python"]
    module: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z_][\w.]*$")
    func: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_]\w*$")
    arguments: dict[str, Any] = Field(default_factory=dict)


#: ``${name}``: a value taken from the experiment's configuration.
VARIABLE = r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$"


class Pauses(_Strict):
    """Seconds to wait before and after an activity, or ``${name}`` of a configuration
    value (the toolkit allows both)."""

    before: float | str = 0
    after: float | str = 0

    @field_validator("before", "after", mode="before")
    @classmethod
    def _seconds_or_variable(cls, value: Any) -> float | str:
        if isinstance(value, str) and re.fullmatch(VARIABLE, value):
            return value
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and 0 <= value <= DAY_SECONDS:
            return float(value)
        raise ValueError("must be seconds (0 to a day) or ${name} of a configuration value")


class EnvValue(_Strict):
    """A configuration value read from the environment when the experiment starts."""

    type: Literal["env"]
    key: str = Field(min_length=1, max_length=256)
    default: Any = None
    env_var_type: Literal["int", "float", "str", "bool"] | None = None


class Activity(_Open):
    type: Literal["action", "probe"]
    name: str = Field(min_length=1, max_length=256)
    provider: Provider
    tolerance: Any = None
    pauses: Pauses = Pauses()


class Hypothesis(_Open):
    title: str = Field(min_length=1)
    probes: tuple[Activity, ...] = ()


class Experiment(_Open):
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    configuration: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Any] = Field(
        default_factory=dict
    )
    steady_state_hypothesis: Hypothesis | None = Field(None, alias="steady-state-hypothesis")
    method: tuple[Activity, ...] = Field(min_length=1)
    rollbacks: tuple[Activity, ...] = ()


@dataclass(frozen=True)
class LoadedExperiment:
    experiment: Experiment
    file: str


def _dotted(loc: tuple[Any, ...]) -> str | None:
    return ".".join(str(part) for part in loc) or None


def _message(error: Any) -> str:
    if error["type"] == "literal_error" and error["loc"][-2:] == ("provider", "type"):
        return "only the python provider runs under hybridmesh chaos run"
    if error["type"] == "missing" and error["loc"][-1:] == ("provider",):
        return "missing (an activity given by ref is not supported by hybridmesh chaos run)"
    return describe(error)


def _tolerance_problems(data: dict[str, Any], file: str, lines: Lines) -> list[Problem]:
    """A hypothesis probe without a tolerance is a check that cannot fail."""
    problems = []
    hypothesis = data.get("steady-state-hypothesis")
    probes = hypothesis.get("probes") if isinstance(hypothesis, dict) else None
    for index, probe in enumerate(probes if isinstance(probes, list) else []):
        if isinstance(probe, dict) and probe.get("tolerance") is None:
            loc = ("steady-state-hypothesis", "probes", index)
            problems.append(
                Problem(
                    "a hypothesis probe needs a tolerance",
                    file,
                    lines.line_of(loc),
                    _dotted((*loc, "tolerance")),
                )
            )
    return problems


def _configuration_problems(data: dict[str, Any], file: str, lines: Lines) -> list[Problem]:
    """A configuration mapping is the toolkit's ``{type: env, key: NAME, ...}``."""
    problems = []
    configuration = data.get("configuration")
    for name, value in (configuration if isinstance(configuration, dict) else {}).items():
        if not isinstance(value, dict):
            continue
        try:
            EnvValue.model_validate(value)
        except pydantic.ValidationError as invalid:
            for error in invalid.errors():
                loc = ("configuration", name, *location(error))
                problems.append(
                    Problem(
                        _message(error) + " (a mapping here is {type: env, key: NAME})",
                        file,
                        lines.line_of(loc),
                        _dotted(loc),
                    )
                )
    return problems


def parse_experiment(
    data: bytes | str, file: str, limits: YamlLimits = DEFAULT_LIMITS
) -> LoadedExperiment:
    """The experiment of one JSON or YAML text; :class:`ValidationError` lists every
    problem with its file, line and field."""
    documents = YamlReader(limits).parse(data, file)
    if len(documents) != 1 or not isinstance(documents[0].data, dict):
        raise ValidationError([Problem("an experiment file holds one mapping", file, 1)])
    document = documents[0]
    problems = _tolerance_problems(document.data, file, document.lines)
    problems += _configuration_problems(document.data, file, document.lines)
    try:
        experiment = Experiment.model_validate(document.data)
    except pydantic.ValidationError as invalid:
        for error in invalid.errors():
            loc = tuple(location(error))
            problems.append(
                Problem(_message(error), file, document.lines.line_of(loc), _dotted(loc))
            )
        raise ValidationError(problems) from None
    if problems:
        raise ValidationError(problems)
    return LoadedExperiment(experiment, file)


def load_experiment(path: Path, limits: YamlLimits = DEFAULT_LIMITS) -> LoadedExperiment:
    reader = YamlReader(limits)
    return parse_experiment(reader.read_bytes(path), str(path), limits)


__all__ = [
    "VARIABLE",
    "Activity",
    "EnvValue",
    "Experiment",
    "Hypothesis",
    "LoadedExperiment",
    "Pauses",
    "Provider",
    "load_experiment",
    "parse_experiment",
]
