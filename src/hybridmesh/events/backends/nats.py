"""The NATS JetStream event backend: for the scaled mode, where workers run on many machines.

Events live in one stream, ``<PREFIX>_EVENTS``; an event of type ``user.registered`` in
partition 3 is on ``<prefix>.ev.pub.3.user.registered`` (the layout is drawn in
:mod:`._nats_layout`). Publishing sets ``Nats-Msg-Id`` to a hash of the event's (source, id),
so the stream drops a re-publish within ``dedupe_window`` seconds. A replay to one group goes
to ``<prefix>.ev.r-<group>.<partition>.<type>`` and skips the dedupe.

Each consumer group has a durable pull consumer per partition, filtered on the partition and
the group's pattern, with explicit acks and the group's ``ack_wait``. A lease token per
partition (:mod:`._nats_lease`) makes one process at a time pull a partition, which keeps
same-key events in order across processes and behind a retried event:

- ``fetch`` takes free lease tokens, pulls each leased partition (``no_wait``), and returns one
  batch per partition that had events;
- ``settle`` acks the handled events, stores a dead letter before terminating its event,
  naks the rest in log order (they come back in that order) and releases the lease; for a
  retry the lease token carries the delay and is nak'd with it, so the whole partition (the
  retried event and everything after it) waits on the server;
- an unsettled batch expires after ``ack_wait``: JetStream delivers it again, with its
  delivery count (the attempt) one higher, to whichever process takes the lease next.
- a batch fetched before the server closed the connection is settled on the new one (acks
  go by reply subject), and leases the closed connection refused to release are released
  on the new one, so neither waits for ``ack_wait``.

``Delivery.attempt`` is JetStream's delivery count less the deliveries that were releases
(events handed back untouched behind a retried one), which the lease token keeps count of.

The server's ``max_deliver`` is unlimited: the bus decides when an event is dead (after the
group's ``max_deliveries`` attempts), so nothing is dropped by the server without a dead
letter. Messages on event subjects that are not CloudEvents (someone published raw bytes)
come out as deliveries with ``event=None`` and go to the dead letters.

All processes of a deployment must use the same ``prefix`` and ``partitions``. The events
stream has no limits by default (events stay until an operator sets ``max_age`` or similar).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import nats
from nats import errors as nats_errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js import errors as js_errors
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import ConfigurationError, Problem, ValidationError
from hybridmesh.events.backend import (
    BackendUnavailableError,
    DeadLetter,
    GroupSpec,
    LogSpan,
    PartitionBatch,
    Settlement,
)
from hybridmesh.events.backends._nats_consume import (
    LEASE_GRACE,
    WRONG_LAST_SEQUENCE,
    GroupReader,
    GroupRef,
    Unsent,
)
from hybridmesh.events.backends._nats_dlq import DeadLetterStore
from hybridmesh.events.backends._nats_layout import (
    PUBLISHED,
    Layout,
    group_token,
    message_id,
    partition_of,
    replay_origin,
)
from hybridmesh.events.backends._nats_lease import LeaseState
from hybridmesh.events.backends._nats_reader import NatsLogReader
from hybridmesh.events.backends._nats_wire import (
    API_PREFIX,
    JetStreamError,
    Link,
    LinkChanged,
    Publisher,
    PullClient,
)
from hybridmesh.events.envelope import CloudEvent, EventFormatError
from hybridmesh.events.subjects import validate_pattern
from hybridmesh.observability import get_logger

log = get_logger("hybridmesh.events.nats")

_STREAM_IN_USE = 10058  # the stream exists with another configuration
_MAX_ACK_PENDING = 20_000
_CONNECT_ATTEMPTS = 3  # at start; after that, reconnects never stop
_REOPEN_ATTEMPTS = 1  # opening again a connection the server closed: fail fast, try later
_RECONNECT_WAIT = 0.5  # seconds between reconnect attempts
_CHECK_TIMEOUT = 2.0  # seconds a health check waits for JetStream
#: The bytes NATS adds to a message's headers around each name and value, and once.
_HEADER_LINE = len(": \r\n")
_HEADER_FRAME = len("NATS/1.0\r\n\r\n")


@dataclass(frozen=True)
class _Connection:
    """What a started backend works with."""

    nc: NATS
    js: JetStreamContext
    publisher: Publisher
    reader: GroupReader
    letters: DeadLetterStore
    link: Link
    pull: PullClient


class NatsEventBackend:
    """Events on NATS JetStream (2.9 or later).

    ``prefix`` names the streams and subjects (several deployments can share a server);
    ``partitions`` is how many ordered lanes each group has (default 8): more lets more
    processes work on a group at once. ``replicas`` is the streams' replication (1 for a
    single server, 3 in a cluster). ``dedupe_window`` is how long a (source, id) is
    remembered (default 2 minutes).
    """

    name = "nats"

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        prefix: str = "hybridmesh",
        partitions: int = 8,
        replicas: int = 1,
        dedupe_window: float = 120.0,
        request_timeout: float = 10.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if replicas < 1 or dedupe_window <= 0 or request_timeout <= 0:
            raise ConfigurationError(
                "replicas must be at least 1, dedupe_window and request_timeout positive"
            )
        self.url = url
        self.layout = Layout(prefix, partitions)
        self.replicas = replicas
        self.dedupe_window = dedupe_window
        self.request_timeout = request_timeout
        self.clock = clock
        self._conn: _Connection | None = None
        self._reopening = asyncio.Lock()
        self._closing = False
        self._groups: dict[str, GroupRef] = {}
        self._unsent = Unsent()  # naks a closed connection refused, for the next one

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and create the streams that are missing (idempotent)."""
        self._closing = False
        if self._conn is None:
            self._conn = await self._open(_CONNECT_ATTEMPTS)
        await self._ensure_streams()

    async def _open(self, attempts: int) -> _Connection:
        link = Link()
        nc = await self._connect(link, attempts)
        js = nc.jetstream(timeout=self.request_timeout)
        pull = PullClient(nc, timeout=self.request_timeout)
        letters = DeadLetterStore(nc, js, pull, self.layout, self.clock)
        reader = GroupReader(
            nc=nc,
            js=js,
            pull=pull,
            letters=letters,
            layout=self.layout,
            clock=self.clock,
            request_timeout=self.request_timeout,
            unsent=self._unsent,
        )
        publisher = Publisher(nc, timeout=self.request_timeout)
        return _Connection(nc, js, publisher, reader, letters, link, pull)

    async def _ensure_streams(self) -> None:
        layout = self.layout
        await self._ensure_stream(
            StreamConfig(
                name=layout.events_stream,
                subjects=layout.events_subjects,
                duplicate_window=self.dedupe_window,
            )
        )
        await self._ensure_stream(
            StreamConfig(
                name=layout.leases_stream,
                subjects=[f"{layout.prefix}.lease.>"],
                max_msgs_per_subject=1,
            )
        )
        await self._ensure_stream(
            StreamConfig(
                name=layout.dlq_stream,
                subjects=[f"{layout.prefix}.dlq.>"],
                max_msgs_per_subject=1,
                allow_direct=True,
                duplicate_window=self.dedupe_window,
            )
        )

    async def _connect(self, link: Link, attempts: int) -> NATS:
        async def on_error(error: Exception) -> None:
            link.last_error = f"{type(error).__name__}: {error}"
            log.warning("NATS %s: %s", self.url, link.last_error)

        try:
            nc = await nats.connect(
                self.url,
                name="hybridmesh",
                error_cb=on_error,
                disconnected_cb=link.on_disconnected,
                reconnected_cb=link.on_reconnected,
                closed_cb=link.on_closed,
                connect_timeout=self.request_timeout,
                reconnect_time_wait=_RECONNECT_WAIT,
                max_reconnect_attempts=attempts,
            )
        except Exception as error:
            raise ConfigurationError(
                f"cannot reach NATS at {self.url}: {type(error).__name__}: {error}"
            ) from error
        # Give up quickly when connecting (above), but once connected keep reconnecting for
        # as long as it takes: a worker outlives a restart of the NATS server.
        nc.options["max_reconnect_attempts"] = -1
        return nc

    async def close(self) -> None:
        """Close the connection after flushing what is in flight (acks, naks)."""
        self._closing = True
        conn, self._conn = self._conn, None
        self._groups.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                await (conn.nc.drain() if conn.nc.is_connected else conn.nc.close())

    async def _live(self) -> _Connection:
        """The connection, opened again when it was closed under the backend.

        nats-py reconnects by itself after a dropped connection, but when the server
        refuses something and closes the connection (a protocol error), the client stays
        closed for good. Then the next use opens a new connection (with the streams and,
        at the next fetch, the groups' consumers made again if the server lost them).
        Raises :class:`BackendUnavailableError` while that fails.
        """
        conn = self._conn
        if conn is not None and not conn.nc.is_closed:
            return conn
        async with self._reopening:
            if self._conn is not None and self._conn.nc.is_closed and not self._closing:
                closed = self._conn
                log.warning(
                    "NATS %s: the connection was closed (%s); connecting again",
                    self.url,
                    closed.link.last_error or closed.nc.last_error or "no error given",
                )
                try:
                    self._conn = await self._open(_REOPEN_ATTEMPTS)
                    self._groups.clear()
                    await self._ensure_streams()
                except Exception as error:
                    raise BackendUnavailableError(
                        f"NATS at {self.url} cannot be reached: {type(error).__name__}: {error}"
                    ) from error
            if self._conn is None:
                raise ConfigurationError("the NATS event backend is not started (call start())")
            return self._conn

    async def check(self) -> None:
        """Raise :class:`BackendUnavailableError` unless JetStream answers now with the
        events stream: what publishing and fetching need."""
        conn = await self._live()
        if not conn.nc.is_connected:
            raise BackendUnavailableError(f"NATS at {self.url}: disconnected, reconnecting")
        try:
            reply = await conn.nc.request(
                f"{API_PREFIX}.STREAM.INFO.{self.layout.events_stream}",
                b"",
                timeout=min(self.request_timeout, _CHECK_TIMEOUT),
            )
        except Exception as error:
            raise BackendUnavailableError(
                f"NATS at {self.url} did not answer: {type(error).__name__}: {error}"
            ) from error
        if b'"error"' in reply.data:
            raise BackendUnavailableError(
                f"NATS at {self.url}: stream {self.layout.events_stream}: {reply.data[:200]!r}"
            )

    async def _ensure_stream(self, config: StreamConfig) -> None:
        config.num_replicas = self.replicas
        config.storage = StorageType.FILE
        config.retention = RetentionPolicy.LIMITS
        config.discard = DiscardPolicy.OLD
        try:
            await (await self._live()).js.add_stream(config)
        except js_errors.BadRequestError as error:
            if error.err_code != _STREAM_IN_USE:
                raise
            await (await self._live()).js.update_stream(config)

    def _connected(self) -> _Connection:
        if self._conn is None:
            raise ConfigurationError("the NATS event backend is not started (call start())")
        return self._conn

    async def _up(self) -> _Connection:
        """The live connection if it is connected now; else :class:`BackendUnavailableError`
        at once, rather than requests that wait for a reconnect."""
        conn = await self._live()
        if not conn.nc.is_connected:
            raise BackendUnavailableError(f"NATS at {self.url}: disconnected, reconnecting")
        return conn

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, events: Sequence[CloudEvent], *, group: str | None = None) -> None:
        """Append ``events`` in order, pipelined; returns once JetStream stored them all.

        Raises ``EventFormatError`` (before sending anything) for an invalid event or one
        too large for the server's ``max_payload``. When the connection drops meanwhile,
        the whole batch is sent again once it is back (the stream drops what it already
        has by ``Nats-Msg-Id``), until ``request_timeout`` has passed; then
        :class:`BackendUnavailableError`: nothing is acknowledged that was not stored.
        """
        for event in events:
            event.validate()
        if not events:
            return
        origin = PUBLISHED if group is None else replay_origin(group_token(group))
        partitions = self.layout.partitions
        messages = [
            (
                self.layout.event_subject(origin, partition_of(e, partitions), e.type),
                e.to_json(),
                {"Nats-Msg-Id": message_id(e)} if group is None else None,
            )
            for e in events
        ]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout + len(messages) / 1000
        while True:
            conn = await self._live()
            _check_sizes(messages, conn.nc.max_payload)
            try:
                await conn.publisher.publish(
                    messages, link=conn.link, within=deadline - loop.time()
                )
                return
            except (LinkChanged, TimeoutError, nats_errors.Error) as error:
                left = deadline - loop.time()
                if left <= 0:
                    raise BackendUnavailableError(
                        f"NATS at {self.url} did not store the events in time: "
                        f"{type(error).__name__}: {error}"
                    ) from error
                log.warning("NATS %s: publishing again after %s", self.url, error)
                with contextlib.suppress(TimeoutError):
                    await conn.link.wait_up(left)

    # -- groups ----------------------------------------------------------------------------

    async def ensure_group(self, spec: GroupSpec) -> None:
        """Create the group's consumers and lease tokens if missing; update the consumers'
        pattern, ``ack_wait`` and limits. Where a group starts is kept once created."""
        validate_pattern(spec.pattern)
        if spec.max_deliveries < 1 or spec.ack_wait <= 0:
            raise ValidationError(
                f"group {spec.name!r}: max_deliveries must be at least 1 and ack_wait positive"
            )
        layout, token = self.layout, group_token(spec.name)
        start = DeliverPolicy.NEW if spec.start == "latest" else DeliverPolicy.ALL
        consumers = [
            self._ensure_consumer(
                layout.events_stream,
                ConsumerConfig(
                    durable_name=layout.consumer(token, p),
                    filter_subject=layout.consumer_filter(p, spec.pattern),
                    deliver_policy=start,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=spec.ack_wait,
                    max_deliver=-1,
                    max_ack_pending=_MAX_ACK_PENDING,
                ),
            )
            for p in range(layout.partitions)
        ]
        lease = ConsumerConfig(
            durable_name=layout.lease_consumer(token),
            filter_subject=layout.lease_filter(token),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=spec.ack_wait + LEASE_GRACE,
            max_deliver=-1,
        )
        await asyncio.gather(*consumers, self._ensure_consumer(layout.leases_stream, lease))
        await asyncio.gather(*(self._plant_lease(token, p) for p in range(layout.partitions)))
        self._groups[spec.name] = GroupRef(spec, token)

    async def delete_group(self, name: str) -> None:
        """Delete the group's consumers and lease tokens (its dead letters stay); made again,
        the group starts over. Unknown names are fine."""
        js, layout, token = (await self._live()).js, self.layout, group_token(name)
        self._groups.pop(name, None)

        async def delete(stream: str, consumer: str) -> None:
            with contextlib.suppress(js_errors.NotFoundError):
                await js.delete_consumer(stream, consumer)

        await delete(layout.leases_stream, layout.lease_consumer(token))
        await asyncio.gather(
            *(
                delete(layout.events_stream, layout.consumer(token, p))
                for p in range(layout.partitions)
            )
        )
        await js.purge_stream(layout.leases_stream, subject=layout.lease_filter(token))

    async def _ensure_consumer(self, stream: str, config: ConsumerConfig) -> None:
        js = (await self._live()).js
        assert config.durable_name is not None
        try:
            info = await js.consumer_info(stream, config.durable_name)
        except js_errors.NotFoundError:
            pass
        else:  # where it starts cannot change; the rest follows the spec
            config.deliver_policy = info.config.deliver_policy
            config.opt_start_seq = info.config.opt_start_seq
            config.opt_start_time = info.config.opt_start_time
        await js.add_consumer(stream, config)

    async def _plant_lease(self, token: str, partition: int) -> None:
        """Publish the partition's lease token unless it exists (never a second one)."""
        try:
            await (await self._live()).js.publish(
                self.layout.lease_subject(token, partition),
                LeaseState().encode(),
                headers={"Nats-Expected-Last-Subject-Sequence": "0"},
            )
        except js_errors.APIError as error:
            if error.err_code != WRONG_LAST_SEQUENCE:
                raise

    async def _group(self, spec: GroupSpec) -> GroupRef:
        group = self._groups.get(spec.name)
        if group is None or group.spec != spec:
            await self.ensure_group(spec)
            group = self._groups[spec.name]
        return group

    # -- reading without a group -----------------------------------------------------------

    async def open_reader(
        self, pattern: str, *, start: Literal["earliest", "latest"] = "latest"
    ) -> NatsLogReader:
        """A reader of the events whose type matches ``pattern`` on an ephemeral consumer
        (see :mod:`._nats_reader`): deleted when the reader closes, or by the server once
        it has not been pulled for ``READER_INACTIVE`` seconds."""
        validate_pattern(pattern)
        conn = self._connected()
        return await NatsLogReader.open(conn.nc, conn.js, conn.pull, self.layout, pattern, start)

    async def log_span(self) -> LogSpan:
        """The first and last stream sequence the events stream holds now: its limits
        (``max_age``, ``max_msgs``, ...) and purges remove the oldest messages."""
        info = await (await self._live()).js.stream_info(self.layout.events_stream)
        state = info.state
        if not state.messages:
            return LogSpan(None, None)
        return LogSpan(state.first_seq, state.last_seq)

    # -- consuming -------------------------------------------------------------------------

    async def fetch(
        self, spec: GroupSpec, consumer: str, *, max_events: int, wait: float
    ) -> list[PartitionBatch]:
        """Lease the partitions that are free and have events, up to ``max_events`` in all,
        waiting up to ``wait`` seconds for some; one batch per leased partition."""
        group = await self._group(spec)
        try:
            conn = await self._up()
            if self._unsent.replies:
                await conn.reader.send_unsent()
            return await conn.reader.fetch(group, max_events, wait)
        except (JetStreamError, TimeoutError):
            # A pull on a deleted consumer is refused or goes unanswered: another process may
            # have deleted the group. The next fetch makes it again (ensure_group).
            self._groups.pop(spec.name, None)
            raise

    async def settle(self, batch: PartitionBatch, settlement: Settlement) -> None:
        """Ack the handled events; retry, dead-letter or release the rest; free the lease.

        Settling a batch whose lease ran out (it took longer than ``ack_wait``) only acks
        what was handled: the rest has gone to another consumer already.
        """
        await (await self._live()).reader.settle(batch, settlement)

    # -- dead letters ----------------------------------------------------------------------

    async def dead_letters(self, *, group: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The dead letters (of one group, or all), newest first."""
        token = None if group is None else group_token(group)
        letters = await (await self._live()).letters.newest(token, limit)
        return [d for d in letters if group is None or d.group == group]

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter:
        """One dead letter; raises ``NotFoundError``."""
        return await (await self._live()).letters.get(dead_letter_id)

    async def replay(self, dead_letter_id: str) -> DeadLetter:
        """Publish the dead letter's event again to its group only, and mark it replayed.

        Raises ``NotFoundError``, and ``ValidationError`` when the body is not a CloudEvent.
        """
        letter = await self.get_dead_letter(dead_letter_id)
        event = letter.event or CloudEvent.from_json(letter.body)
        await self.publish([event], group=letter.group)
        return await (await self._live()).letters.mark_replayed(letter)

    async def purge(self, *, group: str | None = None) -> int:
        """Delete dead letters (of one group, or all); returns how many."""
        return await (await self._live()).letters.purge(
            None if group is None else group_token(group)
        )


def _check_sizes(
    messages: Sequence[tuple[str, bytes, dict[str, str] | None]], max_payload: int
) -> None:
    """Raise ``EventFormatError`` for a message larger than the server takes (headers
    included), before anything is sent: the server would close the connection on it."""
    problems = []
    for index, (_subject, payload, headers) in enumerate(messages):
        size = len(payload)
        if headers:
            size += _HEADER_FRAME + sum(len(k) + len(v) + _HEADER_LINE for k, v in headers.items())
        if size > max_payload:
            problems.append(
                Problem(
                    f"the event is {size} bytes on the wire; this NATS server takes at most "
                    f"{max_payload} (its max_payload)",
                    field="data" if len(messages) == 1 else f"[{index}].data",
                )
            )
    if problems:
        raise EventFormatError(problems)


__all__ = ["NatsEventBackend"]
