"""Waiting in tests without hoping that things have settled.

:func:`eventually` polls a condition until it holds; its bound is far above any expected
time, so it only fires when something really hangs, however loaded the machine is.
:func:`on_virtual_time` runs a test on an event loop whose clock jumps ahead whenever the
loop would otherwise sleep, so timers (``asyncio.sleep``, ``loop.call_at``) fire in order
and at once, and the test can assert exactly when they fired.
"""

from __future__ import annotations

import asyncio
import inspect
import selectors
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

HANG = 30.0  # seconds: only a real hang takes this long


async def eventually(
    condition: Callable[[], Awaitable[bool] | bool], seconds: float = HANG, what: str = ""
) -> None:
    """Return as soon as ``condition()`` (plain or awaitable) is true; fail after
    ``seconds`` of real time."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + seconds
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > give_up:
            raise AssertionError(f"{what or 'condition'} not met within {seconds} s")
        await asyncio.sleep(0.01)


def eventually_sync(
    condition: Callable[[], bool], seconds: float = HANG, what: str = "", every: float = 0.05
) -> None:
    """:func:`eventually` for tests without an event loop (``condition`` may be slow, such
    as running a command): looks every ``every`` seconds."""
    give_up = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"{what or 'condition'} not met within {seconds} s")
        time.sleep(every)


class _JumpingSelector(selectors.DefaultSelector):
    """Polls instead of blocking, and moves its loop's clock by the time it would block."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only I/O or another thread can wake the loop
            return super().select(None)
        assert self.loop is not None
        self.loop.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: ``time()`` starts at 0 and only moves when every
    task is waiting on a timer, straight to the earliest one."""

    def __init__(self) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.loop = self
        self.now = 0.0

    def time(self) -> float:
        return self.now


def on_virtual_time(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Make an async test (without fixtures) a plain one that runs on a
    :class:`VirtualTimeLoop`. Only for tests whose waits are all timers: a wait for a thread
    or a socket would see the clock jump past it."""

    def run() -> None:
        with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
            runner.run(test())

    run.__doc__ = test.__doc__
    return run
