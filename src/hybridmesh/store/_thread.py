"""The thread a SQLite connection lives on, with a cheap hop to it and back.

``loop.run_in_executor`` on a one-thread pool costs two futures per call (the pool's and the
asyncio one chained to it) and a lock-protected work queue. A store's writer hops once per
batch, many times a second, so its thread takes plain work items from a simple queue and
hands each result back with one thread-safe callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

_Item = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class ConnectionThread:
    """Runs submitted work one item at a time, in order, on its own thread.

    The thread is a daemon: a store that is never closed does not keep the process alive
    (SQLite rolls back a transaction cut short). :meth:`shutdown` lets it end after the
    work already submitted.
    """

    def __init__(self, name: str) -> None:
        self._queue: SimpleQueue[_Item | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``work``; the future resolves (on the calling loop) to what it returned or
        raised. Cancelling the future does not stop work that has started."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((work, loop, future))
        return future

    def shutdown(self) -> None:
        """End the thread once the work queued so far is done. Idempotent."""
        self._queue.put(None)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            work, loop, future = item
            error: BaseException | None = None
            result: Any = None
            try:
                result = work()
            except BaseException as raised:  # handed to the awaiting task
                error = raised
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


__all__ = ["ConnectionThread"]
