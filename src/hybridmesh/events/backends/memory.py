"""An in-process event backend, for tests only: nothing survives the process.

It follows the :mod:`~hybridmesh.events.backend` contract exactly (partitions, leases,
attempts, dead letters, replay), so the conformance suite runs against it as against the
real backends. It is never the default: the embedded default is the SQL log on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import NotFoundError
from hybridmesh.core.ids import new_id
from hybridmesh.events.backend import (
    DeadLetter,
    Delivery,
    GroupSpec,
    LogSpan,
    PartitionBatch,
    Settlement,
)
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.events.subjects import matches, validate_pattern


def partition_of(event: CloudEvent, partitions: int) -> int:
    """The partition of ``event``: by its partition key, else by its id."""
    key = event.partition_key or event.id
    return zlib.crc32(key.encode()) % partitions


@dataclass
class _Entry:
    seq: int
    event: CloudEvent
    partition: int
    only_group: str | None


@dataclass
class _Position:
    position: int = 0
    head_attempts: int = 0
    not_before: float = 0.0
    lease_owner: str | None = None
    lease_until: float = 0.0
    lease_token: str | None = None


@dataclass
class _Group:
    spec: GroupSpec
    positions: dict[int, _Position] = field(default_factory=dict)


class MemoryEventBackend:
    """Keeps everything in dicts; several bus instances may share one (as several
    processes share a database)."""

    name = "memory"

    def __init__(self, *, partitions: int = 8, clock: Clock = SYSTEM_CLOCK) -> None:
        self.partitions = partitions
        self.clock = clock
        self._log: list[_Entry] = []
        self._seq = itertools.count(1)
        self._seen: set[tuple[str, str]] = set()
        self._groups: dict[str, _Group] = {}
        self._dead: dict[str, DeadLetter] = {}
        self._published = asyncio.Event()

    async def start(self) -> None:
        return None

    async def check(self) -> None:
        """Always ready: the events live in this process."""

    async def close(self) -> None:
        return None

    async def publish(self, events: Sequence[CloudEvent], *, group: str | None = None) -> None:
        for event in events:
            event.validate()
        for event in events:
            key = (event.source, event.id)
            if group is None:
                if key in self._seen:
                    continue
                self._seen.add(key)
            self._log.append(
                _Entry(next(self._seq), event, partition_of(event, self.partitions), group)
            )
        self._published.set()
        self._published = asyncio.Event()

    async def ensure_group(self, spec: GroupSpec) -> None:
        validate_pattern(spec.pattern)
        group = self._groups.get(spec.name)
        if group is None:
            start = self._log[-1].seq if (spec.start == "latest" and self._log) else 0
            group = _Group(spec, {p: _Position(position=start) for p in range(self.partitions)})
            self._groups[spec.name] = group
        group.spec = spec

    async def delete_group(self, name: str) -> None:
        self._groups.pop(name, None)

    def _now(self) -> float:
        return self.clock.now().timestamp()

    async def open_reader(
        self, pattern: str, *, start: Literal["earliest", "latest"] = "latest"
    ) -> MemoryReader:
        validate_pattern(pattern)
        position = self._log[-1].seq if (start == "latest" and self._log) else 0
        return MemoryReader(self, pattern, position)

    async def log_span(self) -> LogSpan:
        if not self._log:
            return LogSpan(None, None)
        return LogSpan(self._log[0].seq, self._log[-1].seq)

    async def fetch(
        self, spec: GroupSpec, consumer: str, *, max_events: int, wait: float
    ) -> list[PartitionBatch]:
        batches = self._lease(spec, consumer, max_events)
        if batches or wait <= 0:
            return batches
        waiter = self._published
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), wait)
        return self._lease(spec, consumer, max_events)

    def _lease(self, spec: GroupSpec, consumer: str, max_events: int) -> list[PartitionBatch]:
        group = self._groups.get(spec.name)
        if group is None:
            raise NotFoundError(f"consumer group {spec.name!r} does not exist")
        now = self._now()
        batches: list[PartitionBatch] = []
        budget = max_events
        for partition, pos in group.positions.items():
            if budget <= 0:
                break
            if pos.lease_owner is not None and pos.lease_until > now:
                continue
            if pos.not_before > now:
                continue
            taken_over = pos.lease_owner is not None
            deliveries: list[Delivery] = []
            highest = pos.position
            for entry in self._log:
                if entry.seq <= pos.position or entry.partition != partition:
                    continue
                if len(deliveries) >= budget:
                    break
                highest = entry.seq
                if entry.only_group not in (None, spec.name):
                    continue
                if not matches(spec.pattern, entry.event.type):
                    continue
                deliveries.append(Delivery(entry.event, 1, position=entry.seq))
            if not deliveries:
                pos.position = highest  # skip what this group does not want
                pos.lease_owner = None
                continue
            if taken_over:
                pos.head_attempts += 1  # its previous consumer died holding it
            deliveries[0].attempt = pos.head_attempts + 1
            token = new_id()
            pos.lease_owner, pos.lease_until, pos.lease_token = consumer, now + spec.ack_wait, token
            batches.append(
                PartitionBatch(spec.name, str(partition), deliveries, (partition, token, highest))
            )
            budget -= len(deliveries)
        return batches

    async def settle(self, batch: PartitionBatch, settlement: Settlement) -> None:
        partition, token, highest = batch.token
        pos = self._groups[batch.group].positions[partition]
        if pos.lease_token != token:
            return  # the lease expired and someone else has the partition now
        done = settlement.handled
        deliveries = batch.deliveries
        if done:
            pos.head_attempts = 0
        if done >= len(deliveries):
            pos.position = highest
        else:
            head = deliveries[done]
            pos.position = int(head.position) - 1
            if settlement.retry_after is not None:
                pos.head_attempts = head.attempt
                pos.not_before = self._now() + settlement.retry_after
            elif settlement.dead_letter is not None:
                self._bury(batch.group, head, settlement.dead_letter)
                pos.position = int(head.position)
                pos.head_attempts = 0
        pos.lease_owner, pos.lease_token = None, None

    def _bury(self, group: str, delivery: Delivery, reason: str) -> None:
        letter = DeadLetter(
            id=new_id(),
            group=group,
            reason=reason,
            attempts=delivery.attempt,
            failed_at=self.clock.now(),
            body=delivery.event.to_json() if delivery.event else delivery.raw,
            event=delivery.event,
        )
        self._dead[letter.id] = letter

    async def dead_letters(self, *, group: str | None = None, limit: int = 100) -> list[DeadLetter]:
        found = [d for d in self._dead.values() if group is None or d.group == group]
        return sorted(found, key=lambda d: d.failed_at, reverse=True)[:limit]

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter:
        try:
            return self._dead[dead_letter_id]
        except KeyError:
            raise NotFoundError(f"no dead letter {dead_letter_id!r}") from None

    async def replay(self, dead_letter_id: str) -> DeadLetter:
        letter = await self.get_dead_letter(dead_letter_id)
        event = letter.event or CloudEvent.from_json(letter.body)
        await self.publish([event], group=letter.group)
        replayed = replace(letter, replayed_at=self.clock.now())
        self._dead[letter.id] = replayed
        return replayed

    async def purge(self, *, group: str | None = None) -> int:
        doomed = [k for k, d in self._dead.items() if group is None or d.group == group]
        for key in doomed:
            del self._dead[key]
        return len(doomed)


class MemoryReader:
    """An :class:`~hybridmesh.events.backend.EventReader` of a :class:`MemoryEventBackend`."""

    def __init__(self, backend: MemoryEventBackend, pattern: str, position: int) -> None:
        self._backend = backend
        self._pattern = pattern
        self._position = position

    async def read(self, max_events: int, wait: float) -> list[Delivery]:
        found = self._take(max_events)
        if found or wait <= 0:
            return found
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._backend._published.wait(), wait)
        return self._take(max_events)

    def _take(self, max_events: int) -> list[Delivery]:
        found: list[Delivery] = []
        for entry in self._backend._log:
            if entry.seq <= self._position or len(found) >= max_events:
                continue
            self._position = entry.seq
            if entry.only_group is None and matches(self._pattern, entry.event.type):
                found.append(Delivery(entry.event, 1, position=entry.seq))
        return found

    async def close(self) -> None:
        return None


__all__ = ["MemoryEventBackend", "MemoryReader", "partition_of"]
