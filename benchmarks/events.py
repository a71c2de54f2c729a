"""Event bus throughput and latency, on every backend, against raw clients and FastStream.

Each run publishes ``EVENTS`` small events with ``publish_many`` in chunks of ``CHUNK`` from
one task while one subscribed consumer group handles them concurrently, and measures:

- throughput: distinct events handled / seconds from the first publish to the last handle;
- publish→handled latency (p50, p95): the publish time travels in the event data (stamped
  when the chunk is built), the handler takes the time again; both run in this process;
- the publish rate: events / seconds the publishing task took (while consuming went on).

Backends: the SQL log on SQLite (a temporary file) and on PostgreSQL (a fresh database,
dropped afterwards), and NATS JetStream (its own random prefix, streams deleted afterwards).
On the same NATS server, in the same run, two peers move the same number of messages of the
same size: raw nats-py (``publish_async`` with a bounded window of pending acks, a durable
pull consumer, ``fetch`` + ``ack`` per message) and FastStream (a ``NatsBroker`` JetStream
batch pull subscriber, acknowledging after the handler returns).

Kafka: one Kafka-protocol broker started for the run (Tansu, by ``LocalKafka``, in-memory
storage) carries the bus on the Kafka backend (its own random prefix, topics deleted
afterwards) and two peers, each on a topic of the same 8 partitions, all with ``acks=all``
and no idempotence (the broker refuses it), moving the same number of events of the same
size: raw aiokafka (``send_batch`` of one batch per partition per chunk, confirmed per chunk;
a consumer group with auto-commit off, ``getmany`` then ``commit`` after handling each) and
FastStream (a ``KafkaBroker`` sending with ``publish_batch`` per partition; a batch
subscriber whose ack policy commits after the handler returns). A new consumer group's join
takes this broker half the session timeout, so every Kafka row uses a short session and sends
one event through before its timed window. The three run back to back in rounds of
alternating order, like the NATS trio; ``python -m benchmarks events_kafka`` runs them alone
and prints their figures.

The SQL log has no broker peer; its reference is what its database does with the same rows
without the bus (``benchmarks/_sql_plain.py``): a plain loop with ``sqlite3`` or asyncpg
that appends the same rows in the same chunks and reads them back in seq order, in the
same run. The SQL rows and their references run back to back in rounds of alternating
order, like the NATS trio.

Then a narrow consumer group beside other traffic, and catching up past 50,000 events of
other types, on SQLite and PostgreSQL (``benchmarks/_narrow.py``).

Goals: JetStream bus >= 0.85x raw nats-py and >= 1.0x FastStream (throughput); likewise the
Kafka bus >= 0.85x raw aiokafka and >= 1.0x FastStream's Kafka broker; the SQL log
>= 0.5x its database's plain loop, on SQLite and on PostgreSQL; a narrow group's p95 beside
1,500 events/s of other types <= 2x its p95 alone, and catch-up past 50,000 other events
under 0.5 s. A section that fails is recorded with its error; the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import Progress, TaskID

from benchmarks import _kafka_floor, _narrow
from benchmarks._postgres import fresh_database
from benchmarks._report import (
    LatencySummary,
    alternating,
    best_rounds,
    failed_round,
    figure,
    machine,
    ratio,
    write_json,
    write_section,
)
from benchmarks._sql_plain import Row, postgres_loop, sqlite_loop
from hybridmesh.events.backend import EventBackend
from hybridmesh.events.bus import EventBus
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.events.local_kafka import LocalKafka
from hybridmesh.observability import configure_tracing

NATS_URL = "nats://127.0.0.1:4222"

CHUNK = 1_000  # events per publish_many call (and per confirmed publish round of the peers)
FETCH = 500  # events per fetch: bus subscription batch_size, nats-py fetch, FastStream pull
# The SQL log has no peer to match, so it runs as one would tune it for throughput: a write
# per fetch (the lease) and one per settle are shared by more events with bigger batches.
SQL_FETCH = 1_000
EVENT_TYPE = "bench.event"
SOURCE = "/benchmarks/events"
# FastStream's batch subscriber collects a full batch for up to this long. None: until full
# (EVENTS is a multiple of FETCH). A finite wait lets nats-py raise asyncio's TimeoutError
# where FastStream 0.7 only catches nats-py's own, which kills its consuming task.
FASTSTREAM_BATCH_WAIT: float | None = None
NATS_ROUNDS = 2  # rounds of each broker trio and the SQL pairs (full mode; quick mode runs one)
STALL_SECONDS = 60.0  # a section fails when nothing is handled for this long
SQL_PLAIN_GOAL = 0.5  # the SQL log's throughput over its database's plain loop
NATS_PY_GOAL = 0.85
AIOKAFKA_GOAL = 0.85
FASTSTREAM_GOAL = 1.0  # on NATS and on Kafka
# The Kafka trio. Its topics have the bus backend's default number of partitions.
KAFKA_PARTITIONS = 8
# Consumer group timing of every Kafka row. Tansu answers a JoinGroup only after half the
# session timeout, so the default (10 s for aiokafka and FastStream) would make each row wait
# 5 s at start; the join happens before the timed window anyway (see ``_drive``).
KAFKA_SESSION_TIMEOUT_MS = 6_000
KAFKA_HEARTBEAT_MS = 1_000
# The same timing for the bus, in the Kafka backend's URL. The query parameter names (in
# seconds) are the backend's own: keep them in step with hybridmesh.events.backends.kafka.
KAFKA_BUS_QUERY = f"session_timeout={KAFKA_SESSION_TIMEOUT_MS // 1000}"
# The peers' producer batch limit (aiokafka's ``max_batch_size``, 16 kB by default): large
# enough for one partition's share of a chunk (125 events of about 300 bytes) in one batch.
KAFKA_BATCH_BYTES = 256 * 1024
WARM_UP = -1  # the number of the one event a Kafka row sends through before it is timed

PublishChunk = Callable[[int, int], Awaitable[None]]

SECTIONS = {
    "sqlite": "SQL log, SQLite, one process",
    "sqlite_2p": "SQL log, SQLite, publisher and consumer processes",
    "sqlite_plain": "plain sqlite3 loop (same rows)",
    "postgresql": "SQL log, PostgreSQL",
    "postgresql_plain": "plain asyncpg loop (same rows)",
    "jetstream": "JetStream bus",
    "nats_py": "raw nats-py (JetStream)",
    "faststream": "FastStream (JetStream)",
    "kafka": "Kafka bus",
    "aiokafka": "raw aiokafka (Kafka)",
    "faststream_kafka": "FastStream (Kafka)",
}
NATS_TRIO = ["jetstream", "nats_py", "faststream"]
KAFKA_TRIO = ["kafka", "aiokafka", "faststream_kafka"]


# -- measuring -----------------------------------------------------------------------------


@dataclass
class _Tally:
    """What the consuming side saw: one latency per distinct event, and duplicates.

    The event numbered ``WARM_UP`` is not counted: it only sets ``warmed``."""

    count: int
    seen: bytearray = field(init=False)
    latencies: list[float] = field(default_factory=list)
    handled: int = 0
    duplicates: int = 0
    last: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    warmed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.seen = bytearray(self.count)

    def record(self, n: int, published: float) -> None:
        now = time.time()
        if n == WARM_UP:
            self.warmed.set()
            return
        if self.seen[n]:
            self.duplicates += 1
            return
        self.seen[n] = 1
        self.latencies.append(now - published)
        self.handled += 1
        self.last = now
        if self.handled == self.count:
            self.done.set()


async def _drive(
    publish_chunk: PublishChunk,
    tally: _Tally,
    progress: Progress,
    task: TaskID,
    consumer: asyncio.Task[None] | None = None,
    *,
    warm_up: bool = False,
) -> dict[str, Any]:
    """Publish every chunk from one task while the consumer runs; wait until all are handled.

    With ``warm_up``, one event (numbered ``WARM_UP``) goes through first, untimed: on Kafka
    it waits out what a new consumer group and a new producer do once (joining the group,
    finding where to read, loading the topic's metadata), which the figures should not hold.

    Fails when publishing fails, when ``consumer`` (a consuming task, if the caller has one)
    ends early, or when nothing is handled for ``STALL_SECONDS``."""
    count = tally.count
    if warm_up:
        await publish_chunk(WARM_UP, 1)
        try:
            await asyncio.wait_for(tally.warmed.wait(), STALL_SECONDS)
        except TimeoutError:
            raise TimeoutError(
                f"the warm-up event was not handled within {STALL_SECONDS:.0f} s"
            ) from None
    first_publish = time.time()
    first_cpu = time.process_time()

    async def publisher() -> float:
        began = time.perf_counter()
        for start in range(0, count, CHUNK):
            await publish_chunk(start, min(CHUNK, count - start))
        return time.perf_counter() - began

    publishing = asyncio.create_task(publisher(), name="bench:publisher")
    try:
        seen, quiet_since = -1, time.monotonic()
        while not tally.done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tally.done.wait(), 0.1)
            progress.update(task, completed=tally.handled)
            if publishing.done() and publishing.exception() is not None:
                raise RuntimeError("publishing failed") from publishing.exception()
            if consumer is not None and consumer.done():
                failure = None if consumer.cancelled() else consumer.exception()
                raise RuntimeError("the consumer stopped early") from failure
            if tally.handled != seen:
                seen, quiet_since = tally.handled, time.monotonic()
            elif time.monotonic() - quiet_since > STALL_SECONDS:
                raise TimeoutError(
                    f"stalled: {tally.handled}/{count} handled, nothing for {STALL_SECONDS:.0f} s"
                )
        publish_seconds = await publishing
        cpu_seconds = time.process_time() - first_cpu
    finally:
        if not publishing.done():
            publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await publishing
    progress.update(task, completed=count)
    result = _result(
        count,
        LatencySummary.of(tally.latencies, tally.last - first_publish),
        publish_seconds,
        tally.duplicates,
    )
    # The processor time this process spent on an event, publishing and consuming it: the
    # broker runs in its own process, so on Kafka and NATS this is the client's own work.
    result["cpu_us_per_event"] = round(cpu_seconds / count * 1e6, 1)
    return result


def _result(
    count: int, summary: LatencySummary, publish_seconds: float, duplicates: int
) -> dict[str, Any]:
    """One section's figures, the same keys for every section."""
    return {
        "events": count,
        "seconds": summary.seconds,
        "throughput": summary.throughput,
        "publish_seconds": round(publish_seconds, 4),
        "publish_rate": round(count / publish_seconds, 1),
        "p50_ms": summary.p50_ms,
        "p95_ms": summary.p95_ms,
        "p99_ms": summary.p99_ms,
        "duplicates": duplicates,
    }


# -- payloads ------------------------------------------------------------------------------


def _event(n: int, published: float) -> CloudEvent:
    return CloudEvent.create(EVENT_TYPE, SOURCE, {"n": n, "ts": published})


def _envelope_size() -> int:
    """Bytes of one bus event in structured JSON, as published (with its traceparent)."""
    sample = _event(0, time.time()).with_extensions(traceparent=f"00-{'1' * 32}-{'2' * 16}-01")
    return len(sample.to_json())


def _peer_body(n: int, published: float, pad: str) -> dict[str, Any]:
    return {"n": n, "ts": published, "pad": pad}


def _peer_pad(size: int) -> str:
    """Padding that makes a peer's JSON body as large as a bus event's envelope."""
    bare = len(json.dumps(_peer_body(0, time.time(), "")).encode())
    return "x" * max(0, size - bare)


# -- the bus on each backend ---------------------------------------------------------------


async def _bus_run(
    backend: EventBackend,
    count: int,
    progress: Progress,
    task: TaskID,
    fetch: int = FETCH,
    *,
    warm_up: bool = False,
) -> dict[str, Any]:
    tally = _Tally(count)

    async def handler(event: CloudEvent) -> None:
        tally.record(event.data["n"], event.data["ts"])

    bus = EventBus(backend, owns_backend=False)
    bus.subscribe(f"{EVENT_TYPE.split('.')[0]}.>", handler, group="bench", batch_size=fetch)

    async def publish_chunk(start: int, size: int) -> None:
        published = time.time()
        await bus.publish_many([_event(n, published) for n in range(start, start + size)])

    async with bus:
        return await _drive(publish_chunk, tally, progress, task, warm_up=warm_up)


# The consuming process of the two-process SQLite section: it handles every event, then
# prints what it saw as one JSON line.
_CONSUMER = """
import asyncio, json, sys, time
from hybridmesh.events import EventBus
from hybridmesh.events.backends.sql import SqlEventBackend

async def main(url, count, fetch):
    backend = await SqlEventBackend.open(url, poll_interval=0.01)
    bus = EventBus(backend, poll_wait=0.2)
    seen = bytearray(count)
    latencies, done, state = [], asyncio.Event(), {"handled": 0, "dups": 0, "last": 0.0}

    async def handler(event):
        now = time.time()
        n = event.data["n"]
        if seen[n]:
            state["dups"] += 1
            return
        seen[n] = 1
        latencies.append(now - event.data["ts"])
        state["handled"] += 1
        state["last"] = now
        if state["handled"] == count:
            done.set()

    bus.subscribe("bench.>", handler, group="bench", batch_size=fetch)
    async with bus:
        print("ready", flush=True)
        await done.wait()
    print(json.dumps({**state, "latencies": latencies}), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


async def _sqlite_two_processes(count: int, progress: Progress, task: TaskID) -> dict[str, Any]:
    """The embedded log as a deployment splits it: the publishing service in one process,
    a consuming worker in another, sharing the SQLite file (WAL lets them overlap)."""
    from hybridmesh.events.backends.sql import SqlEventBackend

    with tempfile.TemporaryDirectory(prefix="hm-bench-") as folder:
        url = f"sqlite:///{Path(folder) / 'events.db'}"
        backend = await SqlEventBackend.open(url)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CONSUMER,
            url,
            str(count),
            str(SQL_FETCH),
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,  # its last line carries every latency
        )
        assert child.stdout is not None
        try:
            ready = await asyncio.wait_for(child.stdout.readline(), STALL_SECONDS)
            if ready.strip() != b"ready":
                raise RuntimeError("the consumer process did not start")
            bus = EventBus(backend, owns_backend=False)
            first = time.time()
            began = time.perf_counter()
            for start in range(0, count, CHUNK):
                published = time.time()
                size = min(CHUNK, count - start)
                await bus.publish_many([_event(n, published) for n in range(start, start + size)])
                progress.update(task, completed=start + size)
            publish_seconds = time.perf_counter() - began
            line = await asyncio.wait_for(child.stdout.readline(), STALL_SECONDS * 5)
            seen = json.loads(line)
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()
            await backend.close()
    summary = LatencySummary.of(seen["latencies"], seen["last"] - first)
    return _result(count, summary, publish_seconds, seen["dups"])


@contextlib.asynccontextmanager
async def _sqlite_backend() -> AsyncIterator[EventBackend]:
    from hybridmesh.events.backends.sql import SqlEventBackend

    with tempfile.TemporaryDirectory(prefix="hm-bench-") as folder:
        backend = await SqlEventBackend.open(f"sqlite:///{Path(folder) / 'events.db'}")
        try:
            yield backend
        finally:
            await backend.close()


@contextlib.asynccontextmanager
async def _postgres_backend() -> AsyncIterator[EventBackend]:
    from hybridmesh.events.backends.sql import SqlEventBackend

    async with fresh_database() as url:
        backend = await SqlEventBackend.open(url)
        try:
            yield backend
        finally:
            await backend.close()


@contextlib.asynccontextmanager
async def _nats_backend() -> AsyncIterator[EventBackend]:
    from hybridmesh.events.backends.nats import NatsEventBackend

    prefix = f"hmbench{uuid.uuid4().hex[:10]}"
    backend = NatsEventBackend(NATS_URL, prefix=prefix)
    try:
        yield backend
    finally:
        try:
            await backend.close()
        finally:
            await _delete_streams(prefix)


async def _delete_streams(marker: str) -> None:
    """Delete every stream whose name or subjects mention ``marker``."""
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        jsm = nc.jsm()
        for info in await jsm.streams_info():
            config = info.config
            names = [config.name or "", *(config.subjects or [])]
            if any(marker.lower() in name.lower() for name in names):
                await jsm.delete_stream(config.name or "")
    finally:
        await nc.close()


class _KafkaBroker:
    """The run's one Kafka-protocol broker (Tansu, by ``LocalKafka``, in-memory storage):
    started when a Kafka row first needs it, stopped when the run ends. When it cannot
    start, the Kafka rows fail with the reason and the others go on."""

    def __init__(self) -> None:
        self._local: LocalKafka | None = None

    async def bootstrap(self) -> str:
        """The broker's ``host:port``, starting it on first use."""
        if self._local is None:
            self._local = await asyncio.to_thread(LocalKafka().start)
        return self._local.bootstrap

    def stop(self) -> None:
        local, self._local = self._local, None
        if local is not None:
            local.stop()


@contextlib.asynccontextmanager
async def _kafka_topic(bootstrap: str, topic: str) -> AsyncIterator[None]:
    """A topic with ``KAFKA_PARTITIONS`` partitions for a peer, deleted afterwards."""
    from aiokafka.admin import NewTopic

    async with _kafka_admin(bootstrap) as admin:
        await admin.create_topics([NewTopic(topic, KAFKA_PARTITIONS, 1)])
    try:
        yield
    finally:
        await _delete_topics(bootstrap, topic)


async def _delete_topics(bootstrap: str, marker: str) -> None:
    """Delete every topic whose name mentions ``marker`` (the broker keeps them in memory)."""
    async with _kafka_admin(bootstrap) as admin:
        doomed = [name for name in await admin.list_topics() if marker in name]
        if doomed:
            await admin.delete_topics(doomed)


@contextlib.asynccontextmanager
async def _kafka_admin(bootstrap: str) -> AsyncIterator[Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def _kafka_backend(kafka: _KafkaBroker) -> AsyncIterator[EventBackend]:
    from hybridmesh.events.backends.kafka import KafkaEventBackend

    bootstrap = await kafka.bootstrap()
    prefix = f"hmbench{uuid.uuid4().hex[:10]}"
    backend = KafkaEventBackend(
        f"kafka://{bootstrap}?{KAFKA_BUS_QUERY}&prefix={prefix}&partitions={KAFKA_PARTITIONS}"
    )
    try:
        yield backend
    finally:
        try:
            await backend.close()
        finally:
            await _delete_topics(bootstrap, prefix)


# -- the peers -----------------------------------------------------------------------------


async def _nats_py_run(count: int, progress: Progress, task: TaskID) -> dict[str, Any]:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

    marker = f"hmbenchraw{uuid.uuid4().hex[:10]}"
    stream, subject = marker.upper(), f"{marker}.{EVENT_TYPE}"
    pad = _peer_pad(_envelope_size())
    tally = _Tally(count)
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream(publish_async_max_pending=CHUNK)
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{marker}.>"]))
        psub = await js.pull_subscribe(
            subject,
            durable="bench",
            stream=stream,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=-1),
        )

        async def consume() -> None:
            while True:
                try:
                    messages = await psub.fetch(FETCH, timeout=1.0)
                except TimeoutError:  # nats-py raises asyncio's (the builtin) or its own
                    continue
                for message in messages:
                    body = json.loads(message.data)
                    tally.record(body["n"], body["ts"])
                    await message.ack()

        async def publish_chunk(start: int, size: int) -> None:
            published = time.time()
            pending = [
                await js.publish_async(subject, json.dumps(_peer_body(n, published, pad)).encode())
                for n in range(start, start + size)
            ]
            await asyncio.gather(*pending)  # every message of the chunk is stored

        consumer = asyncio.create_task(consume(), name="bench:nats-py")
        try:
            result = await _drive(publish_chunk, tally, progress, task, consumer)
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await consumer
        result["payload_bytes"] = len(json.dumps(_peer_body(0, time.time(), pad)))
        return result
    finally:
        try:
            await nc.close()
        finally:
            await _delete_streams(marker)


async def _faststream_run(count: int, progress: Progress, task: TaskID) -> dict[str, Any]:
    from faststream.nats import JStream, NatsBroker, PullSub

    marker = f"hmbenchfs{uuid.uuid4().hex[:10]}"
    stream, subject = marker.upper(), f"{marker}.{EVENT_TYPE}"
    pad = _peer_pad(_envelope_size())
    tally = _Tally(count)
    broker = NatsBroker(NATS_URL, logger=None)
    jstream = JStream(stream, subjects=[f"{marker}.>"])

    # A batch pull subscriber (about 1.5x the per-message one here). The default ack
    # policy acknowledges every message of the batch after the handler returns and rejects
    # them when it raises: the bus's explicit ack per settled batch. The subscriber waits
    # for a full batch up to ``timeout``, so that is kept short.
    @broker.subscriber(
        subject,
        stream=jstream,
        durable="bench",
        pull_sub=PullSub(FETCH, timeout=FASTSTREAM_BATCH_WAIT, batch=True),
    )
    async def handle(bodies: list[dict[str, Any]]) -> None:
        for body in bodies:
            tally.record(body["n"], body["ts"])

    async def publish_chunk(start: int, size: int) -> None:
        published = time.time()
        await asyncio.gather(
            *(
                broker.publish(_peer_body(n, published, pad), subject, stream=stream, timeout=30.0)
                for n in range(start, start + size)
            )
        )

    try:
        await broker.start()
        result = await _drive(publish_chunk, tally, progress, task)
        result["payload_bytes"] = len(json.dumps(_peer_body(0, time.time(), pad)))
        return result
    finally:
        try:
            await broker.stop()
        finally:
            await _delete_streams(marker)


def _kafka_group_settings() -> dict[str, Any]:
    """The consumer settings both Kafka peers share: a group, committed by hand, from the
    topic's start, with the short session the broker needs for a quick join."""
    return {
        "group_id": "bench",
        "auto_offset_reset": "earliest",
        "session_timeout_ms": KAFKA_SESSION_TIMEOUT_MS,
        "heartbeat_interval_ms": KAFKA_HEARTBEAT_MS,
    }


def _by_partition(start: int, size: int) -> dict[int, range]:
    """A chunk's event numbers per partition. The bus's events carry no partition key, so
    it spreads them over the partitions (by id); the peers spread them by number, unkeyed."""
    return {
        p: range(start + p, start + size, KAFKA_PARTITIONS)
        for p in range(min(KAFKA_PARTITIONS, size))
    }


async def _aiokafka_run(
    kafka: _KafkaBroker, count: int, progress: Progress, task: TaskID
) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    bootstrap = await kafka.bootstrap()
    topic = f"hmbenchraw{uuid.uuid4().hex[:10]}"
    pad = _peer_pad(_envelope_size())
    tally = _Tally(count)
    # acks="all" without idempotence, as every Kafka row (the broker refuses idempotence).
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_batch_size=KAFKA_BATCH_BYTES
    )
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, enable_auto_commit=False, **_kafka_group_settings()
    )

    async def consume() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=FETCH)
            for records in batches.values():
                for record in records:
                    body = json.loads(record.value)
                    tally.record(body["n"], body["ts"])
            if batches:
                await consumer.commit()  # the positions after what was just handled

    # One record batch per partition and chunk, sent with ``send_batch`` and confirmed
    # together: here about 1.6 times the throughput of a ``send`` per event with the
    # futures gathered, as it skips aiokafka's work per message.
    async def publish_chunk(start: int, size: int) -> None:
        published = time.time()
        sent = []
        for partition, numbers in _by_partition(start, size).items():
            batch = producer.create_batch()
            for n in numbers:
                value = json.dumps(_peer_body(n, published, pad)).encode()
                if batch.append(key=None, value=value, timestamp=None) is None:
                    raise RuntimeError("a chunk's share outgrew KAFKA_BATCH_BYTES")
            sent.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*sent)

    async with _kafka_topic(bootstrap, topic), contextlib.AsyncExitStack() as stack:
        await producer.start()
        stack.push_async_callback(producer.stop)
        await consumer.start()  # joins the group: returns once the partitions are assigned
        stack.push_async_callback(consumer.stop)
        consuming = asyncio.create_task(consume(), name="bench:aiokafka")
        try:
            result = await _drive(publish_chunk, tally, progress, task, consuming, warm_up=True)
        finally:
            consuming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await consuming
    result["payload_bytes"] = len(json.dumps(_peer_body(0, time.time(), pad)))
    return result


