"""Experiment: the control always answers; candidates are tried, compared and published."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest
from tests.waiting import HANG, on_virtual_time

from hybridmesh.migration.experiment import (
    Experiment,
    ExperimentStats,
    Mismatch,
    Outcome,
    Result,
)


class Collected(list[Result]):
    """A publisher keeping every result."""

    def __call__(self, result: Result) -> None:
        self.append(result)


def returning(value: Any) -> Any:
    async def function(*args: Any, **kwargs: Any) -> Any:
        return value

    return function


def raising(error: Exception) -> Any:
    async def function(*args: Any, **kwargs: Any) -> Any:
        raise error

    return function


async def echo(x: int) -> int:
    return x


# -- the control's answer -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["concurrent", "after"])
async def test_the_control_answers_whatever_the_candidates_do(mode: Any) -> None:
    results = Collected()
    experiment = Experiment(
        "orders",
        returning(1),
        {"same": returning(1), "other": returning(2), "broken": raising(ValueError("boom"))},
        mode=mode,
        publishers=[results],
    )
    assert await experiment.run() == 1
    await experiment.drain()
    (result,) = results
    assert result.experiment == "orders"
    assert result.control.value == 1 and not result.control.raised
    assert dict(result.outcomes) == {
        "same": Outcome.MATCHED,
        "other": Outcome.MISMATCHED,
        "broken": Outcome.ERROR,
    }
    assert result.candidates["other"].value == 2
    broken = result.candidates["broken"].exception
    assert isinstance(broken, ValueError) and broken.args == ("boom",)
    assert not result.matched
    assert result.named(Outcome.ERROR) == ("broken",)


@pytest.mark.parametrize("mode", ["concurrent", "after"])
async def test_the_controls_exception_is_raised_unchanged(mode: Any) -> None:
    error = LookupError("no such order")
    results = Collected()
    experiment = Experiment(
        "orders",
        raising(error),
        {
            "answers": returning(1),
            "same_error": raising(LookupError("no such order")),
            "other_error": raising(LookupError("another message")),
        },
        mode=mode,
        publishers=[results],
    )
    with pytest.raises(LookupError) as caught:
        await experiment.run()
    assert caught.value is error
    await experiment.drain()
    (result,) = results
    assert result.control.exception is error
    assert dict(result.outcomes) == {
        "answers": Outcome.MISMATCHED,
        "same_error": Outcome.MATCHED,
        "other_error": Outcome.ERROR,
    }


async def test_candidates_get_the_callers_arguments() -> None:
    seen: list[tuple[Any, ...]] = []

    async def candidate(x: int, *, scale: int) -> int:
        seen.append((x, scale))
        return x * scale

    async def control(x: int, *, scale: int) -> int:
        return x * scale

    results = Collected()
    experiment = Experiment("scale", control, {"new": candidate}, publishers=[results])
    assert await experiment.run(3, scale=2) == 6
    await experiment.drain()
    assert seen == [(3, 2)]
    assert results[0].outcomes == {"new": Outcome.MATCHED}


# -- running beside or after the control ---------------------------------------------------


async def test_concurrent_candidates_run_beside_the_control() -> None:
    candidate_started = asyncio.Event()

    async def control() -> str:
        # Only a candidate running at the same time can let the control go on.
        await candidate_started.wait()
        return "old"

    async def candidate() -> str:
        candidate_started.set()
        return "new"

    results = Collected()
    experiment = Experiment("beside", control, {"new": candidate}, publishers=[results])
    async with asyncio.timeout(HANG):
        assert await experiment.run() == "old"
        await experiment.drain()
    assert results[0].outcomes == {"new": Outcome.MISMATCHED}


async def test_a_slow_candidate_does_not_hold_the_caller() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow() -> int:
        started.set()
        await release.wait()
        return 1

    results = Collected()
    experiment = Experiment("slow", returning(1), {"slow": slow}, publishers=[results])
    async with asyncio.timeout(HANG):  # a caller held by the candidate would wait forever
        assert await experiment.run() == 1
    # The caller has its answer while the candidate still waits.
    await started.wait()
    assert results == [] and experiment.in_flight == 1
    release.set()
    await experiment.drain()
    assert experiment.in_flight == 0
    assert results[0].outcomes == {"slow": Outcome.MATCHED}


async def test_after_mode_runs_the_candidates_one_by_one_once_the_control_is_done() -> None:
    order: list[str] = []

    def step(name: str) -> Any:
        async def function() -> str:
            order.append(f"{name} starts")
            await asyncio.sleep(0)
            order.append(f"{name} ends")
            return "x"

        return function

    results = Collected()
    experiment = Experiment(
        "after",
        step("control"),
        {"a": step("a"), "b": step("b")},
        mode="after",
        publishers=[results],
    )
    assert await experiment.run() == "x"
    # Everything happened before run returned, in this order, and was published.
    assert order == [
        "control starts",
        "control ends",
        "a starts",
        "a ends",
        "b starts",
        "b ends",
    ]
    assert experiment.in_flight == 0
    assert list(results[0].candidates) == ["a", "b"]


@on_virtual_time
async def test_a_candidate_past_the_timeout_is_an_error_and_durations_are_measured() -> None:
    async def control() -> int:
        await asyncio.sleep(0.2)
        return 1

    async def stuck() -> int:
        await asyncio.sleep(3600)
        return 1

    results = Collected()
    experiment = Experiment("timeout", control, {"stuck": stuck}, timeout=5, publishers=[results])
    assert await experiment.run() == 1
    await experiment.drain()
    (result,) = results
    assert result.outcomes == {"stuck": Outcome.ERROR}
    assert isinstance(result.candidates["stuck"].exception, TimeoutError)
    assert result.candidates["stuck"].duration == pytest.approx(5)
    assert result.control.duration == pytest.approx(0.2)


async def test_a_cancelled_caller_cancels_the_candidates_and_publishes_nothing() -> None:
    candidate_waiting = asyncio.Event()
    candidate_cancelled = asyncio.Event()

    async def forever() -> int:
        await asyncio.Event().wait()
        return 1

    async def candidate() -> int:
        candidate_waiting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            candidate_cancelled.set()
            raise
        return 1

    results = Collected()
    experiment = Experiment("cancel", forever, {"new": candidate}, publishers=[results])
    caller = asyncio.create_task(experiment.run())
    await candidate_waiting.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await experiment.drain()
    assert candidate_cancelled.is_set()
    assert results == []


async def test_close_cancels_comparisons_under_way_and_stops_trying_candidates() -> None:
    calls: list[str] = []
    started = asyncio.Event()

    async def blocked() -> int:
        calls.append("candidate")
        started.set()
        await asyncio.Event().wait()
        return 1

    results = Collected()
    experiment = Experiment("close", returning(1), {"new": blocked}, publishers=[results])
    async with experiment:
        assert await experiment.run() == 1
        await started.wait()
        assert experiment.in_flight == 1
    assert experiment.in_flight == 0 and results == []
    assert await experiment.run() == 1  # after close: the control only
    assert calls == ["candidate"]


async def test_past_max_in_flight_the_candidates_are_skipped_and_counted() -> None:
    release = asyncio.Event()
    calls: list[int] = []

    async def blocked(x: int) -> int:
        calls.append(x)
        await release.wait()
        return x

    results = Collected()
    experiment = Experiment("busy", echo, {"new": blocked}, max_in_flight=1, publishers=[results])
    assert await experiment.run(1) == 1
    assert await experiment.run(2) == 2
    assert experiment.dropped == 1
    release.set()
    await experiment.drain()
    assert calls == [1] and len(results) == 1


# -- comparing --------------------------------------------------------------------------------


async def test_compare_ignore_and_clean() -> None:
    results = Collected()
    experiment = Experiment(
        "names",
        returning({"name": "Ada", "token": "secret-1"}),
        {
            "case": returning({"name": "ADA", "token": "secret-1"}),
            "token": returning({"name": "Ada", "token": "secret-2"}),
            "other": returning({"name": "Bob", "token": "secret-1"}),
        },
        compare=lambda a, b: a["name"].lower() == b["name"].lower() and a["token"] == b["token"],
        ignore=[lambda a, b: a["name"] == b["name"]],  # token differences do not count
        clean=lambda value: value["name"],
        mode="after",
        publishers=[results],
    )
    assert await experiment.run() == {"name": "Ada", "token": "secret-1"}
    (result,) = results
    assert dict(result.outcomes) == {
        "case": Outcome.MATCHED,
        "token": Outcome.IGNORED,
        "other": Outcome.MISMATCHED,
    }
    # Recorded values are cleaned; the comparison saw the raw ones.
    assert result.control.cleaned == "Ada"
    assert result.candidates["other"].cleaned == "Bob"
    assert result.candidates["token"].value == {"name": "Ada", "token": "secret-2"}


async def test_failing_compare_ignore_and_clean_are_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad(*values: Any) -> bool:
        raise RuntimeError("bug in the experiment")

    results = Collected()
    experiment = Experiment(
        "bugs",
        returning(1),
        {"new": returning(1)},
        compare=bad,
        ignore=[bad],
        clean=bad,
        mode="after",
        publishers=[results],
    )
    with caplog.at_level(logging.ERROR, "hybridmesh.migration.experiment"):
        assert await experiment.run() == 1
    assert results[0].outcomes == {"new": Outcome.MISMATCHED}
    assert results[0].control.cleaned is None
    messages = caplog.text
    assert "compare failed" in messages and "ignore rule" in messages and "clean failed" in messages


async def test_sampling_is_seeded_and_bounded() -> None:
    def tried(sample: float, seed: int | None) -> Any:
        seen: list[int] = []

        async def candidate(x: int) -> int:
            seen.append(x)
            return x

        return Experiment("sampled", echo, {"new": candidate}, sample=sample, seed=seed), seen

    async def run_all(experiment: Experiment[Any, Any], runs: int) -> None:
        for x in range(runs):
            assert await experiment.run(x) == x
        await experiment.drain()

    first, first_seen = tried(0.3, 7)
    second, second_seen = tried(0.3, 7)
    await run_all(first, 200)
    await run_all(second, 200)
    draws = random.Random(7)
    expected = [x for x in range(200) if draws.random() < 0.3]
    assert sorted(first_seen) == sorted(second_seen) == expected
    assert 0 < len(expected) < 200

    never, never_seen = tried(0.0, None)
    always, always_seen = tried(1.0, None)
    await run_all(never, 50)
    await run_all(always, 50)
    assert never_seen == [] and sorted(always_seen) == list(range(50))

    with pytest.raises(ValueError):
        Experiment("bad", echo, sample=1.5)


async def test_enabled_and_before_run_only_when_candidates_run() -> None:
    switched_on = False
    set_ups: list[str] = []

    async def before_run() -> None:
        set_ups.append("set up")

    results = Collected()
    experiment = Experiment(
        "switch",
        returning(1),
        {"new": returning(1)},
        enabled=lambda: switched_on,
        before_run=before_run,
        mode="after",
        publishers=[results],
    )
    assert await experiment.run() == 1
    assert set_ups == [] and results == []
    switched_on = True
    assert await experiment.run() == 1
    assert set_ups == ["set up"] and len(results) == 1
    experiment.enabled = False
    assert await experiment.run() == 1
    assert set_ups == ["set up"] and len(results) == 1

    def broken_set_up() -> None:
        raise RuntimeError("no fixtures")

    experiment.enabled = True
    experiment.before_run = broken_set_up
    assert await experiment.run() == 1  # the control alone
    assert len(results) == 1


# -- publishing ------------------------------------------------------------------------------


async def test_a_failing_publisher_is_logged_and_harmless(caplog: pytest.LogCaptureFixture) -> None:
    def sync_failure(result: Result) -> None:
        raise RuntimeError("sync publisher down")

    async def async_failure(result: Result) -> None:
        raise RuntimeError("async publisher down")

    received = Collected()

    async def async_good(result: Result) -> None:
        received.append(result)

    experiment = Experiment("publish", returning(1), {"new": returning(2)})
    experiment.add_publisher(sync_failure)
    experiment.add_publisher(async_failure)
    experiment.add_publisher(async_good)
    with caplog.at_level(logging.ERROR, "hybridmesh.migration.experiment"):
        assert await experiment.run() == 1
        await experiment.drain()
        experiment.mode = "after"
        assert await experiment.run() == 1
    assert len(received) == 2
    logged = [str(record.exc_info[1]) for record in caplog.records if record.exc_info]
    assert sorted(logged) == ["async publisher down"] * 2 + ["sync publisher down"] * 2


@on_virtual_time
async def test_stats_count_outcomes_durations_and_keep_the_newest_mismatches() -> None:
    async def control(x: int) -> dict[str, int]:
        await asyncio.sleep(0.010)
        return {"x": x}

    async def slower(x: int) -> dict[str, int]:
        await asyncio.sleep(0.100)
        return {"x": x}

    async def odd_off(x: int) -> dict[str, int]:
        if x == 5:
            raise ValueError("five")
        return {"x": x + 1 if x % 2 else x}

    stats = ExperimentStats(keep=2)
    experiment = Experiment(
        "stats",
        control,
        {"slower": slower, "odd_off": odd_off},
        ignore=[lambda a, b: a["x"] == 9],
        clean=lambda value: value["x"],
        publishers=[stats],
    )
    for x in range(10):
        assert await experiment.run(x) == {"x": x}
    await experiment.drain()
    control_x_raises = Experiment("raises", raising(KeyError("k")), {"odd_off": odd_off})
    control_x_raises.add_publisher(stats)
    with pytest.raises(KeyError):
        await control_x_raises.run(2)
    await control_x_raises.drain()

    assert stats.control.runs == 11 and stats.control.errors == 1
    slower_stats = stats.candidates["slower"]
    assert (slower_stats.runs, slower_stats.matched, slower_stats.mismatched) == (10, 10, 0)
    odd = stats.candidates["odd_off"]
    # Odd x mismatch except 5 (raised) and 9 (ignored); the run where the control raised
    # and the candidate answered is a mismatch too.
    assert (odd.runs, odd.matched, odd.mismatched, odd.ignored, odd.errors) == (11, 5, 4, 1, 1)
    assert odd.mismatch_rate == pytest.approx(4 / 11)
    assert odd.error_rate == pytest.approx(1 / 11)
    assert list(stats.mismatches) == [
        Mismatch("odd_off", 7, 8),
        Mismatch("odd_off", None, {"x": 2}, "KeyError('k')"),
    ]
    # Durations are exact on virtual time; the histogram estimates within one bucket.
    assert slower_stats.percentile_ms(50) == pytest.approx(100, rel=0.13)
    assert slower_stats.percentile_ms(95) == pytest.approx(100, rel=0.13)
    assert stats.control.percentile_ms(50) == pytest.approx(10, rel=0.13)
    shown = stats.snapshot()
    assert shown["candidates"]["odd_off"]["mismatched"] == 4
    assert shown["candidates"]["slower"]["mismatch_rate"] == 0.0
    assert shown["mismatches"][0] == {
        "candidate": "odd_off",
        "control_value": 7,
        "candidate_value": 8,
        "control_error": None,
    }


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Experiment("x", echo, mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Experiment("x", echo, timeout=0)
    with pytest.raises(ValueError):
        Experiment("x", echo, {"control": echo})
