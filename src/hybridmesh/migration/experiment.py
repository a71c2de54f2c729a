"""Parallel runs in process: the old code path answers, the new ones are tried beside it.

An :class:`Experiment` wraps a *control* (the code path in use) and one or more named
*candidates* (the paths meant to replace it), all async callables taking the same
arguments. ``await experiment.run(*args, **kwargs)`` always returns what the control
returned, or raises the control's exception unchanged; the candidates are run on the same
arguments, timed, and compared with the control, and nothing they do reaches the caller:
their exceptions are caught and recorded, and in the default ``mode="concurrent"`` they run
beside the control and are compared in the background, so a slow candidate never holds
the caller (each is cut off after ``timeout`` seconds). ``mode="after"`` runs the
candidates one by one once the control is done, in the caller's task, and publishes before
returning: slower for the caller, but candidates never overlap the control (for code paths
that must not run at the same time, such as two that take the same lock).

The model is GitHub's Scientist. Each run that tries the candidates makes a :class:`Result`:
an :class:`Observation` of the control and of each candidate (value or exception, seconds
taken) and, per candidate, an :class:`Outcome`:

- ``matched``: ``compare(control_value, candidate_value)`` held (default ``==``), or both
  raised exceptions of the same type and arguments;
- ``ignored``: the values differed but one of the ``ignore`` rules
  (``rule(control_value, candidate_value) -> bool``) said the difference does not count;
- ``mismatched``: the values differed (or the control raised and the candidate did not);
- ``error``: the candidate raised (or took longer than ``timeout``) and the control did
  not raise the same.

Results go to the publishers (plain or async callables taking the :class:`Result`), such
as :class:`ExperimentStats`, which counts outcomes per candidate, keeps latency histograms
and the newest mismatches. A publisher that raises is logged and otherwise ignored, as are
``compare``, ``ignore``, ``clean``, ``before_run`` and ``enabled`` failures: an experiment
never changes what the caller gets.

Which calls try the candidates: none when ``enabled`` is false (a bool, or a callable asked
on each call), a ``sample`` share (0 to 1, drawn from a ``random.Random`` seeded with
``seed``) of the others. ``before_run`` (plain or async, no arguments) runs only then, for
set-up only the candidates need. ``clean`` maps values before they are recorded (in
:attr:`Observation.cleaned`): to drop what is secret or bulky, or make values comparable
by eye; comparisons always see the raw values. At most ``max_in_flight`` concurrent runs
are compared at once; past it the candidates are skipped (counted in :attr:`Experiment.dropped`).

Background comparisons are held by the experiment until they end: ``await
experiment.drain()`` waits for them (tests, a graceful stop), ``await experiment.close()``
stops trying candidates and cancels the comparisons under way; ``async with experiment``
closes it on the way out.
"""

from __future__ import annotations

import asyncio
import math
import operator
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Generic, Literal, ParamSpec, TypeVar

from hybridmesh.gateway.stats import LatencyHistogram
from hybridmesh.observability import get_logger

log = get_logger("hybridmesh.migration.experiment")

P = ParamSpec("P")
R = TypeVar("R")

#: The control's name in a :class:`Result` and in logs.
CONTROL = "control"
#: Seconds a candidate may take before it is cut off and recorded as an error.
DEFAULT_TIMEOUT = 30.0
#: Concurrent runs whose candidates may be under way at once.
MAX_IN_FLIGHT = 1000
#: Mismatches :class:`ExperimentStats` keeps (the newest).
KEEP_MISMATCHES = 20

Mode = Literal["concurrent", "after"]
#: A publisher: called with every result; may return an awaitable.
Publisher = Callable[["Result"], Awaitable[None] | None]


class Outcome(StrEnum):
    """How one candidate's observation compares with the control's."""

    MATCHED = "matched"
    MISMATCHED = "mismatched"
    IGNORED = "ignored"
    ERROR = "error"


@dataclass(frozen=True)
class Observation:
    """What one code path did: its value or exception, and the seconds it took."""

    name: str
    duration: float
    value: Any = None
    exception: Exception | None = None
    #: ``clean(value)`` (the value itself without ``clean``); None when it raised.
    cleaned: Any = None

    @property
    def raised(self) -> bool:
        return self.exception is not None


@dataclass(frozen=True)
class Result:
    """One run: the control's observation, each candidate's and its outcome."""

    experiment: str
    control: Observation
    candidates: Mapping[str, Observation]
    outcomes: Mapping[str, Outcome]

    def named(self, outcome: Outcome) -> tuple[str, ...]:
        """The candidates that had ``outcome``."""
        return tuple(name for name, seen in self.outcomes.items() if seen is outcome)

    @property
    def matched(self) -> bool:
        """Every candidate matched or was ignored."""
        return all(o in (Outcome.MATCHED, Outcome.IGNORED) for o in self.outcomes.values())