async def _faststream_kafka_run(
    kafka: _KafkaBroker, count: int, progress: Progress, task: TaskID
) -> dict[str, Any]:
    from faststream import AckPolicy
    from faststream.kafka import KafkaBroker

    bootstrap = await kafka.bootstrap()
    topic = f"hmbenchfs{uuid.uuid4().hex[:10]}"
    pad = _peer_pad(_envelope_size())
    tally = _Tally(count)
    broker = KafkaBroker(bootstrap, acks="all", max_batch_size=KAFKA_BATCH_BYTES, logger=None)

    # A batch subscriber. FastStream's default Kafka policy (ACK_FIRST) auto-commits in the
    # background; NACK_ON_ERROR turns auto-commit off and commits each batch after the
    # handler returns (and seeks back to it when the handler raises): the bus's settle.
    @broker.subscriber(
        topic,
        batch=True,
        max_records=FETCH,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        **_kafka_group_settings(),
    )
    async def handle(bodies: list[dict[str, Any]]) -> None:
        for body in bodies:
            tally.record(body["n"], body["ts"])

    # ``publish_batch`` per partition and chunk, confirmed together: FastStream's bulk
    # publish (one aiokafka record batch each); here about three times the throughput of
    # ``publish`` per event, gathered.
    async def publish_chunk(start: int, size: int) -> None:
        published = time.time()
        await asyncio.gather(
            *(
                broker.publish_batch(
                    *(_peer_body(n, published, pad) for n in numbers),
                    topic=topic,
                    partition=partition,
                )
                for partition, numbers in _by_partition(start, size).items()
            )
        )

    async with _kafka_topic(bootstrap, topic):
        try:
            await broker.start()  # joins the group before it returns
            result = await _drive(publish_chunk, tally, progress, task, warm_up=True)
        finally:
            await broker.stop()
    result["payload_bytes"] = len(json.dumps(_peer_body(0, time.time(), pad)))
    return result


