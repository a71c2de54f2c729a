"""GroupCommit: how writes that arrive together are committed together."""

from __future__ import annotations

import asyncio

from hybridmesh.store.group_commit import GroupCommit


class Recorder:
    """A commit that finishes without giving the loop a turn, as SQLite's inline
    batches do, and records the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def commit(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        return [item * 10 for item in items]


async def test_writes_made_in_one_turn_are_gathered_into_one_commit() -> None:
    recorder = Recorder()
    writes = GroupCommit(recorder.commit, "test", gather=True)
    results = await asyncio.gather(*(writes.submit(n) for n in range(8)))
    assert results == [n * 10 for n in range(8)]
    assert recorder.batches == [list(range(8))]
    await writes.drain()


async def test_without_gathering_a_lone_write_commits_at_once() -> None:
    recorder = Recorder()
    writes = GroupCommit(recorder.commit, "test")
    results = await asyncio.gather(*(writes.submit(n) for n in range(8)))
    assert results == [n * 10 for n in range(8)]
    # Each finds nothing committing (the commit never yields), so each commits alone.
    assert recorder.batches == [[n] for n in range(8)]


async def test_a_gathered_commit_that_fails_fails_each_of_its_writes() -> None:
    async def refuse(items: list[int]) -> list[int]:
        raise RuntimeError("disk full")

    writes = GroupCommit(refuse, "test", gather=True)
    outcomes = await asyncio.gather(*(writes.submit(n) for n in range(3)), return_exceptions=True)
    assert [str(o) for o in outcomes] == ["disk full"] * 3
    await writes.drain()
