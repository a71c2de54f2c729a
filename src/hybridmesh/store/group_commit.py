"""Group commit: writes that arrive while one is committing are committed together, next.

A store round trip costs far more than a row (on SQLite, a hop to its thread and a commit),
so busy writers (the SQL event log, the orchestration engine) never pay one per write when
several are in flight: the first write starts a commit, the writes that arrive meanwhile
wait and share the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Hands queued items to ``commit`` in arrival order, as many at a time as have queued.

    ``commit`` returns one result per item, in order (or None when there are none);
    :meth:`submit` returns its item's result once the item is committed, or raises what the
    commit raised (every item of a failed commit gets the error: none of them was written).
    A write that finds nothing committing commits at once in its own task (a lone writer
    pays no hand-off); the writes that queue behind it are committed together next.

    With ``gather``, a write that finds nothing committing waits for the writes the
    event loop's other ready tasks make in the same turn, and all of them commit together
    in the next. That is for a ``commit`` that finishes without giving the loop a turn
    (see ``SQLiteStore.batches_inline``): no write could ever queue behind it otherwise.
    """

    def __init__(
        self,
        commit: Callable[[list[T]], Awaitable[Sequence[R] | None]],
        name: str,
        *,
        gather: bool = False,
    ) -> None:
        self._commit = commit
        self._name = name
        self._gather = gather
        self._queue: list[tuple[T, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._busy = False  # a commit is running (inline or in the task)
        self._idle = asyncio.Event()  # nothing committing, nothing queued
        self._idle.set()

    async def submit(self, item: T) -> R:
        if not self._busy and not self._gather:
            self._busy = True
            self._idle.clear()
            try:
                results = await self._commit([item])
            finally:
                self._busy = False
                self._wake()
            return None if results is None else results[0]  # type: ignore[return-value]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._idle.clear()
        self._wake()
        result: R = await future
        return result

    def _wake(self) -> None:
        """Start committing the queued writes unless a commit is already running."""
        if self._busy:
            return
        if not self._queue:
            self._idle.set()
        elif self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def drain(self) -> None:
        """Wait until everything submitted so far is committed (or failed)."""
        await self._idle.wait()

    async def _run(self) -> None:
        while self._queue and not self._busy:
            batch, self._queue = self._queue, []
            self._busy = True
            try:
                results = await self._commit([item for item, _ in batch])
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            except BaseException:  # cancelled: nothing more gets committed
                for _, future in batch + self._queue:
                    future.cancel()
                self._queue = []
                self._idle.set()
                raise
            else:
                for index, (_, future) in enumerate(batch):
                    if not future.done():  # its submitter may have been cancelled
                        future.set_result(None if results is None else results[index])
            finally:
                self._busy = False
        self._wake()


__all__ = ["GroupCommit"]