# -- the SQL log's references --------------------------------------------------------------


Section = Callable[[int, Progress, TaskID], Awaitable[dict[str, Any]]]


def _log_rows(count: int) -> list[Row]:
    """The rows the bus appends for ``count`` events, as it would build them."""
    from hybridmesh.events.backends._sql_queries import partition_of

    trace = {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}
    rows: list[Row] = []
    for n in range(count):
        event = _event(n, time.time()).with_extensions(**trace)
        body = event.to_json().decode()
        rows.append((event.id, event.source, event.type, partition_of(event, 16), None, body, 0.0))
    return rows


def _plain(dialect: str) -> Section:
    async def section(count: int, progress: Progress, task: TaskID) -> dict[str, Any]:
        rows = _log_rows(count)
        if dialect == "sqlite":
            result = sqlite_loop(rows, CHUNK, SQL_FETCH)
        else:
            result = await postgres_loop(rows, CHUNK, SQL_FETCH)
        progress.update(task, completed=count)
        return result

    return section


# -- the run -------------------------------------------------------------------------------


def _on_bus(
    opener: Callable[[], contextlib.AbstractAsyncContextManager[EventBackend]],
    fetch: int = FETCH,
    *,
    warm_up: bool = False,
) -> Section:
    async def section(count: int, progress: Progress, task: TaskID) -> dict[str, Any]:
        async with opener() as backend:
            return await _bus_run(backend, count, progress, task, fetch, warm_up=warm_up)

    return section


