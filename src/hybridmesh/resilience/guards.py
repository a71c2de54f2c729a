"""Timeout, bulkhead and token-bucket rate limiter: the local guards around one call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import BulkheadFullError, CallTimeoutError, RateLimitedError

T = TypeVar("T")


async def with_timeout(awaitable: Awaitable[T], seconds: float | None, name: str) -> T:
    """Await ``awaitable`` for at most ``seconds``, else raise ``CallTimeoutError``.

    The timeout runs on the event loop's clock: it bounds real waiting on the network.
    """
    if seconds is None:
        return await awaitable
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError as error:
        raise CallTimeoutError(name, seconds) from error


@dataclass(frozen=True)
class BulkheadConfig:
    """At most ``max_concurrent`` calls in flight; a caller waits ``max_wait`` s for a slot."""

    max_concurrent: int = 64
    max_wait: float = 0.5


class Bulkhead:
    """Limits the calls in flight to one target, so one slow target cannot take every task.

    Use as ``async with bulkhead:``; raises ``BulkheadFullError`` when no slot frees up
    within ``max_wait``.
    """

    def __init__(self, name: str, config: BulkheadConfig | None = None) -> None:
        self.name = name
        self.config = config or BulkheadConfig()
        self._free = self.config.max_concurrent
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def in_flight(self) -> int:
        return self.config.max_concurrent - self._free

    async def __aenter__(self) -> Bulkhead:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return self
        if self.config.max_wait <= 0:
            raise BulkheadFullError(self.name, self.config.max_concurrent, self.config.max_wait)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.config.max_wait):
                await waiter
        except TimeoutError as error:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                self._release()  # the slot came as the wait ran out; pass it on
            raise BulkheadFullError(
                self.name, self.config.max_concurrent, self.config.max_wait
            ) from error
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed to us; pass it on
            raise
        return self  # the releasing task handed its slot to us

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def resize(self, config: BulkheadConfig) -> None:
        """Take a new limit; calls in flight keep their slots."""
        self._free += config.max_concurrent - self.config.max_concurrent
        self.config = config


@dataclass(frozen=True)
class RateLimitConfig:
    """``rate`` calls per second with bursts up to ``burst``; wait at most ``max_wait`` s."""

    rate: float
    burst: int = 1
    max_wait: float = 1.0


class TokenBucket:
    """A token-bucket rate limiter on the injected clock.

    :meth:`acquire` takes a token, waiting for one when the wait is within ``max_wait``;
    otherwise it raises ``RateLimitedError`` at once, telling when to try again.
    """

    def __init__(self, name: str, config: RateLimitConfig, clock: Clock = SYSTEM_CLOCK) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self._tokens = float(config.burst)
        self._stamp = clock.monotonic()

    def _refill(self) -> None:
        now = self.clock.monotonic()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(float(self.config.burst), self._tokens + elapsed * self.config.rate)
            self._stamp = now

    def reconfigure(self, config: RateLimitConfig) -> None:
        """Take a new rate and burst, keeping the tokens there are (up to the new burst)."""
        self._refill()
        self.config = config
        self._tokens = min(self._tokens, float(config.burst))

    def try_acquire(self) -> bool:
        """Take a token if one is there now."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a token, waiting up to ``max_wait`` for it."""
        self._refill()
        self._tokens -= 1  # reserve now, so concurrent callers queue fairly
        if self._tokens >= 0:
            return
        wait = -self._tokens / self.config.rate
        if wait > self.config.max_wait:
            self._tokens += 1
            raise RateLimitedError(self.name, self.config.rate, wait)
        await self.clock.sleep(wait)


__all__ = [
    "Bulkhead",
    "BulkheadConfig",
    "RateLimitConfig",
    "TokenBucket",
    "with_timeout",
]
