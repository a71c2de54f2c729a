"""Migration plans: how a service's traffic moves to the services that replace it.

A plan names a ``source`` service, its ``targets`` and a ``strategy``, and holds the steps
that carry it out. Each :class:`Step` has a type (``routing``, ``data``, ``functionality``
or ``validation``) and the five parts the integration guide gives every step:

- **preconditions**: what must hold before it runs (:meth:`Step.preconditions`: the route
  and backends it acts on exist, plus any the plan lists);
- **execute**: one :data:`Action` (set a backend's weight, prepare a route, retire the old
  backend, step a flag's rollout, or only check);
- **validate** and **monitoring window**: its :class:`Criteria`, measured every
  ``interval`` through a ``window`` (five minutes and one minute by default);
- **rollback**: :meth:`MigrationPlan.rollback_action`, back to the previous step's weight
  (the guide's way: from 5 % back to 1 %, from 1 % back to 0) or to 0 at once, as the
  plan's ``rollback`` says.

A plan is written in YAML (validated, problems name file, line and field) or generated
from the command line; :func:`build_plan` turns targets into steps against the gateway's
routes, so a target whose route or backends do not exist is refused when the plan is made,
not when it runs.

Strangler fig, per target (the guide's generated plan): prepare the target's route (the
target's backend at 0 %), then 1, 5, 10, 25, 50, 75 and 100 % (configurable), each gated;
then, after a person confirms, retire the source's backend from the route.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.limits import describe, location
from hybridmesh.core.names import Name
from hybridmesh.core.yaml_lines import Lines
from hybridmesh.core.yaml_source import DEFAULT_LIMITS, YamlLimits, YamlReader, document_entries
from hybridmesh.gateway.config import Compare, HeaderName, Percent, Route, Url
from hybridmesh.gateway.stats import parse_duration

#: The guide's traffic steps, in percent.
DEFAULT_STEPS: tuple[float, ...] = (1, 5, 10, 25, 50, 75, 100)
#: The most steps a plan may have.
MAX_STEPS = 200


class Strategy(StrEnum):
    STRANGLER_FIG = "strangler_fig"
    BRANCH_BY_ABSTRACTION = "branch_by_abstraction"
    DATABASE_DECOMPOSITION = "database_decomposition"


class StepType(StrEnum):
    ROUTING = "routing"
    DATA = "data"
    FUNCTIONALITY = "functionality"
    VALIDATION = "validation"


class RollbackTo(StrEnum):
    """Where a failed gate or an abort takes traffic."""

    PREVIOUS_STEP = "previous_step"
    ZERO = "zero"


def _seconds(value: Any) -> Any:
    """A duration as seconds: a number, or text such as ``30s``, ``5m``, ``250ms``."""
    if isinstance(value, str):
        return parse_duration(value)
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0, le=7 * 86_400)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricCheck(_Strict):
    """A custom metric a gate reads from a Prometheus HTTP API (the plan's ``prometheus``):
    ``query`` (PromQL; ``{route}``, ``{backend}``, ``{plan}`` and ``{interval}`` are filled
    in) must give one number, at most ``max`` and at least ``min``. No number is a
    measurement that could not be taken: it never passes."""

    name: Name
    query: str = Field(min_length=1, max_length=4000)
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _a_bound(self) -> MetricCheck:
        if self.max is None and self.min is None:
            raise ValueError("give max, min or both")
        return self


class Criteria(_Strict):
    """What a step's monitoring window must show for the step to pass.

    Measured on the step's backend every ``interval`` over the last ``interval``; a
    measurement fails when the error rate is at or over ``max_error_rate`` or the p95 at or
    over ``max_p95_ms``. More than ``failure_limit`` failed measurements fail the gate (and
    roll back). A measurement with fewer than ``min_requests`` requests is inconclusive; a
    window whose requests all together stay under ``min_requests`` does not pass: the plan
    pauses for a person. More than ``consecutive_error_limit`` measurements in a row that
    could not be taken (the store unreachable) pause it too.
    """

    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_p95_ms: float = Field(default=500.0, gt=0, le=3_600_000)
    min_requests: int = Field(default=20, ge=1, le=1_000_000_000)
    interval: Seconds = 60.0
    window: Seconds = 300.0
    failure_limit: int = Field(default=0, ge=0, le=1000)
    consecutive_error_limit: int = Field(default=2, ge=0, le=1000)
    #: For a parallel run: the most mirrored answers that may differ from the primary's,
    #: judged once at least ``min_compared`` were compared (None: not judged).
    max_mismatch_rate: float | None = Field(default=None, ge=0, le=1)
    min_compared: int = Field(default=20, ge=1, le=1_000_000_000)
    #: Custom metrics from Prometheus, checked at every measurement.
    metrics: tuple[MetricCheck, ...] = Field(default=(), max_length=20)

    @model_validator(mode="after")
    def _interval_within_window(self) -> Criteria:
        if self.interval > self.window:
            raise ValueError("interval must not be longer than window")
        return self


# -- actions ---------------------------------------------------------------------------------


class SetWeight(_Strict):
    """Send ``percent`` of ``route``'s traffic to ``backend`` (the others share the rest)."""

    do: Literal["set_weight"] = "set_weight"
    route: Name
    backend: Name
    percent: Percent


class Testers(_Strict):
    """Requests carrying ``header: value`` go to the target whatever its weight: people
    can try the new service before any real traffic moves (a header route)."""

    header: HeaderName
    value: str = Field(default="always", min_length=1, max_length=200)


class PrepareRoute(_Strict):
    """Check that ``route`` has the source's and the target's backends, start the target
    at 0 %, and send ``testers`` to it."""

    do: Literal["prepare_route"] = "prepare_route"
    route: Name
    source_backend: Name
    target_backend: Name
    testers: Testers | None = None


class RetireBackend(_Strict):
    """Remove ``backend`` (the source's, at 0 %) from ``route``: the old path is gone."""

    do: Literal["retire_backend"] = "retire_backend"
    route: Name
    backend: Name


class MirrorTraffic(_Strict):
    """Copy ``percent`` of ``route``'s requests to ``backend`` and compare the answers (a
    parallel run: clients only ever get the primary's answer); 0 stops it."""

    do: Literal["mirror"] = "mirror"
    route: Name
    backend: Name
    percent: Percent = 100.0
    compare: Compare = Compare()


class SetFlagRollout(_Strict):
    """Serve ``variant`` of feature flag ``flag`` to ``percent`` of its users."""

    do: Literal["set_flag_rollout"] = "set_flag_rollout"
    flag: str = Field(min_length=1, max_length=200)
    variant: str = Field(min_length=1, max_length=200)
    percent: Percent


class Check(_Strict):
    """Change nothing: the step only measures (its criteria) or waits for a person."""

    do: Literal["check"] = "check"


class SetReplication(_Strict):
    """Ask replication ``replication`` (``hybridmesh replicate``) to run, pause or stop,
    and turn its reverse-sync window on or off (None: leave it)."""

    do: Literal["set_replication"] = "set_replication"
    replication: Name
    desired: Literal["running", "paused", "stopped"] | None = None
    reverse: bool | None = None


class RetireReplication(_Strict):
    """The new owner is confirmed: stop ``replication`` both ways and remove change capture
    from both databases. Not undone by a rollback."""

    do: Literal["retire_replication"] = "retire_replication"
    replication: Name


Action = Annotated[
    SetWeight
    | PrepareRoute
    | RetireBackend
    | MirrorTraffic
    | SetFlagRollout
    | Check
    | SetReplication
    | RetireReplication,
    Field(discriminator="do"),
]


class DataGate(_Strict):
    """What a data step waits for, looked at every ``interval``: the step passes once it
    holds, and fails (rolling back as the plan says) if it has not held within ``timeout``.

    - ``running``: a process runs the replication (it reported within five seconds);
    - ``backfilled``: every table's backfill is done and the lag is at most
      ``max_lag_changes`` changes;
    - ``reconciled``: a reconciliation (repairing first when ``repair``) finds at most
      ``max_inconsistency`` of the rows different;
    - ``reverse_running``: the reverse-sync window runs, at most ``max_lag_changes`` behind.
    """

    replication: Name
    condition: Literal["running", "backfilled", "reconciled", "reverse_running"]
    max_lag_changes: int = Field(default=100, ge=0)
    max_inconsistency: float = Field(default=0.0, ge=0, le=1)
    repair: bool = True
    interval: Seconds = 2.0
    timeout: Seconds = 3600.0


class Measure(_Strict):
    """What a step's gate reads: the per-second windows of ``route``'s ``backend`` (a
    gateway route, or ``abstraction:<name>`` for an abstraction's implementations)."""

    route: str = Field(min_length=1, max_length=200)
    backend: str = Field(min_length=1, max_length=200)


class Step(_Strict):
    name: str = Field(min_length=1, max_length=120)
    type: StepType
    action: Action
    #: Whether the step waits for ``hybridmesh migrate approve`` before it executes.
    approval: bool = False
    #: Its monitoring window and thresholds; None: it passes once executed.
    gate: Criteria | None = None
    #: What the gate reads (by default the backend the action moves traffic to).
    measure: Measure | None = None
    #: A data step's gate: what it waits for instead of traffic figures.
    until: DataGate | None = None

    def measured(self) -> Measure | None:
        if self.measure is not None:
            return self.measure
        action = self.action
        if isinstance(action, SetWeight):
            return Measure(route=action.route, backend=action.backend)
        if isinstance(action, MirrorTraffic):  # the copies are counted as mirror:<backend>
            return Measure(route=action.route, backend=f"mirror:{action.backend}")
        return None

    def preconditions(self) -> list[Precondition]:
        """What must hold before this step executes."""
        action = self.action
        if isinstance(action, SetWeight):
            return [Precondition(action.route, action.backend)]
        if isinstance(action, PrepareRoute):
            return [
                Precondition(action.route, action.source_backend),
                Precondition(action.route, action.target_backend),
            ]
        if isinstance(action, RetireBackend):
            return [Precondition(action.route, action.backend, at_most=0.0)]
        if isinstance(action, MirrorTraffic):
            return [Precondition(action.route, action.backend)]
        return []


@dataclass(frozen=True)
class Precondition:
    """``route`` exists and has ``backend``, at no more than ``at_most`` percent when set."""

    route: str
    backend: str
    at_most: float | None = None

    def problem(self, routes: Mapping[str, Route]) -> str | None:
        """What is wrong, or None when it holds."""
        route = routes.get(self.route)
        if route is None:
            return f"the gateway has no route {self.route!r}"
        names = [b.name for b in route.backends]
        if self.backend not in names:
            return (
                f"route {self.route!r} has no backend {self.backend!r} (it has {', '.join(names)})"
            )
        weight = route.backend(self.backend).weight
        if self.at_most is not None and weight > self.at_most:
            return f"backend {self.backend!r} of route {self.route!r} still takes {weight:g} %"
        return None


# -- webhooks --------------------------------------------------------------------------------


class WebhookType(StrEnum):
    """When a plan calls a webhook (as Flagger's hooks do):

    - ``pre_step``: before a step executes; an answer other than 2xx (or none) pauses the
      plan with the reason, and the step does not execute;
    - ``confirm_step``: before a step executes, the step waits until it answers 2xx
      (asked again every few seconds), as Flagger's confirm-promotion does;
    - ``rollback``: asked at every gate measurement; a 2xx rolls the step back at once (an
      outside alert, say).
    """

    PRE_STEP = "pre_step"
    CONFIRM_STEP = "confirm_step"
    ROLLBACK = "rollback"


class Webhook(_Strict):
    """An HTTP endpoint a plan POSTs to (JSON: plan, version, step, step name, type and
    ``metadata``)."""

    name: Name
    type: WebhookType
    url: Url
    timeout: Seconds = 5.0
    #: The steps (by name) it is called for; empty: every step with a gate.
    steps: tuple[str, ...] = ()
    metadata: dict[str, str] = Field(default_factory=dict, max_length=50)

    def applies_to(self, step: Step) -> bool:
        return step.name in self.steps if self.steps else step.gate is not None


# -- what people write -----------------------------------------------------------------------


class ParallelRun(_Strict):
    """A parallel run before traffic moves: ``percent`` of the route's requests copied to
    the target for a window, passing with at least ``min_compared`` answers compared and a
    mismatch rate under ``max_mismatch_rate`` (and the copies' error rate and p95 within
    the plan's criteria)."""

    percent: Percent = 100.0
    max_mismatch_rate: float = Field(default=0.005, ge=0, le=1)
    min_compared: int = Field(default=50, ge=1, le=1_000_000_000)
    window: Seconds | None = None
    compare: Compare = Compare()


class Target(_Strict):
    """A service that takes over part of the source's traffic.

    ``route`` is the gateway route that carries that part (by default the route named after
    the service); ``backend`` and ``source_backend`` are that route's backends for the
    target and the source (by default the ones naming the services)."""

    service: Name
    route: Name | None = None
    backend: Name | None = None
    source_backend: Name | None = None
    #: The percents traffic moves through, each gated.
    steps: tuple[Percent, ...] = Field(default=DEFAULT_STEPS, min_length=1, max_length=50)
    #: Percents that wait for ``migrate approve`` before traffic moves to them.
    approve_at: tuple[Percent, ...] = ()
    #: Retire the source's backend from the route once the target has 100 % (after a
    #: person confirms).
    retire: bool = True
    #: This target's thresholds, instead of the plan's.
    criteria: Criteria | None = None
    #: A header that sends testers to the target from the start (``X-Canary: always``).
    testers: Testers | None = None
    #: Before any traffic moves: the route's requests copied to the target and the
    #: answers compared, gated on the mismatch rate.
    parallel_run: ParallelRun | None = None
    #: Branch by abstraction: the feature flag, and the variant of the new implementation.
    #: Database decomposition: the flag whose ``variant`` sends writes to the new owner
    #: (instead of a route).
    flag: str | None = Field(default=None, min_length=1, max_length=200)
    variant: str = Field(default="new", min_length=1, max_length=200)
    #: Database decomposition: the replication (``hybridmesh replicate``) that moves the
    #: target's tables out of the source's database.
    replication: Name | None = None

    @model_validator(mode="after")
    def _steps_grow(self) -> Target:
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError("steps must grow: each percent above the one before")
        if self.steps[0] <= 0:
            raise ValueError("steps must be above 0 % (the route is prepared at 0 %)")
        missing = [p for p in self.approve_at if p not in self.steps]
        if missing:
            raise ValueError(f"approve_at names percents that are not steps: {missing}")
        return self


class PlanSpec(_Strict):
    """A plan as written: its targets, and optionally its steps spelled out."""

    name: Name
    source: Name
    strategy: Strategy
    description: str = Field(default="", max_length=2000)
    targets: tuple[Target, ...] = Field(default=(), max_length=50)
    criteria: Criteria = Criteria()
    rollback: RollbackTo = RollbackTo.PREVIOUS_STEP
    #: Steps written out; when given, they are the plan (targets only document it).
    steps: tuple[Step, ...] | None = Field(default=None, min_length=1, max_length=MAX_STEPS)
    webhooks: tuple[Webhook, ...] = Field(default=(), max_length=20)
    #: The Prometheus HTTP API the gates' ``metrics`` query (``http://prometheus:9090``).
    prometheus: Url | None = None

    @model_validator(mode="after")
    def _prometheus_for_metrics(self) -> PlanSpec:
        gates = [self.criteria, *(t.criteria for t in self.targets if t.criteria)]
        gates += [s.gate for s in self.steps or () if s.gate is not None]
        if any(g.metrics for g in gates) and self.prometheus is None:
            raise ValueError("gates with metrics need the plan's prometheus URL")
        return self

    @model_validator(mode="after")
    def _something_to_do(self) -> PlanSpec:
        if not self.targets and self.steps is None:
            raise ValueError("a plan needs targets or steps")
        services = [t.service for t in self.targets]
        if len(set(services)) != len(services):
            raise ValueError("a target service is listed twice")
        if self.source in services:
            raise ValueError("the source cannot be its own target")
        return self


class MigrationPlan(_Strict):
    """A plan ready to run: its spec and the steps built from it."""

    spec: PlanSpec
    steps: tuple[Step, ...] = Field(min_length=1, max_length=MAX_STEPS)

    @property
    def name(self) -> str:
        return self.spec.name

    def rollback_action(self, index: int) -> Action | None:
        """What undoes step ``index`` (and the steps of its target before it) as the plan's
        rollback strategy says: the weight (or flag percent) of the step before on the same
        route and backend, or 0; None when the step moved no traffic."""
        action = self.steps[index].action
        if isinstance(action, SetWeight):
            previous = 0.0
            if self.spec.rollback is RollbackTo.PREVIOUS_STEP:
                for earlier in reversed(self.steps[:index]):
                    e = earlier.action
                    if isinstance(e, SetWeight) and (e.route, e.backend) == (
                        action.route,
                        action.backend,
                    ):
                        previous = e.percent
                        break
            return SetWeight(route=action.route, backend=action.backend, percent=previous)
        if isinstance(action, SetFlagRollout):
            previous = 0.0
            if self.spec.rollback is RollbackTo.PREVIOUS_STEP:
                for earlier in reversed(self.steps[:index]):
                    e = earlier.action
                    if isinstance(e, SetFlagRollout) and e.flag == action.flag:
                        previous = e.percent
                        break
            return SetFlagRollout(flag=action.flag, variant=action.variant, percent=previous)
        if isinstance(action, MirrorTraffic) and action.percent > 0:
            return MirrorTraffic(route=action.route, backend=action.backend, percent=0)
        if isinstance(action, SetReplication):
            return SetReplication(
                replication=action.replication,
                desired="stopped" if action.desired == "running" else None,
                reverse=False if action.reverse else None,
            )
        return None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def build_plan(spec: PlanSpec, routes: Mapping[str, Route]) -> MigrationPlan:
    """The steps of ``spec`` (its own when written out, else generated by its strategy),
    checked against the gateway's ``routes``; :class:`ValidationError` names the target
    whose route or backends cannot be found."""
    if spec.steps is not None:
        return MigrationPlan(spec=spec, steps=spec.steps)
    problems: list[Problem] = []
    steps: list[Step] = []
    for index, target in enumerate(spec.targets):
        try:
            steps += _target_steps(spec, target, routes)
        except _TargetProblem as problem:
            problems.append(Problem(str(problem), field=f"targets.{index}.{problem.field}"))
    if problems:
        raise ValidationError(problems)
    if len(steps) > MAX_STEPS:
        raise ValidationError([Problem(f"the plan would have over {MAX_STEPS} steps")])
    return MigrationPlan(spec=spec, steps=tuple(steps))


class _TargetProblem(Exception):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def _target_steps(spec: PlanSpec, target: Target, routes: Mapping[str, Route]) -> list[Step]:
    criteria = target.criteria or spec.criteria
    if spec.strategy is Strategy.STRANGLER_FIG:
        return _strangler_steps(spec, target, routes, criteria)
    if spec.strategy is Strategy.BRANCH_BY_ABSTRACTION:
        return _abstraction_steps(target, criteria)
    return _decomposition_steps(spec, target, routes, criteria)


def _backend_of(route: Route, service: str, given: str | None, field: str) -> str:
    if given is not None:
        if given not in [b.name for b in route.backends]:
            names = ", ".join(b.name for b in route.backends)
            raise _TargetProblem(
                f"route {route.name!r} has no backend {given!r} (it has {names})", field
            )
        return given
    found = [b.name for b in route.backends if b.service == service]
    if len(found) != 1:
        what = "no backend" if not found else "more than one backend"
        raise _TargetProblem(
            f"route {route.name!r} has {what} for service {service!r}; name it with {field}",
            field,
        )
    return found[0]


def _strangler_steps(
    spec: PlanSpec, target: Target, routes: Mapping[str, Route], criteria: Criteria
) -> list[Step]:
    route_name = target.route or target.service
    route = routes.get(route_name)
    if route is None:
        raise _TargetProblem(
            f"the gateway has no route {route_name!r}; apply one with `hybridmesh routes "
            "apply` whose backends are the source and the target",
            "route",
        )
    backend = _backend_of(route, target.service, target.backend, "backend")
    source = _backend_of(route, spec.source, target.source_backend, "source_backend")
    steps = [
        Step(
            name=f"prepare {route_name}",
            type=StepType.ROUTING,
            action=PrepareRoute(
                route=route_name,
                source_backend=source,
                target_backend=backend,
                testers=target.testers,
            ),
        )
    ]
    if target.parallel_run is not None:
        run = target.parallel_run
        updates: dict[str, Any] = {
            "max_mismatch_rate": run.max_mismatch_rate,
            "min_compared": run.min_compared,
        }
        if run.window is not None:
            updates["window"] = run.window
            updates["interval"] = min(criteria.interval, run.window)
        mirror_gate = Criteria.model_validate({**criteria.model_dump(), **updates})
        steps += [
            Step(
                name=f"parallel run {target.service}",
                type=StepType.VALIDATION,
                action=MirrorTraffic(
                    route=route_name, backend=backend, percent=run.percent, compare=run.compare
                ),
                gate=mirror_gate,
            ),
            Step(
                name=f"end parallel run {target.service}",
                type=StepType.VALIDATION,
                action=MirrorTraffic(route=route_name, backend=backend, percent=0),
            ),
        ]
    for percent in target.steps:
        steps.append(
            Step(
                name=f"{target.service} {percent:g}%",
                type=StepType.ROUTING,
                action=SetWeight(route=route_name, backend=backend, percent=percent),
                approval=percent in target.approve_at,
                gate=criteria,
            )
        )
    if target.retire and target.steps[-1] == 100:
        steps.append(
            Step(
                name=f"retire {spec.source} from {route_name}",
                type=StepType.FUNCTIONALITY,
                action=RetireBackend(route=route_name, backend=source),
                approval=True,
            )
        )
    return steps


def _decomposition_steps(
    spec: PlanSpec, target: Target, routes: Mapping[str, Route], criteria: Criteria
) -> list[Step]:
    """Database decomposition, as the guide's cut-over: replicate, backfill, verify, start
    reverse sync, switch writes to the new owner (its route, or a flag), wait for a person
    to confirm while legacy reports keep reading the old database, retire."""
    if target.replication is None:
        raise _TargetProblem(
            "a database_decomposition target needs its replication: define one with "
            "`hybridmesh replicate apply` and name it here",
            "replication",
        )
    name = target.replication

    def until(condition: Any) -> DataGate:
        return DataGate(replication=name, condition=condition)

    switch: Step
    if target.flag is not None:
        switch = Step(
            name=f"writes to {target.service}",
            type=StepType.FUNCTIONALITY,
            action=SetFlagRollout(flag=target.flag, variant=target.variant, percent=100),
            approval=True,
            gate=criteria,
            measure=Measure(route=f"abstraction:{target.flag}", backend=target.variant),
        )
    else:
        route_name = target.route or target.service
        route = routes.get(route_name)
        if route is None:
            raise _TargetProblem(
                f"the gateway has no route {route_name!r} for the new owner's writes; apply "
                "one, or name a flag",
                "route",
            )
        backend = _backend_of(route, target.service, target.backend, "backend")
        switch = Step(
            name=f"writes to {target.service}",
            type=StepType.ROUTING,
            action=SetWeight(route=route.name, backend=backend, percent=100),
            approval=True,
            gate=criteria,
        )
    return [
        Step(
            name="replicate",
            type=StepType.DATA,
            action=SetReplication(replication=name, desired="running"),
            until=until("running"),
        ),
        Step(name="backfill", type=StepType.DATA, action=Check(), until=until("backfilled")),
        Step(name="verify", type=StepType.VALIDATION, action=Check(), until=until("reconciled")),
        Step(
            name="reverse sync",
            type=StepType.DATA,
            action=SetReplication(replication=name, reverse=True),
            until=until("reverse_running"),
        ),
        switch,
        # Reverse sync runs, and legacy reports keep reading the old database, until a
        # person confirms the new owner.
        Step(name="confirm", type=StepType.VALIDATION, action=Check(), approval=True),
        Step(
            name="retire",
            type=StepType.DATA,
            action=RetireReplication(replication=name),
        ),
    ]


def _abstraction_steps(target: Target, criteria: Criteria) -> list[Step]:
    flag = target.flag or target.service
    measure = Measure(route=f"abstraction:{flag}", backend=target.variant)
    return [
        Step(
            name=f"{flag} {percent:g}%",
            type=StepType.FUNCTIONALITY,
            action=SetFlagRollout(flag=flag, variant=target.variant, percent=percent),
            approval=percent in target.approve_at,
            gate=criteria,
            measure=measure,
        )
        for percent in target.steps
    ]


# -- reading files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedPlan:
    """A plan spec and where it was written."""

    spec: PlanSpec
    file: str
    line: int
    lines: Lines | None = field(default=None, compare=False, repr=False)

    def line_of(self, *loc: str | int) -> int:
        return self.line if self.lines is None else self.lines.line_of(loc)


def _describe(error: Any) -> str:
    return "unknown field" if error["type"] == "extra_forbidden" else describe(error)


def parse_plans(
    data: bytes | str, file: str, limits: YamlLimits = DEFAULT_LIMITS
) -> list[LoadedPlan]:
    """The plans of one YAML text (a plan, a list of plans, or ``plans:``);
    :class:`ValidationError` lists every problem with its file, line and field."""
    reader = YamlReader(limits)
    found: list[LoadedPlan] = []
    problems: list[Problem] = []
    for document in reader.parse(data, file):
        for entry, prefix in document_entries(document.data, "plans", "name"):
            lines = document.lines.under(prefix) or Lines(document.lines.line_of(prefix))
            if not isinstance(entry, dict):
                problems.append(Problem("a plan must be a mapping", file, lines.line, None))
                continue
            try:
                spec = PlanSpec.model_validate(entry)
            except pydantic.ValidationError as invalid:
                for error in invalid.errors():
                    loc = tuple(location(error))
                    dotted = ".".join(str(part) for part in loc) or None
                    problems.append(Problem(_describe(error), file, lines.line_of(loc), dotted))
                continue
            found.append(LoadedPlan(spec, file, lines.line, lines))
    if not found and not problems:
        problems.append(Problem("defines no plan", file))
    if problems:
        raise ValidationError(problems)
    return found


def located(error: ValidationError, loaded: LoadedPlan) -> ValidationError:
    """``error`` (from :func:`build_plan`) with the file and line of each field it names."""
    problems = []
    for problem in error.problems:
        loc: Sequence[str | int] = tuple(
            int(part) if part.isdigit() else part
            for part in (problem.field or "").split(".")
            if part
        )
        problems.append(Problem(problem.message, loaded.file, loaded.line_of(*loc), problem.field))
    return ValidationError(problems)


def percent_text(value: float) -> str:
    return f"{value:g} %" if math.isfinite(value) else "?"


__all__ = [
    "DEFAULT_STEPS",
    "Action",
    "Check",
    "Criteria",
    "DataGate",
    "LoadedPlan",
    "Measure",
    "MetricCheck",
    "MigrationPlan",
    "MirrorTraffic",
    "ParallelRun",
    "PlanSpec",
    "Precondition",
    "PrepareRoute",
    "RetireBackend",
    "RetireReplication",
    "RollbackTo",
    "SetFlagRollout",
    "SetReplication",
    "SetWeight",
    "Step",
    "StepType",
    "Strategy",
    "Target",
    "Testers",
    "Webhook",
    "WebhookType",
    "build_plan",
    "located",
    "parse_plans",
]