def _kafka_sections(kafka: _KafkaBroker) -> dict[str, Section]:
    """The Kafka trio, all three on ``kafka``'s one broker."""
    return {
        "kafka": _on_bus(functools.partial(_kafka_backend, kafka), warm_up=True),
        "aiokafka": functools.partial(_aiokafka_run, kafka),
        "faststream_kafka": functools.partial(_faststream_kafka_run, kafka),
    }


def _size(quick: bool) -> tuple[int, int]:
    """Events per section, and rounds of the compared sections."""
    return (10_000, 1) if quick else (100_000, NATS_ROUNDS)


async def _run_rows(
    sections: dict[str, Section], schedule: list[str], count: int, progress: Progress
) -> dict[str, list[dict[str, Any]]]:
    """Run the sections in ``schedule``'s order; each one's rounds (figures or failure)."""
    attempts: dict[str, list[dict[str, Any]]] = {name: [] for name in sections}
    for name in schedule:
        label = SECTIONS[name]
        if schedule.count(name) > 1:
            label += f" (round {len(attempts[name]) + 1}/{schedule.count(name)})"
        task = progress.add_task(label, total=count)
        try:
            attempts[name].append(await sections[name](count, progress, task))
        except Exception as error:
            attempts[name].append(failed_round(error))
            print(f"events benchmark: {label} failed: {error!r}", file=sys.stderr)
        progress.remove_task(task)
    return attempts


