"""The Kafka event backend: the bus on Apache Kafka (or any broker that speaks its protocol).

``HYBRIDMESH_EVENTS_URL=kafka://host:9092[,host2:9092][?options]`` selects it; the options
and the topic layout are described in :mod:`._kafka_layout`. What the bus promises holds here
too, in Kafka's terms:

- **At least once.** A publish returns once every broker in sync has the events
  (``acks=all``). Offsets are committed only after the events were handled.
- **Consumer groups** are Kafka consumer groups (``<prefix>.<group>``): their members share
  a group's partitions, and Kafka's tools show their offsets and lag.
- **Order per partitionkey.** The ``partitionkey`` is the record key, and Kafka's default
  partitioner (murmur2) picks the partition from it, as Java and librdkafka producers do.
  An event without one goes to a partition chosen by its (source, id).
- **Retries and dead letters.** A retried event holds its partition until its backoff has
  passed, so later events with its key wait behind it; retry topics would let them pass.
  An event out of attempts goes to the dead-letter topic (:mod:`._kafka_dlq`).
- **Copies** (an event published again with the same source and id) land in the same
  partition; the group member that reads both within ``dedupe_window`` drops the later one.
  Kafka itself does not deduplicate by id.
- **Malformed records** (not a CloudEvent) are delivered without an event and the bus
  dead-letters them with the reason; the group goes on.
- **Consumer lag** per group and partition is the gauge ``hybridmesh_event_consumer_lag``.

Events travel in the CloudEvents Kafka protocol binding (:mod:`hybridmesh.events.kafka_binding`),
binary mode by default (``ce_*`` headers, the data as the value), structured with
``mode=structured``.

Kafka orders a partition, not the whole log: :attr:`Delivery.position` grows within a
partition (see :func:`._kafka_layout.position`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import ConfigurationError, NotFoundError, ValidationError
from hybridmesh.events.backend import (
    BackendUnavailableError,
    DeadLetter,
    Delivery,
    GroupSpec,
    LogSpan,
    PartitionBatch,
    Settlement,
)
from hybridmesh.events.backends._kafka_dlq import DeadLetterTopic
from hybridmesh.events.backends._kafka_group import (
    REPLAY_HEADER,
    GroupMember,
    read_record,
    replay_target,
)
from hybridmesh.events.backends._kafka_layout import (
    KafkaLayout,
    KafkaOptions,
    Mode,
    position,
)
from hybridmesh.events.backends._kafka_protocol import delete_groups
from hybridmesh.events.envelope import CloudEvent, EventFormatError
from hybridmesh.events.kafka_binding import to_kafka
from hybridmesh.events.subjects import validate_pattern
from hybridmesh.observability import get_logger
from hybridmesh.observability.metrics import MeshMetrics

log = get_logger("hybridmesh.events.kafka")

#: Records as large as the largest CloudEvent the bus accepts, with room to spare.
_MAX_RECORD_BYTES = 4 * 1024 * 1024
#: How many bytes of records one produce batch of a partition holds (aiokafka's default,
#: 16 kB, splits a publish of a few hundred events into many requests).
_BATCH_BYTES = 256 * 1024
_CHECK_TIMEOUT = 2.0
_PUBLISHED_MEMORY = 50_000


class KafkaEventBackend:
    """Events on Kafka, through aiokafka. See the module docstring."""

    name = "kafka"

    def __init__(
        self,
        url: str = "kafka://127.0.0.1:9092",
        *,
        dedupe_window: float = 120.0,
        clock: Clock = SYSTEM_CLOCK,
        metrics: MeshMetrics | None = None,
    ) -> None:
        self.options = KafkaOptions.from_url(url)
        self.url = url
        self.layout: KafkaLayout = self.options.layout
        self.mode: Mode = self.options.mode
        self.dedupe_window = dedupe_window
        self.clock = clock
        self.metrics = metrics or MeshMetrics.default()
        self._producer: AIOKafkaProducer | None = None
        self._letters: DeadLetterTopic | None = None
        self._members: dict[str, GroupMember] = {}
        self._joining: dict[str, asyncio.Lock] = {}
        self._published: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._partition_counts: dict[str, int] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def _client_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "bootstrap_servers": self.options.bootstrap,
            "security_protocol": self.options.security_protocol,
            "request_timeout_ms": 30_000,
        }
        if self.options.security_protocol == "SSL":
            config["ssl_context"] = ssl.create_default_context()
        return config

    def _consumer_config(self) -> dict[str, Any]:
        session_ms = int(self.options.session_timeout * 1000)
        return {
            **self._client_config(),
            "session_timeout_ms": session_ms,
            "heartbeat_interval_ms": max(100, session_ms // 4),
            "fetch_max_wait_ms": 100,
            "max_partition_fetch_bytes": _MAX_RECORD_BYTES,
            "fetch_max_bytes": 4 * _MAX_RECORD_BYTES,
        }

    async def start(self) -> None:
        """Connect and create the topics that are missing (idempotent). A broker that does
        not answer within ``connect_timeout`` fails the start with a clear error."""
        if self._producer is not None:
            return
        brokers = ",".join(self.options.bootstrap)
        producer = AIOKafkaProducer(
            acks="all",
            enable_idempotence=False,
            linger_ms=0,
            max_batch_size=_BATCH_BYTES,
            max_request_size=_MAX_RECORD_BYTES,
            **self._client_config(),
        )
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                await producer.start()
                await self._ensure_topics()
        except (TimeoutError, KafkaError, OSError) as error:
            with contextlib.suppress(Exception):
                await producer.stop()
            why = "no answer" if isinstance(error, TimeoutError) else f"{error}"
            raise BackendUnavailableError(
                f"Kafka at {brokers} is unreachable ({why} within "
                f"{self.options.connect_timeout:g} s); check HYBRIDMESH_EVENTS_URL"
            ) from error
        self._producer = producer
        self._letters = DeadLetterTopic(
            self.layout.dead_letter_topic, producer, self._client_config(), self.clock
        )

    async def _ensure_topics(self) -> None:
        admin = AIOKafkaAdminClient(**self._client_config())
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(topic, self.layout.partitions, self.options.replication)
                for topic in self.layout.event_topics
                if topic not in existing
            ]
            if self.layout.dead_letter_topic not in existing:
                wanted.append(
                    NewTopic(
                        self.layout.dead_letter_topic,
                        1,
                        self.options.replication,
                        topic_configs={"cleanup.policy": "compact"},
                    )
                )
            if wanted:
                response = await admin.create_topics(wanted)
                for topic, code, message in _topic_errors(response):
                    if code and code != TopicAlreadyExistsError.errno:
                        raise ConfigurationError(
                            f"Kafka refused to create topic {topic!r}: {message or code}"
                        )
        finally:
            await admin.close()

    async def close(self) -> None:
        members, self._members = list(self._members.values()), {}
        for member in members:
            with contextlib.suppress(Exception):
                await member.stop()
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def check(self) -> None:
        producer = self._started()
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT):
                ok = await producer.client.fetch_all_metadata()
        except (TimeoutError, KafkaError, OSError) as error:
            raise BackendUnavailableError(f"Kafka does not answer: {error or 'timeout'}") from error
        if not ok.brokers():
            raise BackendUnavailableError("Kafka reports no brokers")

    def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise BackendUnavailableError("the Kafka backend is not started")
        return self._producer

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, events: Sequence[CloudEvent], *, group: str | None = None) -> None:
        producer = self._started()
        for event in events:
            event.validate()
        now = time.monotonic()
        # Records go out in one batch per partition (several when they do not fit one):
        # fewer, larger produce requests, and the order of each partition is the order given.
        lanes: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, list[Any]]]] = {}
        for event in events:
            if group is None and self._published_lately(event, now):
                continue
            record = to_kafka(event, self.mode)
            headers: list[Any] = record.headers
            if group is not None:
                headers = [*headers, (REPLAY_HEADER, group.encode())]
            topic = self.layout.topic_for(event.type)
            partition = await self._partition_of(producer, topic, record.key, event)
            lanes.setdefault((topic, partition), []).append((record.key, record.value, headers))
        try:
            sent = []
            for (topic, partition), records in lanes.items():
                batch = producer.create_batch()
                for key, value, headers in records:
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        sent.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None, headers=headers)
                sent.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*sent)
        except MessageSizeTooLargeError as error:
            raise ValidationError(f"event too large for Kafka: {error}") from error
        except KafkaError as error:
            raise BackendUnavailableError(f"Kafka publish failed: {error}") from error

    def _published_lately(self, event: CloudEvent, now: float) -> bool:
        """Whether this process published the same (source, id) within the dedupe window;
        copies from other processes are dropped by the consumers instead."""
        key = (event.source, event.id)
        seen = self._published.get(key)
        if seen is not None and now - seen <= self.dedupe_window:
            return True
        self._published[key] = now
        self._published.move_to_end(key)
        while len(self._published) > _PUBLISHED_MEMORY:
            self._published.popitem(last=False)
        return False

    async def _partition_of(
        self, producer: AIOKafkaProducer, topic: str, key: bytes | None, event: CloudEvent
    ) -> int:
        """Kafka's default partition for a keyed record (murmur2 of the key, as the Java and
        librdkafka producers choose); for an unkeyed one, by the event's (source, id), so a
        copy lands beside the first."""
        count = self._partition_counts.get(topic)
        if count is None:
            try:
                found = await producer.partitions_for(topic)
            except KafkaError as error:
                raise BackendUnavailableError(f"Kafka publish failed: {error}") from error
            count = len(found) if found else self.layout.partitions
            self._partition_counts[topic] = count
        if key is not None:
            return int(murmur2(key) & 0x7FFFFFFF) % count
        return zlib.crc32(f"{event.source}\x1f{event.id}".encode()) % count

    # -- groups ----------------------------------------------------------------------------

    async def ensure_group(self, spec: GroupSpec) -> None:
        validate_pattern(spec.pattern)
        self._started()
        lock = self._joining.setdefault(spec.name, asyncio.Lock())
        async with lock:
            member = self._members.get(spec.name)
            if member is not None:
                await member.update(spec)
                return
            start_offsets = None
            if spec.start == "latest":  # where the log ends now, not once the group has joined
                start_offsets = await self.partition_ends(self.layout.topics_for(spec.pattern))
            member = GroupMember(
                spec,
                start_offsets=start_offsets,
                layout=self.layout,
                consumer_config=self._consumer_config(),
                clock=self.clock,
                dedupe_window=self.dedupe_window,
                bury=self._bury,
                report_lag=self._report_lag,
            )
            member.start()
            self._members[spec.name] = member

    async def delete_group(self, name: str) -> None:
        member = self._members.pop(name, None)
        if member is not None:
            with contextlib.suppress(Exception):
                await member.stop()
        try:
            await delete_groups(self._client_config(), [self.layout.group_id(name)])
        except KafkaError as error:
            log.warning("Kafka: deleting group %s failed: %s", name, error)

    async def fetch(
        self, spec: GroupSpec, consumer: str, *, max_events: int, wait: float
    ) -> list[PartitionBatch]:
        member = self._members.get(spec.name)
        if member is None:
            await self.ensure_group(spec)
            member = self._members[spec.name]
        elif member.spec != spec:
            await member.update(spec)
        return await member.fetch(max_events, wait)

    async def settle(self, batch: PartitionBatch, settlement: Settlement) -> None:
        member = self._members.get(batch.group)
        if member is not None:
            await member.settle(batch, settlement)

    async def _bury(
        self, group: str, delivery: Delivery, reason: str, topic: str, partition: int, offset: int
    ) -> None:
        await self._dead_letters().bury(group, delivery, reason, topic, partition, offset)

    def _report_lag(self, group: str, tp: TopicPartition, lag: int) -> None:
        self.metrics.set_consumer_lag(group, f"{tp.topic}/{tp.partition}", lag)

    # -- reading ---------------------------------------------------------------------------

    async def open_reader(
        self, pattern: str, *, start: Literal["earliest", "latest"] = "latest"
    ) -> KafkaLogReader:
        validate_pattern(pattern)
        self._started()
        reader = KafkaLogReader(self.layout, pattern, self._client_config())
        await reader.open(start)
        return reader

    async def partition_ends(self, topics: Sequence[str]) -> dict[TopicPartition, int]:
        """The offset after the last record of each partition of ``topics``."""
        return {tp: end for tp, (_, end) in (await self._partition_bounds(topics)).items()}

    async def _partition_bounds(
        self, topics: Sequence[str]
    ) -> dict[TopicPartition, tuple[int, int]]:
        """Each partition's first retained offset and the offset after its last record.

        The end is asked twice over: ListOffsets, and a fetch from there, whose answer says
        the partition's high watermark. Some Kafka-protocol brokers (Tansu among them)
        answer ListOffsets with the base offset of the last record batch plus one, short of
        the end when that batch holds several records; the fetch's high watermark is right.
        """
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **self._client_config())
        try:
            await consumer.start()
            tps = await _partitions_of(consumer, topics)
            firsts: dict[TopicPartition, int] = await consumer.beginning_offsets(tps)
            listed: dict[TopicPartition, int] = await consumer.end_offsets(tps)
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, listed[tp])
            async with asyncio.timeout(self.options.connect_timeout):
                while any(consumer.highwater(tp) is None for tp in tps):
                    await consumer.getmany(*tps, timeout_ms=100)
            return {tp: (firsts[tp], max(listed[tp], consumer.highwater(tp) or 0)) for tp in tps}
        except (KafkaError, TimeoutError) as error:
            raise BackendUnavailableError(f"Kafka: reading offsets failed: {error}") from error
        finally:
            await consumer.stop()

    async def log_span(self) -> LogSpan:
        first: int | None = None
        last: int | None = None
        for tp, (begin, end) in (await self._partition_bounds(self.layout.event_topics)).items():
            if end <= begin:
                continue
            index = self.layout.topic_index(tp.topic)
            low, high = position(index, tp.partition, begin), position(index, tp.partition, end - 1)
            first = low if first is None else min(first, low)
            last = high if last is None else max(last, high)
        return LogSpan(first, last)

    # -- dead letters ----------------------------------------------------------------------

    def _dead_letters(self) -> DeadLetterTopic:
        self._started()
        assert self._letters is not None
        return self._letters

    async def dead_letters(self, *, group: str | None = None, limit: int = 100) -> list[DeadLetter]:
        return await self._dead_letters().list(group, limit)

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter:
        return await self._dead_letters().get(dead_letter_id)

    async def replay(self, dead_letter_id: str) -> DeadLetter:
        letters = self._dead_letters()
        letter = await letters.get(dead_letter_id)
        try:
            event = letter.event or CloudEvent.from_json(letter.body)
        except EventFormatError as error:
            raise ValidationError(
                f"dead letter {dead_letter_id!r} is not a CloudEvent and cannot be replayed: "
                f"{error}"
            ) from error
        await self.publish([event], group=letter.group)
        return await letters.mark_replayed(dead_letter_id)

    async def purge(self, *, group: str | None = None) -> int:
        return await self._dead_letters().purge(group)


class KafkaLogReader:
    """An :class:`~hybridmesh.events.backend.EventReader` on Kafka: a consumer outside any
    group, assigned every partition of the topics the pattern can match. Events come in
    order within a partition; across partitions, in the order they were fetched."""

    def __init__(self, layout: KafkaLayout, pattern: str, config: dict[str, Any]) -> None:
        self._layout = layout
        self._pattern = pattern
        self._consumer = AIOKafkaConsumer(
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=_MAX_RECORD_BYTES,
            **config,
        )
        self._closed = False

    async def open(self, start: Literal["earliest", "latest"]) -> None:
        consumer = self._consumer
        try:
            await consumer.start()
            tps = await _partitions_of(consumer, self._layout.topics_for(self._pattern))
            consumer.assign(tps)
            if start == "earliest":
                await consumer.seek_to_beginning(*tps)
            else:
                await consumer.seek_to_end(*tps)
            for tp in tps:  # fix the positions now: what is published after this is read
                await consumer.position(tp)
        except KafkaError as error:
            await self.close()
            raise BackendUnavailableError(f"Kafka: opening a reader failed: {error}") from error

    async def read(self, max_events: int, wait: float) -> list[Delivery]:
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            timeout = max(0.0, deadline - time.monotonic())
            try:
                got = await self._consumer.getmany(
                    timeout_ms=int(timeout * 1000), max_records=max_events
                )
            except KafkaError as error:
                raise BackendUnavailableError(f"Kafka read failed: {error}") from error
            found = self._deliveries(got)
            if found or time.monotonic() >= deadline:
                return found

    def _deliveries(self, got: dict[TopicPartition, list[Any]]) -> list[Delivery]:
        found: list[tuple[tuple[int, int, int], Delivery]] = []
        for tp, messages in got.items():
            index = self._layout.topic_index(tp.topic)
            for message in messages:
                if replay_target(message.headers) is not None:
                    continue  # meant for one group only
                delivery = read_record(message, index, self._pattern)
                if delivery is not None:
                    found.append(((message.timestamp, index, delivery.position), delivery))
        found.sort(key=lambda pair: pair[0])
        return [delivery for _, delivery in found]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self._consumer.stop()


async def _partitions_of(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    found = []
    for topic in topics:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer.topics()  # refreshes the metadata
            partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            raise NotFoundError(f"Kafka topic {topic!r} does not exist")
        found += [TopicPartition(topic, p) for p in sorted(partitions)]
    return found


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    errors = []
    for item in getattr(response, "topic_errors", []):
        topic, code = item[0], item[1]
        message = item[2] if len(item) > 2 else None
        errors.append((topic, code, message))
    return errors


__all__ = ["KafkaEventBackend", "KafkaLogReader"]
