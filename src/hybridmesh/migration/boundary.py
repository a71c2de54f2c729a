"""Boundary experiments: a candidate boundary tried on a route's live traffic before anyone
commits to it (the integration guide's ``runBoundaryExperiment(id, hypothesis, boundaries,
duration)``).

A :class:`BoundaryExperiment` names a gateway ``route``, a ``candidate`` backend (a registry
service or a URL) and a :class:`Hypothesis`: the error rate, p95 latency and mismatch rate
the candidate must stay within. :func:`run_boundary_experiment` runs it as a parallel run
(``method: mirror``, the only one so far):

1. it adds the candidate to the route as a backend at 0 % (named after the experiment's
   ``id``) and mirrors the route to it, in the store through
   :class:`~hybridmesh.gateway.state.GatewayState`: every gateway replica picks the change
   up within a second. The gateway then copies the route's GET and HEAD requests to the
   candidate and compares the answers (:mod:`hybridmesh.gateway.mirror`); clients only ever
   get the primary's answer;
2. it waits ``duration``, telling a ``progress`` callback how far it is;
3. it **always** puts the route back, on success, failure or cancellation alike: as it was
   when nobody changed it meanwhile; otherwise it takes out only what the experiment added
   (its mirror and its backend, the route's own mirror put back) and says so in the result;
4. after a few seconds' settling (copies under way end, every replica writes its last
   seconds), it reads the per-second windows the replicas wrote for the run
   (:func:`~hybridmesh.gateway.stats.window_stats`): the candidate's copies, counted as
   backend ``mirror:<id>`` (requests, errors, p95, and how many were compared and differed),
   and the route's own backends together, for reference;
5. it judges them and stores the :class:`ExperimentResult` in ``mig_experiments``.

The verdict: ``rejected`` when any threshold is missed (each reason names the threshold
and the value measured), ``inconclusive`` when nothing is missed but a figure could not be
judged (fewer than ``min_requests`` copies reached the candidate, or fewer than
``min_compared`` were compared), ``confirmed`` when every threshold is met. A threshold is
met when the value measured is at most it.

The result is stored as ``running`` before the route is changed (with the route as it
was), so a run whose process died is visible in ``hybridmesh experiments list``; re-applying
the route's file (``hybridmesh routes apply``) takes such a run's mirror out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from hybridmesh.core.errors import (
    HybridMeshError,
    NotFoundError,
    Problem,
    UnknownServiceError,
    ValidationError,
)
from hybridmesh.core.limits import describe, location
from hybridmesh.core.names import Name
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.gateway.config import Backend, Compare, Mirror, Percent, Route, Url
from hybridmesh.gateway.state import GatewayState, StoredRoute
from hybridmesh.gateway.stats import (
    MAX_WINDOW_SECONDS,
    BackendWindow,
    merge_histograms,
    parse_duration,
    window_stats,
)
from hybridmesh.observability import get_logger
from hybridmesh.registry.catalog import RegistryCatalog
from hybridmesh.store import Store

log = get_logger("hybridmesh.migration.boundary")

T = TypeVar("T")

#: Seconds after the route is put back before the windows are read: replicas see the
#: change within a second, copies under way end, and each replica writes a second's rows
#: within about a second of its end.
SETTLE_SECONDS = 3.0
#: The longest run: the windows are kept an hour, and the run and its settling must fit.
MAX_DURATION_SECONDS = MAX_WINDOW_SECONDS - 60
#: Seconds between calls of the progress callback.
PROGRESS_SECONDS = 0.5


def _seconds(value: Any) -> Any:
    """A duration as seconds: a number, or text such as ``30s`` or ``5m``."""
    if isinstance(value, str):
        return parse_duration(value)
    return value


Duration = Annotated[float, BeforeValidator(_seconds), Field(gt=0, le=MAX_DURATION_SECONDS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Hypothesis(_Strict):
    """What the candidate must show for the boundary to hold: each ``max_*`` is the most
    it may measure; ``min_requests`` copies must reach it and ``min_compared`` be compared
    with the primary's answers for the figures to count."""

    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_p95_ms: float = Field(default=500.0, gt=0, le=3_600_000)
    max_mismatch_rate: float = Field(default=0.005, ge=0, le=1)
    min_requests: int = Field(default=20, ge=1, le=1_000_000_000)
    min_compared: int = Field(default=20, ge=1, le=1_000_000_000)


