"""Deadlines: asyncio.timeout's behaviour with one timer per loop.

The tests run on virtual time, so each can say exactly when a deadline fired.
"""

from __future__ import annotations

import asyncio

import pytest
from tests.waiting import on_virtual_time

from hybridmesh.core.deadlines import _BY_LOOP, Deadline


def now() -> float:
    return asyncio.get_running_loop().time()


async def _bounded(seconds: float, work: float) -> str:
    """Sleep ``work`` seconds under a deadline of ``seconds``; say how it ended."""
    limit = Deadline.start(seconds)
    try:
        await asyncio.sleep(work)
    except BaseException as error:
        if limit.end(error):
            return "timed out"
        raise
    limit.end()
    return "done"


@on_virtual_time
async def test_an_await_past_its_deadline_times_out_promptly() -> None:
    began = now()
    assert await _bounded(0.05, 5) == "timed out"
    assert now() - began == pytest.approx(0.05)


@on_virtual_time
async def test_an_await_that_ends_in_time_is_not_cancelled_later() -> None:
    assert await _bounded(0.05, 0) == "done"
    await asyncio.sleep(0.1)  # virtual time past the deadline: no cancel comes now
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    assert not _BY_LOOP[asyncio.get_running_loop()]._entries


@on_virtual_time
async def test_a_later_deadline_does_not_hold_back_an_earlier_one() -> None:
    slow = asyncio.create_task(_bounded(0.4, 5))
    await asyncio.sleep(0)  # the later deadline is set first
    began = now()
    assert await _bounded(0.05, 5) == "timed out"
    assert now() - began == pytest.approx(0.05)
    assert await slow == "timed out"  # and the later one still fires, when its time comes
    assert now() - began == pytest.approx(0.4)


@on_virtual_time
async def test_many_deadlines_each_fire_for_their_own_task() -> None:
    results = await asyncio.gather(
        *(_bounded(0.05, 5) for _ in range(20)), *(_bounded(5, 0.01) for _ in range(20))
    )
    assert results == ["timed out"] * 20 + ["done"] * 20


@on_virtual_time
async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    task = asyncio.create_task(_bounded(5, 5))
    await asyncio.sleep(0)  # the task starts and sets its deadline
    task.cancel()
    with pytest.raises(asyncio.CancelledError):  # not swallowed, not taken for a timeout
        await task
    assert task.cancelled()


@on_virtual_time
async def test_a_cancel_from_outside_as_the_deadline_passes_stays_a_cancel() -> None:
    task = asyncio.create_task(_bounded(5, 5))
    await asyncio.sleep(0)  # the task starts and sets its deadline
    deadlines = _BY_LOOP[asyncio.get_running_loop()]
    (entry,) = [e for e in deadlines._entries if e.task is task]
    # Both cancels land before the task runs again: the deadline's, then someone else's.
    entry.when = 0.0
    deadlines._armed_for = 0.0
    deadlines._fire(0.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