async def run(*, quick: bool = False) -> dict[str, Any]:
    """Run the benchmark, write its JSON and its section of docs/benchmarks.md."""
    count, rounds = _size(quick)
    configure_tracing()  # the defaults: trace context propagates, spans are not recorded
    kafka = _KafkaBroker()
    sections: dict[str, Section] = {
        "sqlite": _on_bus(_sqlite_backend, SQL_FETCH),
        "sqlite_2p": _sqlite_two_processes,
        "sqlite_plain": _plain("sqlite"),
        "postgresql": _on_bus(_postgres_backend, SQL_FETCH),
        "postgresql_plain": _plain("postgresql"),
        "jetstream": _on_bus(_nats_backend),
        "nats_py": _nats_py_run,
        "faststream": _faststream_run,
        **_kafka_sections(kafka),
    }
    # The three on NATS are compared with each other, and so are the three on Kafka: they
    # run back to back, in rounds whose order alternates, and each keeps its best round
    # (load elsewhere on the machine only ever slows a round down).
    sql = ["sqlite_plain", "sqlite", "postgresql_plain", "postgresql"]
    schedule = [
        "sqlite_2p",
        *alternating(sql, rounds),
        *alternating(NATS_TRIO, rounds),
        *alternating(KAFKA_TRIO, rounds),
    ]
    results: dict[str, Any] = {
        "benchmark": "events",
        "machine": machine(),
        "events": count,
        "chunk": CHUNK,
        "fetch_batch": FETCH,
        "sql_fetch_batch": SQL_FETCH,
        "envelope_bytes": _envelope_size(),
        "nats_rounds": rounds,
        "kafka_partitions": KAFKA_PARTITIONS,
        "runs": {},
    }
    # The load is kept with the figures so that a disturbed run can be told apart.
    results["load_before"] = [round(x, 2) for x in os.getloadavg()]
    with Progress(transient=True) as progress:
        try:
            attempts = await _run_rows(sections, schedule, count, progress)
        finally:
            kafka.stop()
        results["narrow"] = {}
        for dialect in ("sqlite", "postgresql"):
            task = progress.add_task(f"narrow group beside other traffic, {dialect}", total=None)
            try:
                results["narrow"][dialect] = await _narrow.run_dialect(dialect)
            except Exception as error:
                results["narrow"][dialect] = failed_round(error)
                print(f"events benchmark: narrow, {dialect} failed: {error!r}", file=sys.stderr)
            progress.remove_task(task)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["runs"] = best_rounds(attempts)
    results["goals"] = _goals(results["runs"], results["narrow"])
    results["kafka_floor"] = _floor(results["runs"])
    write_json("events", results)
    write_section("events", _markdown(results, quick))
    return results


