"""Deadlines for awaits: what ``asyncio.timeout`` does, with one timer for all of them.

Each ``asyncio.timeout`` block schedules a timer of its own: a handle pushed onto the event
loop's heap on entry and cancelled on exit, where it stays until its time comes or the loop
sweeps its cancelled handles. The hybrid client bounds every attempt that way, and almost
every attempt ends long before its timeout, so a busy client paid for a heap of dead timers.
Here a deadline is an entry in a set, and one timer per loop stands for the earliest: when
it fires, the expired entries' tasks are cancelled and the timer is set again for the
earliest left. Entries usually leave long before then, so it rarely fires.

As with ``asyncio.timeout``, the task is cancelled when its time comes, and :meth:`Deadline.end`
takes that cancellation back and tells the caller it timed out; a cancellation from
outside stays a cancellation.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref

_RESOLUTION = time.get_clock_info("monotonic").resolution


class Deadline:
    """A deadline on the current task's await: :meth:`start` it before, :meth:`end` it
    after (also when the await raised)."""

    __slots__ = ("_deadlines", "cancelling", "expired", "task", "when")

    def __init__(self, deadlines: Deadlines, task: asyncio.Task[object], when: float) -> None:
        self._deadlines = deadlines
        self.task = task
        self.when = when
        self.cancelling = task.cancelling()
        self.expired = False

    @classmethod
    def start(cls, seconds: float) -> Deadline:
        """Cancel the current task ``seconds`` (real time) from now, unless :meth:`end`
        comes first."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline needs a task to cancel")
        deadlines = _BY_LOOP.get(loop)
        if deadlines is None:
            deadlines = _BY_LOOP[loop] = Deadlines()
        return deadlines.add(cls(deadlines, task, loop.time() + seconds))

    def end(self, error: BaseException | None = None) -> bool:
        """Take the deadline away. Returns whether it expired and ``error`` (what the
        await raised, if anything) is the cancellation it made: then the await timed out.
        Idempotent."""
        if not self.expired:
            self._deadlines.discard(self)
            return False
        self.expired = False
        # Its time came and the cancel was ours: take it back. If none other is left, the
        # cancellation the await raised was this one.
        return self.task.uncancel() <= self.cancelling and isinstance(error, asyncio.CancelledError)


class Deadlines:
    """The deadlines of one event loop, found by the loop in a weak mapping; it keeps no
    reference to the loop itself, so a closed loop can be collected."""

    def __init__(self) -> None:
        self._entries: set[Deadline] = set()
        self._armed_for = math.inf  # when the timer that counts fires

    def add(self, entry: Deadline) -> Deadline:
        self._entries.add(entry)
        if entry.when < self._armed_for:
            self._arm(entry.when)
        return entry

    def discard(self, entry: Deadline) -> None:
        self._entries.discard(entry)

    def _arm(self, when: float) -> None:
        # A timer set for a later time stays set; it does nothing when it fires (it is not
        # the one armed then). Cancelling it instead would keep its handle here, and the
        # handle refers to the loop, which would never be collected.
        self._armed_for = when
        asyncio.get_running_loop().call_at(when, self._fire, when)

    def _fire(self, armed_for: float) -> None:
        if armed_for != self._armed_for:
            return
        self._armed_for = math.inf
        now = asyncio.get_running_loop().time() + _RESOLUTION  # a timer runs that early
        earliest = math.inf
        for entry in list(self._entries):
            if entry.when <= now:
                self._entries.discard(entry)
                entry.expired = True
                entry.task.cancel()
            elif entry.when < earliest:
                earliest = entry.when
        if earliest < math.inf:
            self._arm(earliest)


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = (
    weakref.WeakKeyDictionary()
)


__all__ = ["Deadline", "Deadlines"]