class Candidate(_Strict):
    """The boundary tried: a registry ``service`` (its ``base_url``) or a ``url``."""

    service: Name | None = None
    url: Url | None = None

    @model_validator(mode="after")
    def _one(self) -> Candidate:
        if (self.service is None) == (self.url is None):
            raise ValueError("give exactly one of service, url")
        return self

    def describe(self) -> str:
        return f"service {self.service}" if self.service is not None else str(self.url)


class BoundaryExperiment(_Strict):
    """One experiment: ``candidate`` tried on ``route``'s traffic for ``duration`` seconds
    (a number, or text such as ``30s``, ``5m``), judged by ``hypothesis``.

    ``id`` names the experiment and, while it runs, the candidate's backend on the route
    (so the route must not have a backend of that name). ``percent`` of the route's GET and
    HEAD requests are copied; ``compare`` says how answers are compared (``ignore``: JSON
    paths that may differ, such as ids or timestamps)."""

    id: Name
    route: Name
    candidate: Candidate
    duration: Duration
    hypothesis: Hypothesis = Hypothesis()
    method: Literal["mirror"] = "mirror"
    percent: Percent = 100.0
    compare: Compare = Compare()

    @property
    def backend(self) -> str:
        """The candidate's backend on the route while the experiment runs."""
        return self.id

    @property
    def window_backend(self) -> str:
        """Where the stats windows count the candidate's copies."""
        return f"mirror:{self.id}"

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Status(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Verdict(StrEnum):
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    INCONCLUSIVE = "inconclusive"


class RestoreOutcome(StrEnum):
    #: The route is as it was before the experiment.
    RESTORED = "restored"
    #: The route was changed meanwhile: only the experiment's mirror and backend were taken
    #: out (and the route's own mirror put back).
    EXPERIMENT_REMOVED = "experiment_removed"
    #: The route was changed meanwhile and holds nothing of the experiment any more.
    UNTOUCHED = "untouched"
    #: The route was deleted meanwhile.
    ROUTE_DELETED = "route_deleted"
    #: Putting the route back failed: ``detail`` says why; the route may still mirror.
    FAILED = "failed"


@dataclass(frozen=True)
class Restore:
    """How the route was put back after the run."""

    outcome: RestoreOutcome
    detail: str

    @property
    def ok(self) -> bool:
        return self.outcome is not RestoreOutcome.FAILED

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Restore:
        return cls(RestoreOutcome(data["outcome"]), data["detail"])


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass(frozen=True)
class Figures:
    """What one side did over the run, every replica together."""

    requests: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    #: Copies compared with the primary's answer, and those that differed (the candidate).
    compared: int = 0
    mismatches: int = 0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def mismatch_rate(self) -> float:
        return self.mismatches / self.compared if self.compared else 0.0

    @classmethod
    def of(cls, window: BackendWindow | None) -> Figures:
        """A window's figures, latencies to the microsecond (as they are stored)."""
        if window is None:
            return cls()
        return cls(
            window.requests,
            window.errors,
            _rounded(window.p50_ms),
            _rounded(window.p95_ms),
            _rounded(window.p99_ms),
            window.compared,
            window.mismatches,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "compared": self.compared,
            "mismatches": self.mismatches,
            "mismatch_rate": round(self.mismatch_rate, 6),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Figures:
        return cls(
            int(data["requests"]),
            int(data["errors"]),
            data.get("p50_ms"),
            data.get("p95_ms"),
            data.get("p99_ms"),
            int(data.get("compared", 0)),
            int(data.get("mismatches", 0)),
        )


@dataclass(frozen=True)
class ExperimentResult:
    """One run of a boundary experiment, as stored."""

    spec: BoundaryExperiment
    status: Status
    started_at: float
    #: The route before the experiment changed it (its stored spec).
    route_before: dict[str, Any]
    ended_at: float | None = None
    verdict: Verdict | None = None
    #: Why it was rejected or inconclusive: each threshold missed (or figure that could
    #: not be judged) with the value measured.
    reasons: tuple[str, ...] = ()
    candidate: Figures = Figures()
    #: The route's own backends over the same seconds, for reference.
    primary: Figures = Figures()
    #: The seconds read: ``since`` (included) to ``until`` (excluded).
    since: int | None = None
    until: int | None = None
    restore: Restore | None = None
    notes: tuple[str, ...] = ()
    error: str | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def route(self) -> str:
        return self.spec.route

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "route": self.route,
            "method": self.spec.method,
            "candidate": self.spec.candidate.model_dump(mode="json", exclude_none=True),
            "status": self.status.value,
            "verdict": None if self.verdict is None else self.verdict.value,
            "reasons": list(self.reasons),
            "hypothesis": self.spec.hypothesis.model_dump(mode="json"),
            "duration": self.spec.duration,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "since": self.since,
            "until": self.until,
            "candidate_figures": self.candidate.to_dict(),
            "primary_figures": self.primary.to_dict(),
            "restore": None if self.restore is None else self.restore.to_dict(),
            "notes": list(self.notes),
            "error": self.error,
            "spec": self.spec.to_json(),
            "route_before": self.route_before,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentResult:
        return cls(
            spec=BoundaryExperiment.model_validate(data["spec"], strict=False),
            status=Status(data["status"]),
            started_at=float(data["started_at"]),
            route_before=data["route_before"],
            ended_at=data.get("ended_at"),
            verdict=None if data.get("verdict") is None else Verdict(data["verdict"]),
            reasons=tuple(data.get("reasons", ())),
            candidate=Figures.from_dict(data["candidate_figures"]),
            primary=Figures.from_dict(data["primary_figures"]),
            since=data.get("since"),
            until=data.get("until"),
            restore=None if data.get("restore") is None else Restore.from_dict(data["restore"]),
            notes=tuple(data.get("notes", ())),
            error=data.get("error"),
        )


class ExperimentConflictError(HybridMeshError):
    """Another experiment is mirroring the route (exit 1 on the CLI)."""


# -- judging ---------------------------------------------------------------------------------


def judge(hypothesis: Hypothesis, candidate: Figures) -> tuple[Verdict, tuple[str, ...]]:
    """The verdict on the candidate's figures, and its reasons: every threshold missed, or
    when none is, every figure there was too little traffic to judge."""
    missed: list[str] = []
    unjudged: list[str] = []
    h = hypothesis
    if candidate.requests < h.min_requests:
        unjudged.append(
            f"{candidate.requests} requests reached the candidate, fewer than the "
            f"{h.min_requests} needed (min_requests): error rate and p95 not judged"
        )
    else:
        if candidate.error_rate > h.max_error_rate:
            missed.append(
                f"error rate {candidate.error_rate:.2%} ({candidate.errors} of "
                f"{candidate.requests}) is over max_error_rate {h.max_error_rate:.2%}"
            )
        p95 = candidate.p95_ms
        if p95 is not None and p95 > h.max_p95_ms:
            missed.append(f"p95 {p95:.1f} ms is over max_p95_ms {h.max_p95_ms:g} ms")
    if candidate.compared < h.min_compared:
        unjudged.append(
            f"{candidate.compared} answers compared, fewer than the {h.min_compared} "
            "needed (min_compared): mismatch rate not judged"
        )
    elif candidate.mismatch_rate > h.max_mismatch_rate:
        missed.append(
            f"mismatch rate {candidate.mismatch_rate:.2%} ({candidate.mismatches} of "
            f"{candidate.compared} compared) is over max_mismatch_rate "
            f"{h.max_mismatch_rate:.2%}"
        )
    if missed:
        return Verdict.REJECTED, tuple(missed)
    if unjudged:
        return Verdict.INCONCLUSIVE, tuple(unjudged)
    return Verdict.CONFIRMED, ()


# -- the store -------------------------------------------------------------------------------


class ExperimentStore:
    """Boundary experiments' results in ``mig_experiments`` (a migrated store)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, result: ExperimentResult) -> bool:
        """Store a new result; False when an experiment with its id exists already."""
        added = await self.store.execute(
            "INSERT INTO mig_experiments (id, route, status, verdict, result, started_at, "
            "ended_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            *self._row(result),
        )
        return added > 0

    async def save(self, result: ExperimentResult) -> None:
        """Store ``result``, replacing the one with its id."""
        await self.store.execute(
            "INSERT INTO mig_experiments (id, route, status, verdict, result, started_at, "
            "ended_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "route = excluded.route, status = excluded.status, verdict = excluded.verdict, "
            "result = excluded.result, started_at = excluded.started_at, "
            "ended_at = excluded.ended_at",
            *self._row(result),
        )

    @staticmethod
    def _row(result: ExperimentResult) -> tuple[Any, ...]:
        return (
            result.id,
            result.route,
            result.status.value,
            None if result.verdict is None else result.verdict.value,
            dumps(result.to_dict()),
            result.started_at,
            result.ended_at,
        )

    async def get(self, id: str) -> ExperimentResult:
        """The result of experiment ``id``; :class:`NotFoundError` when there is none."""
        row = await self.store.fetch_one("SELECT result FROM mig_experiments WHERE id = ?", id)
        if row is None:
            raise NotFoundError(f"no experiment {id!r}")
        return ExperimentResult.from_dict(loads(row["result"]))

    async def list(
        self, *, route: str | None = None, status: Status | None = None, limit: int = 100
    ) -> list[ExperimentResult]:
        """The newest ``limit`` results (of ``route``, with ``status``), newest first."""
        where: list[str] = []
        args: list[Any] = []
        if route is not None:
            where.append("route = ?")
            args.append(route)
        if status is not None:
            where.append("status = ?")
            args.append(status.value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self.store.fetch_all(
            f"SELECT result FROM mig_experiments{clause} ORDER BY started_at DESC, id DESC LIMIT ?",
            *args,
            int(limit),
        )
        return [ExperimentResult.from_dict(loads(row["result"])) for row in rows]


# -- the route -------------------------------------------------------------------------------


def with_candidate(route: Route, spec: BoundaryExperiment) -> Route:
    """``route`` with the candidate as a backend at 0 % and mirrored to it."""
    candidate = Backend(
        name=spec.backend, service=spec.candidate.service, url=spec.candidate.url, weight=0.0
    )
    mirror = Mirror(backend=spec.backend, percent=spec.percent, compare=spec.compare)
    data = route.model_dump(mode="json", exclude_defaults=True)
    data["backends"] = [*data["backends"], candidate.model_dump(mode="json", exclude_none=True)]
    data["mirror"] = mirror.model_dump(mode="json")
    try:
        return Route.model_validate(data)
    except pydantic.ValidationError as invalid:
        raise ValidationError(
            [
                Problem(f"route {route.name!r} cannot take the candidate: {describe(error)}")
                for error in invalid.errors()
            ]
        ) from None


def without_candidate(current: Route, original: Route, spec: BoundaryExperiment) -> Route:
    """``current`` (changed by someone during the run) with what the experiment added taken
    out: its mirror (the original's put back when its backend is still there) and its
    backend, unless traffic was sent to it meanwhile."""
    data = current.model_dump(mode="json", exclude_defaults=True)
    if current.mirror is not None and current.mirror.backend == spec.backend:
        names = {b.name for b in current.backends} - {spec.backend}
        if original.mirror is not None and original.mirror.backend in names:
            data["mirror"] = original.mirror.model_dump(mode="json")
        else:
            data.pop("mirror", None)
    if _removable(current, spec.backend):
        data["backends"] = [b for b in data["backends"] if b["name"] != spec.backend]
    return Route.model_validate(data)


def _removable(route: Route, backend: str) -> bool:
    """Whether ``backend`` is on ``route`` and takes no traffic of its own."""
    found = [b for b in route.backends if b.name == backend]
    return (
        bool(found)
        and found[0].weight == 0
        and all(rule.backend != backend for rule in route.header_routes)
    )


async def _restore(
    state: GatewayState, spec: BoundaryExperiment, before: StoredRoute, installed: Route
) -> Restore:
    """Put the route back (never raises: a failure is the result's). The route is read
    and written in one transaction, so a change made meanwhile is never overwritten."""
    outcome = Restore(RestoreOutcome.RESTORED, "the route is as it was")

    def put_back(current: Route) -> Route | None:
        nonlocal outcome
        if current == before.route:
            return None
        if current == installed:
            return before.route
        cleaned = without_candidate(current, before.route, spec)
        if cleaned == current:
            outcome = Restore(
                RestoreOutcome.UNTOUCHED,
                "the route was changed during the experiment and holds nothing of it; "
                "left as it is",
            )
            return None
        detail = (
            "the route was changed during the experiment: only the experiment's mirror "
            "was taken out"
        )
        if any(b.name == spec.backend for b in cleaned.backends):
            detail += (
                f"; backend {spec.backend!r} was left on the route (it was given traffic meanwhile)"
            )
        else:
            detail += f" and its backend {spec.backend!r} removed"
        outcome = Restore(RestoreOutcome.EXPERIMENT_REMOVED, detail)
        return cleaned

    try:
        await state.update(spec.route, put_back)
    except NotFoundError:
        return Restore(RestoreOutcome.ROUTE_DELETED, "the route was deleted during the experiment")
    except Exception as error:
        log.error(
            "boundary experiment %s: putting route %s back failed: %s", spec.id, spec.route, error
        )
        return Restore(RestoreOutcome.FAILED, f"putting the route back failed: {error}")
    return outcome


# -- running ---------------------------------------------------------------------------------


ProgressCallback = Callable[[float, float], None]


async def run_boundary_experiment(
    store: Store,
    spec: BoundaryExperiment,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    progress: ProgressCallback | None = None,
    settle_seconds: float = SETTLE_SECONDS,
) -> ExperimentResult:
    """Run ``spec`` on the gateway's live traffic and return its stored result (see the
    module's docstring).

    ``progress(elapsed, duration)`` is called about every :data:`PROGRESS_SECONDS` while
    the candidate is mirrored. Raises :class:`ValidationError` when the spec cannot run (no
    such route, an unknown service, an id taken), :class:`ExperimentConflictError` when
    another experiment mirrors the route; a failure or cancellation during the run is
    raised after the route is put back and the result stored as ``failed`` or
    ``cancelled``. A route that could not be put back shows in ``result.restore``."""
    state = GatewayState(store, clock=clock)
    experiments = ExperimentStore(store)
    before = await _check(store, state, experiments, spec)
    installed = with_candidate(before.route, spec)
    result = ExperimentResult(
        spec=spec,
        status=Status.RUNNING,
        started_at=clock(),
        route_before=before.route.model_dump(mode="json", exclude_defaults=True),
        notes=_notes(before.route),
    )
    if not await experiments.create(result):
        raise _taken(spec.id)
    restore: Restore | None = None
    try:
        try:
            await state.update(spec.route, _install(before.route, installed))
            await _wait(spec.duration, clock, sleep, progress)
        finally:
            restore = await _finish(_restore(state, spec, before, installed))
        restored_at = clock()
        while (left := restored_at + settle_seconds - clock()) > 0:
            await sleep(left)
        since = int(result.started_at)
        until = max(int(clock()), since + 1)
        span = min(until - since, MAX_WINDOW_SECONDS)
        stats = await window_stats(store, spec.route, span, now=until)
    except BaseException as error:
        cancelled = isinstance(error, asyncio.CancelledError)
        ended = replace(
            result,
            status=Status.CANCELLED if cancelled else Status.FAILED,
            ended_at=clock(),
            restore=restore,
            error=None if cancelled else f"{type(error).__name__}: {error}",
        )
        with contextlib.suppress(Exception):
            await _finish(experiments.save(ended))
        raise
    candidate = Figures.of(stats.backends.get(spec.window_backend))
    verdict, reasons = judge(spec.hypothesis, candidate)
    result = replace(
        result,
        status=Status.COMPLETED,
        ended_at=clock(),
        verdict=verdict,
        reasons=reasons,
        candidate=candidate,
        primary=_primary(stats.backends, spec),
        since=stats.since,
        until=stats.until,
        restore=restore,
    )
    await experiments.save(result)
    return result


async def _check(
    store: Store, state: GatewayState, experiments: ExperimentStore, spec: BoundaryExperiment
) -> StoredRoute:
    """The route as it is, when ``spec`` can run on it."""
    try:
        before = await state.route(spec.route)
    except NotFoundError:
        raise ValidationError(
            [Problem(f"the gateway has no route {spec.route!r}", field="route")]
        ) from None
    with contextlib.suppress(NotFoundError):
        await experiments.get(spec.id)
        raise _taken(spec.id)
    if spec.backend in [b.name for b in before.route.backends]:
        raise ValidationError(
            [
                Problem(
                    f"route {spec.route!r} has a backend named {spec.id!r} already; the "
                    "candidate's backend takes the experiment's id: give it another one",
                    field="id",
                )
            ]
        )
    if spec.candidate.service is not None:
        try:
            await RegistryCatalog(store).get(spec.candidate.service)
        except UnknownServiceError as error:
            raise ValidationError(
                [Problem(f"{error} (hybridmesh registry load)", field="candidate.service")]
            ) from None
    mirror = before.route.mirror
    if mirror is not None:
        for other in await experiments.list(route=spec.route, status=Status.RUNNING):
            if other.spec.backend == mirror.backend:
                raise ExperimentConflictError(
                    f"experiment {other.id!r} is mirroring route {spec.route!r}; wait for it "
                    "to end (or, if its process died, re-apply the route with `hybridmesh "
                    "routes apply`)"
                )
    return before


def _install(before: Route, installed: Route) -> Callable[[Route], Route]:
    """The change that puts the candidate on the route, unless the route moved since it
    was checked (then the experiment does not start: nothing is overwritten)."""

    def install(current: Route) -> Route:
        if current != before:
            raise ExperimentConflictError(
                f"route {current.name!r} changed while the experiment was being set up; try again"
            )
        return installed

    return install


def _taken(id: str) -> ValidationError:
    return ValidationError(
        [
            Problem(
                f"experiment {id!r} exists already; ids are not reused: give it another",
                field="id",
            )
        ]
    )


def _notes(route: Route) -> tuple[str, ...]:
    if route.mirror is None:
        return ()
    return (
        f"the route's own mirror (to {route.mirror.backend!r}) was suspended during the experiment",
    )


async def _wait(
    duration: float,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    progress: ProgressCallback | None,
) -> None:
    began = clock()
    while (elapsed := clock() - began) < duration:
        if progress is not None:
            progress(elapsed, duration)
        await sleep(min(PROGRESS_SECONDS, duration - elapsed))
    if progress is not None:
        progress(duration, duration)


async def _finish(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end even when the caller is cancelled meanwhile (then the
    cancellation goes on once it ended): putting a route back must not stop halfway."""
    task = asyncio.ensure_future(coroutine)
    cancelled = False
    while True:
        try:
            value = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
            continue
        if cancelled:
            raise asyncio.CancelledError
        return value


def _primary(backends: dict[str, BackendWindow], spec: BoundaryExperiment) -> Figures:
    """The route's own backends merged (not the mirror's copies, not refusals)."""
    own = [
        window
        for name, window in backends.items()
        if name != "-" and not name.startswith("mirror:") and name != spec.backend
    ]
    if not own:
        return Figures()
    merged = BackendWindow(
        "primary",
        sum(w.requests for w in own),
        sum(w.errors for w in own),
        merge_histograms(w.latency for w in own),
    )
    return Figures.of(merged)


def parse_spec(data: dict[str, Any]) -> BoundaryExperiment:
    """``data`` as a :class:`BoundaryExperiment`; :class:`ValidationError` names each
    field that is wrong."""
    try:
        return BoundaryExperiment.model_validate(data)
    except pydantic.ValidationError as invalid:
        raise ValidationError(
            [
                Problem(
                    "unknown field" if error["type"] == "extra_forbidden" else describe(error),
                    field=".".join(str(part) for part in location(error)) or None,
                )
                for error in invalid.errors()
            ]
        ) from None


__all__ = [
    "MAX_DURATION_SECONDS",
    "PROGRESS_SECONDS",
    "SETTLE_SECONDS",
    "BoundaryExperiment",
    "Candidate",
    "ExperimentConflictError",
    "ExperimentResult",
    "ExperimentStore",
    "Figures",
    "Hypothesis",
    "ProgressCallback",
    "Restore",
    "RestoreOutcome",
    "Status",
    "Verdict",
    "judge",
    "parse_spec",
    "run_boundary_experiment",
    "with_candidate",
    "without_candidate",
]