async def run_kafka(*, quick: bool = False) -> dict[str, Any]:
    """Run the Kafka trio alone, as in the whole benchmark, and print its figures.

    Nothing is written: the recorded figures come from the whole benchmark (``run``)."""
    count, rounds = _size(quick)
    configure_tracing()
    kafka = _KafkaBroker()
    with Progress(transient=True) as progress:
        try:
            attempts = await _run_rows(
                _kafka_sections(kafka), alternating(KAFKA_TRIO, rounds), count, progress
            )
        finally:
            kafka.stop()
    runs = best_rounds(attempts)
    goals = _kafka_goals(runs)
    print(f"{count:,} events of {_envelope_size()} bytes, best of {rounds} round(s)")
    for name in KAFKA_TRIO:
        run = runs[name]
        if "error" in run:
            print(f"{SECTIONS[name]}: failed: {run['error']}")
            continue
        print(
            f"{SECTIONS[name]}: {run['throughput']:,.0f} events/s, "
            f"{run['publish_rate']:,.0f} publish/s, p50 {run['p50_ms']:.1f} ms, "
            f"p95 {run['p95_ms']:.1f} ms, {run['duplicates']} duplicates"
        )
    for key, goal in goals.items():
        print(f"{key}: {goal['ratio']} (goal {goal['goal']}, met: {goal['met']})")
    floor = _floor(runs)
    print(_floor_text(runs, floor))
    return {"events": count, "runs": runs, "goals": goals, "kafka_floor": floor}


def _floor(runs: dict[str, Any]) -> dict[str, Any]:
    """The least a CloudEvents bus adds to raw aiokafka's work per event, and what each
    Kafka goal lets it add, from the rows' processor time (see ``_kafka_floor``)."""
    found: dict[str, Any] = {"parts": _kafka_floor.measure(_envelope_size())}
    cpu = {name: runs.get(name, {}).get("cpu_us_per_event") for name in KAFKA_TRIO}
    if cpu["aiokafka"] is not None and cpu["faststream_kafka"] is not None:
        found["budgets"] = _kafka_floor.budgets(
            cpu["aiokafka"], cpu["faststream_kafka"], AIOKAFKA_GOAL
        )
    return found


