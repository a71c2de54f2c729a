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
    """

    def __init__(
        self, commit: Callable[[list[T]], Awaitable[Sequence[R] | None]], name: str
    ) -> None:
        self._commit = commit
        self._name = name
        self._queue: list[tuple[T, asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self._name)
        result: R = await future
        return result

    async def drain(self) -> None:
        """Wait until everything submitted so far is committed (or failed)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
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
                raise
            else:
                for index, (_, future) in enumerate(batch):
                    if not future.done():  # its submitter may have been cancelled
                        future.set_result(None if results is None else results[index])


__all__ = ["GroupCommit"]
