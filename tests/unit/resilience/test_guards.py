"""Timeout, bulkhead and token bucket."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack

import pytest
from tests.waiting import on_virtual_time

from hybridmesh.core.clock import FakeClock
from hybridmesh.core.errors import BulkheadFullError, CallTimeoutError, RateLimitedError
from hybridmesh.resilience import (
    Bulkhead,
    BulkheadConfig,
    RateLimitConfig,
    TokenBucket,
    with_timeout,
)

# -- with_timeout -------------------------------------------------------------------------


@on_virtual_time
async def test_with_timeout_raises_call_timeout_error() -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(CallTimeoutError) as caught:
        await with_timeout(asyncio.sleep(5), 0.05, "orders")
    assert loop.time() - began == pytest.approx(0.05)
    assert caught.value.name == "orders"
    assert caught.value.timeout == 0.05
    assert isinstance(caught.value.__cause__, TimeoutError)


async def test_with_timeout_returns_the_value_when_fast() -> None:
    async def fast() -> str:
        await asyncio.sleep(0)
        return "done"

    assert await with_timeout(fast(), 1.0, "orders") == "done"


async def test_with_timeout_none_waits_without_bound() -> None:
    async def value() -> int:
        await asyncio.sleep(0.01)
        return 7

    assert await with_timeout(value(), None, "orders") == 7


# -- Bulkhead -----------------------------------------------------------------------------


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_bulkhead_admits_max_concurrent_and_rejects_at_once_with_no_wait() -> None:
    bulkhead = Bulkhead("orders", BulkheadConfig(max_concurrent=2, max_wait=0))
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(bulkhead)
        await stack.enter_async_context(bulkhead)
        assert bulkhead.in_flight == 2
        with pytest.raises(BulkheadFullError) as caught:
            await bulkhead.__aenter__()
        assert caught.value.max_concurrent == 2
        assert bulkhead.in_flight == 2
    assert bulkhead.in_flight == 0
    async with bulkhead:
        assert bulkhead.in_flight == 1


async def test_bulkhead_releases_the_slot_when_the_call_raises() -> None:
    bulkhead = Bulkhead("orders", BulkheadConfig(max_concurrent=1, max_wait=0))
    with pytest.raises(ValueError):
        async with bulkhead:
            raise ValueError("call failed")
    assert bulkhead.in_flight == 0


@on_virtual_time
async def test_bulkhead_waiter_gets_a_slot_released_within_max_wait() -> None:
    bulkhead = Bulkhead("orders", BulkheadConfig(max_concurrent=1, max_wait=5.0))
    entered = asyncio.Event()

    async def waiter() -> str:
        async with bulkhead:
            entered.set()
            return "ran"

    async with bulkhead:
        task = asyncio.create_task(waiter())
        await settle()
        assert not task.done()
        assert bulkhead.in_flight == 1
    assert await asyncio.wait_for(task, 1.0) == "ran"  # on virtual time: in no time
    assert entered.is_set()
    assert bulkhead.in_flight == 0


@on_virtual_time
async def test_bulkhead_waiter_times_out_with_bulkhead_full_error() -> None:
    bulkhead = Bulkhead("orders", BulkheadConfig(max_concurrent=1, max_wait=0.05))
    loop = asyncio.get_running_loop()
    async with bulkhead:
        began = loop.time()
        with pytest.raises(BulkheadFullError) as caught:
            async with bulkhead:
                pytest.fail("the waiter must not get a slot")
        assert loop.time() - began == pytest.approx(0.05)
        assert caught.value.max_wait == 0.05
        assert bulkhead.in_flight == 1
    assert bulkhead.in_flight == 0
    async with bulkhead:  # no stale waiter left to swallow the slot
        assert bulkhead.in_flight == 1


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    bulkhead = Bulkhead("orders", BulkheadConfig(max_concurrent=1, max_wait=5.0))

    async def waiter() -> None:
        async with bulkhead:
            pytest.fail("the cancelled waiter must not run")

    async with bulkhead:
        task = asyncio.create_task(waiter())
        await settle()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert bulkhead.in_flight == 0
    async with bulkhead:
        assert bulkhead.in_flight == 1


@on_virtual_time
async def test_waiter_cancelled_after_being_handed_the_slot_passes_it_on() -> None:
    bulkhead = Bulkhead("orders", BulkheadConfig(max_concurrent=1, max_wait=5.0))
    ran: list[str] = []

    async def waiter(name: str) -> None:
        async with bulkhead:
            ran.append(name)

    holder = AsyncExitStack()
    await holder.enter_async_context(bulkhead)
    first = asyncio.create_task(waiter("first"))
    second = asyncio.create_task(waiter("second"))
    await settle()
    await holder.aclose()  # hands the slot to the first waiter ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1.0)
    assert ran == ["second"]
    assert bulkhead.in_flight == 0


def _block(seconds: float) -> None:
    time.sleep(seconds)  # holds up the event loop on purpose


async def test_slot_handed_over_as_the_wait_expires_is_not_leaked() -> None:
    # The holder releases in the same loop iteration in which the waiter's max_wait runs
    # out: the waiter is handed the slot and then cancelled by its timeout.
    bulkhead = Bulkhead("orders", BulkheadConfig(max_concurrent=1, max_wait=0.02))

    async def holder() -> None:
        async with bulkhead:
            await settle()  # the waiter queues up
            _block(0.06)  # past the waiter's deadline
            await asyncio.sleep(0)  # release in the same iteration as the expired timer

    async def waiter() -> str:
        async with bulkhead:
            return "ran"

    results = await asyncio.gather(holder(), waiter(), return_exceptions=True)
    assert results[1] == "ran" or isinstance(results[1], BulkheadFullError)
    assert bulkhead.in_flight == 0


# -- TokenBucket --------------------------------------------------------------------------


async def test_token_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket("orders", RateLimitConfig(rate=10.0, burst=3, max_wait=1.0), clock)
    for _ in range(3):
        await bucket.acquire()
    assert clock.sleeps == []
    await bucket.acquire()
    await bucket.acquire()
    assert clock.sleeps == [pytest.approx(0.1), pytest.approx(0.1)]


async def test_token_bucket_raises_when_the_wait_exceeds_max_wait() -> None:
    clock = FakeClock()
    bucket = TokenBucket("orders", RateLimitConfig(rate=1.0, burst=1, max_wait=0.5), clock)
    await bucket.acquire()
    with pytest.raises(RateLimitedError) as caught:
        await bucket.acquire()
    assert caught.value.retry_after == pytest.approx(1.0)
    assert caught.value.rate == 1.0
    assert clock.sleeps == []
    # The refused call did not keep its reservation: one second later a token is there.
    clock.advance(1.0)
    assert bucket.try_acquire()


async def test_token_bucket_waits_when_the_wait_is_within_max_wait() -> None:
    clock = FakeClock()
    bucket = TokenBucket("orders", RateLimitConfig(rate=2.0, burst=1, max_wait=0.5), clock)
    await bucket.acquire()
    await bucket.acquire()
    assert clock.sleeps == [pytest.approx(0.5)]


def test_token_bucket_refills_over_time_up_to_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket("orders", RateLimitConfig(rate=2.0, burst=3), clock)
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.25)
    assert not bucket.try_acquire()  # half a token
    clock.advance(0.25)
    assert [bucket.try_acquire() for _ in range(2)] == [True, False]
    clock.advance(100)
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]


async def test_try_acquire_never_waits() -> None:
    clock = FakeClock()
    bucket = TokenBucket("orders", RateLimitConfig(rate=1.0, burst=1, max_wait=10.0), clock)
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    assert clock.sleeps == []
    assert clock.monotonic() == 1_000.0