def _floor_text(runs: dict[str, Any], floor: dict[str, Any]) -> str:
    cpu = ", ".join(
        f"{SECTIONS[name]} {runs[name]['cpu_us_per_event']:.1f}"
        for name in KAFKA_TRIO
        if "cpu_us_per_event" in runs.get(name, {})
    )
    parts = floor["parts"]
    pieces = ", ".join(f"{name} {value:+.2f}" for name, value in parts.items() if name != "floor")
    text = (
        f"Processor time an event, µs (this process): {cpu}. The least a CloudEvents bus "
        f"adds to raw aiokafka's work: {parts['floor']:.2f} µs ({pieces})."
    )
    budgets = floor.get("budgets")
    if budgets is not None:
        text += (
            f" The goals let it add {budgets['vs_raw']:.2f} µs (≥ {AIOKAFKA_GOAL} times raw "
            f"aiokafka) and {budgets['vs_faststream']:.2f} µs "
            f"(≥ {FASTSTREAM_GOAL} times FastStream)."
        )
    return text


def _goal(value: float | None, goal: float, *, at_most: bool = False) -> dict[str, Any]:
    met = None if value is None else (value <= goal if at_most else value >= goal)
    return {"ratio": value, "goal": goal, "met": met}


def _goals(runs: dict[str, Any], narrow: dict[str, Any]) -> dict[str, Any]:
    bus = figure(runs, "jetstream")
    lite, pg = figure(runs, "sqlite_plain"), figure(runs, "postgresql_plain")
    goals = {
        "jetstream_vs_nats_py": _goal(ratio(bus, figure(runs, "nats_py")), NATS_PY_GOAL),
        "jetstream_vs_faststream": _goal(ratio(bus, figure(runs, "faststream")), FASTSTREAM_GOAL),
        "sqlite_vs_plain": _goal(ratio(figure(runs, "sqlite"), lite), SQL_PLAIN_GOAL),
        "sqlite_2p_vs_plain": _goal(ratio(figure(runs, "sqlite_2p"), lite), SQL_PLAIN_GOAL),
        "postgresql_vs_plain": _goal(ratio(figure(runs, "postgresql"), pg), SQL_PLAIN_GOAL),
        **_kafka_goals(runs),
    }
    for dialect, found in narrow.items():
        if "error" in found:
            continue
        goals[f"narrow_{dialect}_p95_ratio"] = _goal(
            found["steady"]["p95_ratio"], _narrow.P95_GOAL, at_most=True
        )
        caught = found["catch_up"]
        slowest = max(caught["group_seconds"], caught["reader_seconds"])
        goals[f"narrow_{dialect}_catch_up_seconds"] = _goal(
            slowest, _narrow.CATCH_UP_GOAL, at_most=True
        )
    return goals


def _kafka_goals(runs: dict[str, Any]) -> dict[str, Any]:
    bus = figure(runs, "kafka")
    return {
        "kafka_vs_aiokafka": _goal(ratio(bus, figure(runs, "aiokafka")), AIOKAFKA_GOAL),
        "kafka_vs_faststream": _goal(ratio(bus, figure(runs, "faststream_kafka")), FASTSTREAM_GOAL),
    }