class Experiment(Generic[P, R]):
    """A control and candidates run on the same arguments; see the module's description."""

    def __init__(
        self,
        name: str,
        control: Callable[P, Awaitable[R]],
        candidates: Mapping[str, Callable[P, Awaitable[R]]] | None = None,
        *,
        mode: Mode = "concurrent",
        compare: Callable[[R, R], bool] = operator.eq,
        ignore: Iterable[Callable[[R, R], bool]] = (),
        sample: float = 1.0,
        seed: int | None = None,
        enabled: bool | Callable[[], bool] = True,
        clean: Callable[[R], Any] | None = None,
        before_run: Callable[[], Awaitable[None] | None] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        publishers: Iterable[Publisher] = (),
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        if mode not in ("concurrent", "after"):
            raise ValueError(f"mode is 'concurrent' or 'after', not {mode!r}")
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"sample is a share from 0 to 1, not {sample!r}")
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout is a number of seconds above 0, not {timeout!r}")
        self.name = name
        self.control = control
        self.candidates: dict[str, Callable[P, Awaitable[R]]] = {}
        for candidate, function in (candidates or {}).items():
            self.add_candidate(candidate, function)
        self.mode = mode
        self.compare = compare
        self.ignore = list(ignore)
        self.sample = sample
        self.random = random.Random(seed)
        self.enabled = enabled
        self.clean = clean
        self.before_run = before_run
        self.timeout = timeout
        self.publishers = list(publishers)
        self.max_in_flight = max_in_flight
        #: Runs sampled for the candidates but not tried: ``max_in_flight`` were under way.
        self.dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def add_candidate(self, name: str, function: Callable[P, Awaitable[R]]) -> None:
        if not name or name == CONTROL or name in self.candidates:
            raise ValueError(f"candidate name {name!r} is empty, reserved or taken")
        self.candidates[name] = function

    def add_publisher(self, publisher: Publisher) -> Publisher:
        """Send every result to ``publisher`` too (returns it: usable as a decorator)."""
        self.publishers.append(publisher)
        return publisher

    @property
    def in_flight(self) -> int:
        """Background comparisons not finished yet."""
        return sum(1 for task in self._tasks if not task.done())

    async def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """The control's value (or exception); the candidates tried as configured."""
        candidates = self._candidates_for_this_run()
        if not candidates or not await self._set_up():
            return await self.control(*args, **kwargs)
        loop = asyncio.get_running_loop()
        control_seen: asyncio.Future[Observation] = loop.create_future()
        task: asyncio.Task[None] | None = None
        if self.mode == "concurrent":
            task = asyncio.create_task(
                self._in_background(control_seen, candidates, *args, **kwargs),
                name=f"experiment:{self.name}",
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        started = loop.time()
        try:
            value = await self.control(*args, **kwargs)
        except Exception as error:
            control = Observation(CONTROL, loop.time() - started, exception=error)
            await self._control_done(control, control_seen, candidates, *args, **kwargs)
            raise
        except BaseException:  # the caller was cancelled: nothing to compare with
            if task is not None:
                task.cancel()
            raise
        cleaned = self._cleaned(value)
        control = Observation(CONTROL, loop.time() - started, value=value, cleaned=cleaned)
        await self._control_done(control, control_seen, candidates, *args, **kwargs)
        return value

    async def drain(self) -> None:
        """Wait until every background comparison has been published."""
        while pending := [task for task in self._tasks if not task.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        """Stop trying candidates; cancel the comparisons under way and wait for them."""
        self._closed = True
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def __aenter__(self) -> Experiment[P, R]:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- deciding --------------------------------------------------------------------------

    def _candidates_for_this_run(self) -> dict[str, Callable[P, Awaitable[R]]]:
        if self._closed or not self.candidates or not self._enabled():
            return {}
        if self.sample < 1.0 and not self.random.random() < self.sample:
            return {}
        if self.mode == "concurrent" and self.in_flight >= self.max_in_flight:
            self.dropped += 1
            return {}
        return dict(self.candidates)

    def _enabled(self) -> bool:
        if not callable(self.enabled):
            return self.enabled
        try:
            return bool(self.enabled())
        except Exception:
            log.exception("experiment %s: enabled() failed; candidates not tried", self.name)
            return False

    async def _set_up(self) -> bool:
        if self.before_run is None:
            return True
        try:
            pending = self.before_run()
            if pending is not None:
                await pending
        except Exception:
            log.exception("experiment %s: before_run failed; candidates not tried", self.name)
            return False
        return True

    # -- running ---------------------------------------------------------------------------

    async def _control_done(
        self,
        control: Observation,
        control_seen: asyncio.Future[Observation],
        candidates: Mapping[str, Callable[P, Awaitable[R]]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> None:
        if self.mode == "concurrent":
            if not control_seen.done():  # done: cancelled by close()
                control_seen.set_result(control)
            return
        observations = [
            await self._observe(name, function, *args, **kwargs)
            for name, function in candidates.items()
        ]
        await self._conclude(control, observations)

    async def _in_background(
        self,
        control_seen: asyncio.Future[Observation],
        candidates: Mapping[str, Callable[P, Awaitable[R]]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> None:
        observations = await asyncio.gather(
            *(
                self._observe(name, function, *args, **kwargs)
                for name, function in candidates.items()
            )
        )
        await self._conclude(await control_seen, observations)

    async def _observe(
        self, name: str, function: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs
    ) -> Observation:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self.timeout):
                value = await function(*args, **kwargs)
        except Exception as error:
            return Observation(name, loop.time() - started, exception=error)
        cleaned = self._cleaned(value)
        return Observation(name, loop.time() - started, value=value, cleaned=cleaned)

    def _cleaned(self, value: R) -> Any:
        if self.clean is None:
            return value
        try:
            return self.clean(value)
        except Exception:
            log.exception("experiment %s: clean failed; value not recorded", self.name)
            return None

    # -- comparing and publishing ----------------------------------------------------------

    async def _conclude(self, control: Observation, observations: Iterable[Observation]) -> None:
        candidates = {observation.name: observation for observation in observations}
        outcomes = {name: self._judge(control, seen) for name, seen in candidates.items()}
        result = Result(self.name, control, candidates, outcomes)
        for publisher in list(self.publishers):
            try:
                published = publisher(result)
                if published is not None:
                    await published
            except Exception:
                log.exception("experiment %s: publisher %r failed", self.name, publisher)

    def _judge(self, control: Observation, candidate: Observation) -> Outcome:
        if candidate.exception is not None:
            if control.exception is not None and _same_error(
                control.exception, candidate.exception
            ):
                return Outcome.MATCHED
            return Outcome.ERROR
        if control.exception is not None:
            return Outcome.MISMATCHED
        try:
            if self.compare(control.value, candidate.value):
                return Outcome.MATCHED
        except Exception:
            log.exception("experiment %s: compare failed; taken as a mismatch", self.name)
        for rule in self.ignore:
            try:
                if rule(control.value, candidate.value):
                    return Outcome.IGNORED
            except Exception:
                log.exception("experiment %s: ignore rule %r failed", self.name, rule)
        return Outcome.MISMATCHED


def _same_error(one: Exception, other: Exception) -> bool:
    return type(one) is type(other) and one.args == other.args


# -- a publisher that counts -------------------------------------------------------------


@dataclass
class PathStats:
    """One code path's counts and durations in :class:`ExperimentStats`."""

    runs: int = 0
    matched: int = 0
    mismatched: int = 0
    ignored: int = 0
    #: Runs that raised (for the control) or that ended as :attr:`Outcome.ERROR`.
    errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram, repr=False)

    @property
    def mismatch_rate(self) -> float:
        """``mismatched / runs``; 0.0 before any run."""
        return self.mismatched / self.runs if self.runs else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.runs if self.runs else 0.0

    def percentile_ms(self, percent: float) -> float | None:
        return self.latency.percentile_ms(percent)

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "runs": self.runs,
            "matched": self.matched,
            "mismatched": self.mismatched,
            "ignored": self.ignored,
            "errors": self.errors,
            "mismatch_rate": round(self.mismatch_rate, 6),
            "error_rate": round(self.error_rate, 6),
            "p50_ms": rounded(self.percentile_ms(50)),
            "p95_ms": rounded(self.percentile_ms(95)),
        }


@dataclass(frozen=True)
class Mismatch:
    """A kept mismatch: both cleaned values (the control's exception, when it raised)."""

    candidate: str
    control_value: Any
    candidate_value: Any
    control_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "control_value": self.control_value,
            "candidate_value": self.candidate_value,
            "control_error": self.control_error,
        }


class ExperimentStats:
    """A publisher counting one experiment's results in memory: the control's runs, errors
    and durations, per candidate the outcomes and durations, and the newest ``keep``
    mismatches (cleaned values)."""

    def __init__(self, keep: int = KEEP_MISMATCHES) -> None:
        self.control = PathStats()
        self.candidates: dict[str, PathStats] = {}
        self.mismatches: deque[Mismatch] = deque(maxlen=keep)

    def __call__(self, result: Result) -> None:
        self.control.runs += 1
        self.control.errors += result.control.raised
        self.control.latency.add(result.control.duration)
        for name, observation in result.candidates.items():
            stats = self.candidates.setdefault(name, PathStats())
            outcome = result.outcomes[name]
            stats.runs += 1
            stats.latency.add(observation.duration)
            if outcome is Outcome.MATCHED:
                stats.matched += 1
            elif outcome is Outcome.IGNORED:
                stats.ignored += 1
            elif outcome is Outcome.ERROR:
                stats.errors += 1
            else:
                stats.mismatched += 1
                error = result.control.exception
                self.mismatches.append(
                    Mismatch(
                        name,
                        result.control.cleaned,
                        observation.cleaned,
                        None if error is None else repr(error),
                    )
                )

    def snapshot(self) -> dict[str, Any]:
        return {
            "control": self.control.to_dict(),
            "candidates": {name: stats.to_dict() for name, stats in self.candidates.items()},
            "mismatches": [mismatch.to_dict() for mismatch in self.mismatches],
        }


__all__ = [
    "CONTROL",
    "Experiment",
    "ExperimentStats",
    "Mismatch",
    "Observation",
    "Outcome",
    "PathStats",
    "Publisher",
    "Result",
]
