"""One bus consumer group on Kafka: a member of the Kafka consumer group, with leases.

Kafka hands each member whole partitions and keeps one committed offset per partition. The
bus needs a little more, kept here per assigned partition (:class:`_Partition`):

- **a lease**: a fetched batch holds its partition until it is settled or ``ack_wait``
  passes; then the partition is read again from the batch's first offset, so a stuck
  handler's events are delivered again, with their attempt raised;
- **a hold**: a retried event holds its partition (it and everything after it) until its
  ``retry_after`` has passed, which keeps events with one ``partitionkey`` in order;
- **the head's attempts**: how many times the event at the head of the partition has been
  delivered. Kafka keeps no delivery count, so this lives in the member: after a rebalance
  or a restart the count starts again at 1 (see docs/events.md);
- **recent ids**: a copy of an event (same source and id) published again lands in the same
  partition; the member drops copies within ``dedupe_window`` seconds of the first.

Offsets are committed only after handling: ``settle`` commits the offset of the first event
not yet done. Settles that arrive together share one commit request. When a rebalance takes
partitions away, the member waits (up to ``ack_wait``) for their batches to settle and
commits before letting go, so the next owner starts where this one stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from hybridmesh.core.clock import Clock
from hybridmesh.events.backend import (
    BackendUnavailableError,
    Delivery,
    GroupSpec,
    PartitionBatch,
    Settlement,
)
from hybridmesh.events.backends._kafka_layout import KafkaLayout, position
from hybridmesh.events.envelope import EventFormatError
from hybridmesh.events.kafka_binding import from_kafka
from hybridmesh.events.subjects import matches
from hybridmesh.observability import get_logger

log = get_logger("hybridmesh.events.kafka")

#: The header that sends a replayed event to one group only.
REPLAY_HEADER = "hybridmesh_replay_group"
#: How many recent ids a partition remembers for deduplication, at most.
_DEDUPE_MEMORY = 50_000
#: How long a fetch that must not wait still waits for events the brokers already have.
_CATCH_UP = 2.0


@dataclass
class _Lease:
    token: int
    expires: float


@dataclass
class _Partition:
    tp: TopicPartition
    topic_index: int
    lease: _Lease | None = None
    not_before: float = 0.0
    head_offset: int = -1
    head_attempts: int = 0
    checked_start: bool = False
    recent: OrderedDict[tuple[str, str], tuple[int, float]] = field(default_factory=OrderedDict)


@dataclass(frozen=True)
class BatchToken:
    """What ``settle`` needs to know of a fetched batch."""

    tp: TopicPartition
    lease: int
    offsets: tuple[int, ...]  # of the deliveries, in order
    end: int  # the offset after the last record the batch covered


#: Stores a dead letter for (group, delivery, reason, topic, partition, offset).
BuryLetter = Callable[[str, Delivery, str, str, int, int], Awaitable[None]]


class GroupMember:
    """This process's member of one consumer group."""

    def __init__(
        self,
        spec: GroupSpec,
        *,
        layout: KafkaLayout,
        consumer_config: dict[str, Any],
        clock: Clock,
        dedupe_window: float,
        bury: BuryLetter,
        report_lag: Callable[[str, TopicPartition, int], None],
        start_offsets: dict[TopicPartition, int] | None = None,
    ) -> None:
        self.spec = spec
        self._start_offsets = start_offsets or {}
        self._layout = layout
        self._clock = clock
        self._dedupe_window = dedupe_window
        self._bury = bury
        self._report_lag = report_lag
        self._consumer_config = consumer_config
        self._consumer = self._new_consumer()
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._tokens = itertools.count(1)
        self._settled = asyncio.Condition()
        self._pending: dict[TopicPartition, int] = {}
        self._round: asyncio.Future[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._topics: list[str] = []
        self._joining: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            group_id=self._layout.group_id(self.spec.name),
            enable_auto_commit=False,
            auto_offset_reset=self.spec.start,
            **self._consumer_config,
        )

    def start(self) -> None:
        """Begin joining the group; the first fetch waits until it has joined. Members that
        start together (the processes of a deployment) join as one generation, rather than
        the first taking every partition and handing them over a rebalance later."""
        self._topics = self._layout.topics_for(self.spec.pattern)
        self._consumer.subscribe(self._topics, listener=_Listener(self))
        self._joining = asyncio.create_task(self._consumer.start(), name="kafka:join")

    async def joined(self) -> None:
        """Wait until this member has joined (raises what joining raised)."""
        assert self._joining is not None, "start() first"
        try:
            await asyncio.shield(self._joining)
        except (KafkaError, OSError) as error:
            # The brokers were away: the next fetch joins again, on a new consumer.
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._partitions.clear()
            self._consumer = self._new_consumer()
            self.start()
            raise BackendUnavailableError(
                f"Kafka: joining group {self.spec.name!r} failed: {error}"
            ) from error

    async def update(self, spec: GroupSpec) -> None:
        """Take new settings; a new pattern that needs other topics subscribes again."""
        self.spec = spec
        topics = self._layout.topics_for(spec.pattern)
        if topics != self._topics:
            self._topics = topics
            self._consumer.subscribe(topics, listener=_Listener(self))

    async def stop(self) -> None:
        """Commit what was settled and leave the group (the others take the partitions)."""
        if self._joining is not None and not self._joining.done():
            self._joining.cancel()
        with contextlib.suppress(BaseException):
            await self._joining  # type: ignore[misc]
        with contextlib.suppress(Exception):
            await self._flush_now()
        await self._consumer.stop()

    # -- fetching --------------------------------------------------------------------------

    async def fetch(self, max_events: int, wait: float) -> list[PartitionBatch]:
        if self._joining is None or not self._joining.done():
            await self.joined()
        # A fetch that must not wait still waits, briefly, for events the brokers have and
        # this member has not fetched yet: those count as ready.
        catching_up = wait <= 0
        deadline = self._clock.monotonic() + (_CATCH_UP if catching_up else wait)
        while True:
            now = self._clock.monotonic()
            ready = self._ready(now)
            if ready:
                try:
                    await self._check_starts(ready)
                    if catching_up and not await self._behind(ready):
                        catching_up, deadline = False, now
                    step = 0.05 if catching_up else max(0.0, deadline - now)
                    records = await self._consumer.getmany(
                        *ready, timeout_ms=int(step * 1000), max_records=max_events
                    )
                except KafkaError as error:
                    raise BackendUnavailableError(f"Kafka fetch failed: {error}") from error
                batches = await self._batches(records, self._clock.monotonic())
                if batches:
                    return batches
            else:
                pause = self._next_change(now, deadline) - now
                if pause > 0:
                    await self._clock.sleep(pause)
            if self._clock.monotonic() >= deadline:
                return []

    def _ready(self, now: float) -> list[TopicPartition]:
        """Partitions this member may read now: no live lease, no hold. An expired lease is
        dropped here and its partition read again from the batch's first event."""
        ready = []
        assigned = self._consumer.assignment()
        for tp, part in self._partitions.items():
            if tp not in assigned:
                continue
            if part.lease is not None:
                if part.lease.expires > now:
                    continue
                part.lease = None  # its consumer died or hangs: deliver again
                self._consumer.seek(tp, part.head_offset)
            if part.not_before > now:
                continue
            ready.append(tp)
        return ready

    def _next_change(self, now: float, deadline: float) -> float:
        times = [deadline]
        for part in self._partitions.values():
            if part.lease is not None:
                times.append(part.lease.expires)
            elif part.not_before > now:
                times.append(part.not_before)
        return min(times)

    async def _check_starts(self, ready: list[TopicPartition]) -> None:
        """Give each newly assigned partition without a committed offset one, where the
        group's ``start`` says: for ``latest``, the end of the partition when the group was
        made (events published while it was joining are its), else the oldest retained
        event. The group's position is committed at once, so a group that starts at the
        latest event does not skip what comes while it is down."""
        fresh = [tp for tp in ready if not self._partitions[tp].checked_start]
        if not fresh:
            return
        offsets = {}
        for tp in fresh:
            if await self._consumer.committed(tp) is None:
                start = self._start_offsets.get(tp)
                if start is None:
                    start = await self._consumer.position(tp)
                else:
                    self._consumer.seek(tp, start)
                offsets[tp] = start
            self._partitions[tp].checked_start = True
        if offsets:
            await self._consumer.commit(offsets)

    async def _behind(self, ready: list[TopicPartition]) -> bool:
        """Whether the brokers hold events past this member's position in ``ready``: by
        ListOffsets and by the high watermark of the latest fetch (see
        ``KafkaEventBackend.partition_ends`` for why both). A partition not fetched yet
        counts as behind."""
        ends = await self._consumer.end_offsets(ready)
        for tp in ready:
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                return True
            if await self._consumer.position(tp) < max(ends.get(tp, 0), highwater):
                return True
        return False

    async def _batches(
        self, records: dict[TopicPartition, list[Any]], now: float
    ) -> list[PartitionBatch]:
        batches = []
        for tp, messages in records.items():
            part = self._partitions.get(tp)
            if part is None or not messages:
                continue
            deliveries, offsets = self._deliveries(part, messages, now)
            end = messages[-1].offset + 1
            lag = self._consumer.highwater(tp)
            if lag is not None:
                self._report_lag(self.spec.name, tp, max(0, lag - end))
            if not deliveries:  # only events for other groups or patterns, or copies
                await self.commit(tp, end)
                continue
            if offsets[0] == part.head_offset:
                deliveries[0].attempt = part.head_attempts + 1
            part.head_offset, part.head_attempts = offsets[0], deliveries[0].attempt
            token = next(self._tokens)
            part.lease = _Lease(token, now + self.spec.ack_wait)
            batches.append(
                PartitionBatch(
                    self.spec.name,
                    f"{tp.topic}/{tp.partition}",
                    deliveries,
                    BatchToken(tp, token, tuple(offsets), end),
                )
            )
        return batches

    def _deliveries(
        self, part: _Partition, messages: Sequence[Any], now: float
    ) -> tuple[list[Delivery], list[int]]:
        group = self.spec.name
        deliveries: list[Delivery] = []
        offsets: list[int] = []
        for message in messages:
            replay_for = replay_target(message.headers)
            if replay_for is not None and replay_for != group:
                continue
            delivery = read_record(message, part.topic_index, self.spec.pattern)
            if delivery is None:
                continue
            event = delivery.event
            copy = (
                replay_for is None  # a replay is a copy on purpose
                and event is not None
                and self._is_copy(part, event.source, event.id, message.offset, now)
            )
            if copy:
                continue
            deliveries.append(delivery)
            offsets.append(message.offset)
        return deliveries, offsets

    def _is_copy(
        self, part: _Partition, source: str, event_id: str, offset: int, now: float
    ) -> bool:
        """Whether this record is a later copy of an event this partition carried within
        the dedupe window (its first record is not a copy, however often it is fetched)."""
        key = (source, event_id)
        recent = part.recent
        seen = recent.get(key)
        if seen is not None:
            first_offset, first_time = seen
            if offset != first_offset and now - first_time <= self._dedupe_window:
                return True
            if offset == first_offset:
                return False
        recent[key] = (offset, now)
        recent.move_to_end(key)
        while len(recent) > _DEDUPE_MEMORY:
            recent.popitem(last=False)
        return False

    # -- settling --------------------------------------------------------------------------

    async def settle(self, batch: PartitionBatch, settlement: Settlement) -> None:
        token: BatchToken = batch.token
        part = self._partitions.get(token.tp)
        if part is None or part.lease is None or part.lease.token != token.lease:
            return  # the lease expired, or the partition moved: its next owner delivers it
        done = settlement.handled
        deliveries = batch.deliveries
        tp = token.tp
        if done >= len(deliveries):
            commit_to = token.end
            part.head_offset, part.head_attempts = -1, 0
        else:
            head = deliveries[done]
            offset = token.offsets[done]
            commit_to = offset
            if settlement.dead_letter is not None:
                await self._bury(
                    self.spec.name, head, settlement.dead_letter, tp.topic, tp.partition, offset
                )
                commit_to = offset + 1
                part.head_offset, part.head_attempts = -1, 0
            else:
                part.head_offset = offset
                part.head_attempts = head.attempt if settlement.retry_after is not None else 0
                if settlement.retry_after is not None:
                    part.not_before = self._clock.monotonic() + settlement.retry_after
            if tp in self._consumer.assignment():
                self._consumer.seek(tp, commit_to)  # the rest comes again, in order
        part.lease = None
        async with self._settled:
            self._settled.notify_all()
        await self.commit(tp, commit_to)

    async def commit(self, tp: TopicPartition, offset: int) -> None:
        """Commit ``offset`` for ``tp``; settles that come while a commit is on its way
        share the next request."""
        self._pending[tp] = offset
        if self._round is None:
            self._round = asyncio.get_running_loop().create_future()
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush(), name="kafka:commit")
        round_ = self._round
        await asyncio.shield(round_)

    async def _flush(self) -> None:
        while self._round is not None:
            round_, self._round = self._round, None
            offsets, self._pending = self._pending, {}
            try:
                await self._commit(offsets)
            except Exception as error:
                round_.set_exception(error)
                round_.exception()  # retrieved: each settle waiting on it raises it
            else:
                round_.set_result(None)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assigned = self._consumer.assignment()
        mine = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not mine:
            return
        try:
            await self._consumer.commit(mine)
        except KafkaError as error:
            raise BackendUnavailableError(f"Kafka commit failed: {error}") from error

    async def _flush_now(self) -> None:
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._flusher)
        if self._pending:
            offsets, self._pending = self._pending, {}
            await self._commit(offsets)

    # -- rebalancing -----------------------------------------------------------------------

    async def _revoked(self, revoked: list[TopicPartition]) -> None:
        """Before partitions move away: let their batches settle, then commit."""
        leased = [tp for tp in revoked if (p := self._partitions.get(tp)) and p.lease]
        if leased:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.spec.ack_wait), self._settled:
                    await self._settled.wait_for(
                        lambda: all(
                            (p := self._partitions.get(tp)) is None or p.lease is None
                            for tp in leased
                        )
                    )
        try:
            await self._flush_now()
        except Exception as error:  # the next owner delivers again what was not committed
            log.warning("group %s: commit before a rebalance failed: %s", self.spec.name, error)
        for tp in revoked:
            self._partitions.pop(tp, None)

    def _assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            if tp not in self._partitions:
                index = self._layout.topic_index(tp.topic)
                self._partitions[tp] = _Partition(tp, index)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, member: GroupMember) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._member._revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._member._assigned(list(assigned))


def replay_target(headers: Sequence[tuple[str, bytes]]) -> str | None:
    """The group a replayed record is meant for (None for a record every group reads)."""
    for key, value in headers:
        if key == REPLAY_HEADER:
            return value.decode("utf-8", "replace")
    return None


def read_record(message: Any, topic_index: int, pattern: str) -> Delivery | None:
    """What a record delivers to a reader of ``pattern``: its event, or, when the record is
    not a CloudEvent, its bytes and why (the bus dead-letters those); None when the event's
    type does not match."""
    at = position(topic_index, message.partition, message.offset)
    try:
        event = from_kafka(message.key, message.value, message.headers)
    except EventFormatError as error:
        return Delivery(None, 1, raw=message.value or b"", error=str(error), position=at)
    return Delivery(event, 1, position=at) if matches(pattern, event.type) else None


__all__ = [
    "REPLAY_HEADER",
    "BatchToken",
    "BuryLetter",
    "GroupMember",
    "read_record",
    "replay_target",
]