def _markdown(results: dict[str, Any], quick: bool) -> str:
    flag = " --quick" if quick else ""
    runs, goals = results["runs"], results["goals"]
    info = results["machine"]
    rounds = (
        f" The NATS trio, the Kafka trio and the SQL rows with their plain loops run back "
        f"to back in "
        f"{results['nats_rounds']} rounds of alternating order; each shows its best round."
        if results["nats_rounds"] > 1
        else ""
    )
    intro = (
        f"{results['events']:,} events of {results['envelope_bytes']} bytes (a CloudEvent in "
        f"structured JSON) published with `publish_many` in chunks of {results['chunk']:,} "
        "from one task while one consumer group handles them concurrently "
        f"(fetch batch {results['fetch_batch']} on NATS and Kafka, as for their peers; "
        f"{results['sql_fetch_batch']} on the SQL log). *events/s* is distinct events handled per "
        "second from the first publish to the last handle; latency is publish→handled "
        "(the publish time travels in the event; as publishing outruns handling, it mostly "
        "measures the backlog); *publish/s* is the publishing task's own rate while "
        "consuming goes on. The peers run on the same NATS server in the same run with "
        "bodies of the same size: raw nats-py (`publish_async`, confirmed per chunk; durable "
        "pull consumer, `fetch` + `ack` per message) and FastStream (`NatsBroker`, JetStream "
        "batch pull subscriber, ack after the handler). On Kafka, one Tansu broker "
        "(`LocalKafka`, in-memory storage) serves the bus and its peers, each on topics of "
        f"{results['kafka_partitions']} partitions, `acks=all` without idempotence: raw "
        "aiokafka (`send_batch`, one batch per partition per chunk, confirmed per chunk; a "
        "consumer group, `getmany` + `commit` after each) and FastStream (`KafkaBroker`, "
        "`publish_batch` per partition; a batch subscriber committing after the handler). "
        "Each Kafka row first sends one event through untimed, so that joining the group "
        "is not counted. The SQL log's reference is its "
        "database without the bus: a plain loop (`sqlite3`, asyncpg) that appends the same "
        "rows (same bodies, a table with the log's columns and indexes) in the same chunks, "
        "one transaction each, and reads each chunk back in seq order in batches of the same "
        f"fetch size.{rounds} The second SQLite row "
        "runs the consumer group in its own process on the same database file, as a "
        "deployment runs a worker beside the publishing service; the other rows run "
        "publisher and consumer in one process. "
        f"Command: `make bench` (`python -m benchmarks events{flag}`). "
        f"Machine: {info['cpus']} CPUs, Python {info['python']}, {info['date']}; load "
        f"average {results['load_before'][0]:.2f} before, {results['load_after'][0]:.2f} after."
    )
    lines = [
        "## Event bus (`benchmarks/events.py`)",
        "",
        intro,
        "",
        "| backend / peer | events | seconds | events/s | publish/s | p50 ms | p95 ms "
        "| ratio | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def verdict(met: bool | None) -> str:
        return "n/a" if met is None else ("met" if met else "missed")

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    def vs_plain(key: str, loop: str) -> tuple[str, str]:
        goal = goals[key]
        shown = f"{fmt(goal['ratio'])} vs {loop}"
        return shown, f"≥ {SQL_PLAIN_GOAL:.2f} ({verdict(goal['met'])})"

    raw, fs = goals["jetstream_vs_nats_py"], goals["jetstream_vs_faststream"]
    kraw, kfs = goals["kafka_vs_aiokafka"], goals["kafka_vs_faststream"]
    extra = {
        "sqlite": vs_plain("sqlite_vs_plain", "sqlite3"),
        "sqlite_2p": vs_plain("sqlite_2p_vs_plain", "sqlite3"),
        "sqlite_plain": ("1.00", "reference"),
        "postgresql": vs_plain("postgresql_vs_plain", "asyncpg"),
        "postgresql_plain": ("1.00", "reference"),
        "jetstream": (
            f"{fmt(raw['ratio'])} vs nats-py; {fmt(fs['ratio'])} vs FastStream",
            f"≥ {NATS_PY_GOAL:.2f} ({verdict(raw['met'])}); "
            f"≥ {FASTSTREAM_GOAL:.2f} ({verdict(fs['met'])})",
        ),
        "nats_py": ("1.00", "peer"),
        "faststream": ("1.00", "peer"),
        "kafka": (
            f"{fmt(kraw['ratio'])} vs aiokafka; {fmt(kfs['ratio'])} vs FastStream",
            f"≥ {AIOKAFKA_GOAL:.2f} ({verdict(kraw['met'])}); "
            f"≥ {FASTSTREAM_GOAL:.2f} ({verdict(kfs['met'])})",
        ),
        "aiokafka": ("1.00", "peer"),
        "faststream_kafka": ("1.00", "peer"),
    }
    for name, label in SECTIONS.items():
        run = runs.get(name, {"error": "not run"})
        shown, goal = extra[name]
        if "error" in run:
            error = str(run["error"]).replace("|", "\\|").replace("\n", " ")[:160]
            lines.append(f"| {label} | failed: {error} | | | | | | — | {goal} |")
            continue
        if "publish_rate" not in run:  # a plain loop: appends and reads, no latency
            lines.append(
                f"| {label} | {run['events']:,} | {run['seconds']:.2f} "
                f"| {run['throughput']:,.0f} | — | — | — | {shown} | {goal} |"
            )
            continue
        lines.append(
            f"| {label} | {run['events']:,} | {run['seconds']:.2f} | {run['throughput']:,.0f} "
            f"| {run['publish_rate']:,.0f} | {run['p50_ms']:.1f} | {run['p95_ms']:.1f} "
            f"| {shown} | {goal} |"
        )
    lines += ["", _floor_text(runs, results["kafka_floor"])]
    lines += ["", *_narrow_markdown(results["narrow"], goals, verdict)]
    return "\n".join(lines)


def _narrow_markdown(
    narrow: dict[str, Any], goals: dict[str, Any], verdict: Callable[[bool | None], str]
) -> list[str]:
    lines = [
        "**A narrow group beside other traffic.** A consumer group wanting one type "
        f"(`needle.*`, {_narrow.NEEDLE_RATE} events/s published in this process, "
        f"{_narrow.NEEDLES} per phase) runs alone, then beside another process that "
        f"publishes {_narrow.NOISE_RATE:,} events/s of another type on the same database "
        "and consumes them with its own group (`noise.*`), and *elsewhere*: beside the same "
        "process working on another database (another file; another database of the same "
        "server), which shows what sharing the machine costs apart from sharing the log. "
        "Phases of each condition alternate (alone, beside, elsewhere, elsewhere, beside, "
        "alone, twice over) and are pooled. *Catch-up*: a new group from the earliest "
        "event, and a read without a group (`hybridmesh events tail`), each reaching the "
        "one `needle.*` event "
        f"past {_narrow.CATCH_UP_NOISE:,} events of another type. Goals: p95 beside at most "
        f"{_narrow.P95_GOAL:.1f} times p95 alone; catch-up under {_narrow.CATCH_UP_GOAL} s.",
        "",
        "| database | p50 / p95 ms alone | p50 / p95 ms beside | p95 ratio (goal) "
        "| p50 / p95 ms elsewhere (ratio) | other traffic: events/s, its group's p95 ms "
        "| catch-up s: group, read (goal) |",
        "|---|---|---|---|---|---|---|",
    ]
    for dialect, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        found = narrow.get(dialect, {"error": "not run"})
        if "error" in found:
            error = str(found["error"]).replace("|", "\\|").replace("\n", " ")[:160]
            lines.append(f"| {label} | failed: {error} | | | | | |")
            continue
        steady, caught = found["steady"], found["catch_up"]
        latency, timing = (
            goals[f"narrow_{dialect}_p95_ratio"],
            goals[f"narrow_{dialect}_catch_up_seconds"],
        )
        lines.append(
            f"| {label} | {steady['alone']['p50_ms']:.1f} / {steady['alone']['p95_ms']:.1f} "
            f"| {steady['beside']['p50_ms']:.1f} / {steady['beside']['p95_ms']:.1f} "
            f"| {steady['p95_ratio']:.2f} (≤ {_narrow.P95_GOAL:.1f}: {verdict(latency['met'])}) "
            f"| {steady['elsewhere']['p50_ms']:.1f} / {steady['elsewhere']['p95_ms']:.1f} "
            f"({steady['elsewhere_p95_ratio']:.2f}) "
            f"| {steady['noise_rate']:,.0f}, {steady['noise_group_p95_ms']:.1f} "
            f"| {caught['group_seconds']:.3f}, {caught['reader_seconds']:.3f} "
            f"(< {_narrow.CATCH_UP_GOAL}: {verdict(timing['met'])}) |"
        )
    return lines
