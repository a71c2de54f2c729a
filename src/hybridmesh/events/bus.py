"""The event bus: publish CloudEvents, and hand them to subscribed consumer groups.

Delivery is at least once. Within a group, each event goes to one consumer, and events that
share a ``partitionkey`` are handled in order. A handler answers with :data:`ACK` (or
``None``), :class:`Drop` (done, not wanted) or :class:`Retry` (again later); an exception is
a retry. Retries back off exponentially; after the group's ``max_deliveries`` attempts the
event goes to the dead letters with the reason and the attempts, where it can be listed,
replayed to its group, or purged. Nothing is dropped silently: an event that cannot even be
parsed goes to the dead letters too.

The bus works the same on every backend (:mod:`hybridmesh.events.backend`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from opentelemetry.trace import SpanKind

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import ConfigurationError, Problem, ValidationError
from hybridmesh.core.ids import new_id
from hybridmesh.core.names import name_problem
from hybridmesh.events.backend import (
    DeadLetter,
    Delivery,
    EventBackend,
    EventReader,
    GroupSpec,
    LogSpan,
    PartitionBatch,
    Settlement,
)
from hybridmesh.events.backends._sql_log import LogRecorder, LogRow
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.events.limits import extension_value
from hybridmesh.events.subjects import matches, validate_pattern
from hybridmesh.observability import (
    MeshMetrics,
    bind_context,
    continue_trace,
    get_logger,
    inject_headers,
    start_call_span,
    tracing_records,
)
from hybridmesh.store import Statement, Store

if TYPE_CHECKING:
    from hybridmesh.contracts.recorder import ContractRecorder

log = get_logger("hybridmesh.events")
#: Most characters of a dead letter's reason (the handler's error text is cut to fit).
MAX_REASON = 1000
#: The longest pause between failed fetches of a group (seconds).
_MAX_FETCH_PAUSE = 5.0
#: Stands in for the consumer span when spans are not recorded: the publisher's trace
#: context is still made current, so logs carry its trace id.
_NO_SPAN = contextlib.nullcontext()
#: The delivery whose event a handler is running for (see :func:`current_delivery`).
_DELIVERY: ContextVar[Delivery | None] = ContextVar("hybridmesh_delivery", default=None)


@dataclass(frozen=True)
class Ack:
    """The event was handled."""


@dataclass(frozen=True)
class Drop:
    """The event is not wanted; it counts as handled and is not retried."""

    reason: str = ""


@dataclass(frozen=True)
class Retry:
    """Handle the event again later: after ``delay`` seconds, or the group's backoff."""

    delay: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class BusHealth:
    """What :meth:`EventBus.health` found. ``status`` is ``ok``, ``stopped`` (not running)
    or ``failing``; ``error`` is why the backend's check failed; ``failing_groups`` maps
    each group whose latest fetch failed to why."""

    ready: bool
    status: str
    backend: str
    error: str | None
    failing_groups: dict[str, str]


ACK = Ack()
HandlerResult = Ack | Drop | Retry | None
Handler = Callable[[CloudEvent], Awaitable[HandlerResult]]


def current_delivery() -> Delivery | None:
    """Inside a handler, the delivery of the event it was called with: its
    :attr:`~hybridmesh.events.backend.Delivery.position` in the log and its ``attempt``.
    None outside a handler. For handlers that keep a checkpoint of where they are in the
    log, such as read-model projections; most handlers need only the event."""
    return _DELIVERY.get()


@dataclass
class Subscription:
    """A handler attached to a consumer group, and what it has done so far."""

    spec: GroupSpec
    handler: Handler
    batch_size: int = 100
    backoff_initial: float = 0.5
    backoff_max: float = 60.0
    ephemeral: bool = False
    handled: int = 0
    retried: int = 0
    dead_lettered: int = 0
    #: Why the latest fetch failed (None once one succeeds), and how many in a row did.
    fetch_error: str | None = None
    fetch_failures: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The wait before delivery ``attempt + 1``: exponential, with jitter of ±20 %."""
        base = min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1))
        return float(base * (0.8 + 0.4 * rng.random()))


class EventBus:
    """Publishes to and consumes from one :class:`EventBackend`.

    ``consumer`` names this process within its groups (random when not given). Use as an
    async context manager, or call :meth:`start` and :meth:`close`. :meth:`drain` handles
    what is pending without background tasks, for scripts and tests.
    """

    def __init__(
        self,
        backend: EventBackend,
        *,
        consumer: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        metrics: MeshMetrics | None = None,
        rng: random.Random | None = None,
        poll_wait: float = 1.0,
        owns_backend: bool = True,
        recorder: ContractRecorder | None = None,
    ) -> None:
        self.backend = backend
        #: Where the events this bus hands to consumer groups are recorded as message
        #: contracts, when set.
        self.recorder = recorder
        self.consumer = consumer or f"consumer-{new_id()[:12]}"
        self.clock = clock
        self.metrics = metrics or MeshMetrics.default()
        self.rng = rng or random.Random()
        self.poll_wait = poll_wait
        self.owns_backend = owns_backend
        self.subscriptions: dict[str, Subscription] = {}
        self._started = False
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether :meth:`start` has run and :meth:`close` has not."""
        return self._started

    async def start(self) -> None:
        """Start the backend and one consuming task per subscription."""
        if self._started:
            return
        await self.backend.start()
        self._started = True
        self._stopping = False
        for sub in self.subscriptions.values():
            await self.backend.ensure_group(sub.spec)
            sub.task = asyncio.create_task(self._consume(sub), name=f"bus:{sub.spec.name}")

    async def close(self, *, grace: float = 5.0) -> None:
        """Stop consuming (batches in hand are finished within ``grace`` seconds; the rest
        are delivered again later), then close the backend if this bus owns it."""
        self._stopping = True
        tasks = [s.task for s in self.subscriptions.values() if s.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace + self.poll_wait)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for sub in self.subscriptions.values():
            sub.task = None
            if sub.ephemeral:
                try:
                    await self.backend.delete_group(sub.spec.name)
                except Exception:
                    log.exception("could not delete ephemeral group %s", sub.spec.name)
        self._started = False
        if self.owns_backend:
            await self.backend.close()

    async def __aenter__(self) -> EventBus:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, event: CloudEvent) -> CloudEvent:
        """Append one event; returns it as published (with ``traceparent`` added)."""
        return (await self.publish_many([event]))[0]

    async def publish_many(self, events: Iterable[CloudEvent]) -> list[CloudEvent]:
        """Append events in order, in one write. Each is validated first
        (``EventFormatError`` names the attribute) and gets the current trace context as
        its ``traceparent`` extension unless it carries one."""
        ready = _prepared(events)
        if ready:
            await self.backend.publish(ready)
            self._count(ready)
        return ready

    def log_recorder(self, store: Store) -> LogRecorder | None:
        """When this bus's log is kept in ``store`` (the SQL log), the log's recorder: a
        writer to ``store`` appends events with it (rows from :meth:`log_rows`) within its
        own writes, so they are published in its transaction, with no outbox to relay.
        None otherwise: write them to an outbox then."""
        recorder = getattr(self.backend, "recorder", None)
        if not isinstance(recorder, LogRecorder):
            return None
        if getattr(self.backend, "store", None) is not store:
            return None
        return recorder

    def log_rows(self, events: Iterable[CloudEvent]) -> list[LogRow]:
        """The log rows that append ``events`` (prepared as :meth:`publish_many` prepares
        them) through :meth:`log_recorder`; once they committed, call :meth:`appended`
        with the events."""
        rows: list[LogRow] = self.backend.log_rows(_prepared(events))  # type: ignore[attr-defined]
        return rows

    def append_statement(self, store: Store, events: Iterable[CloudEvent]) -> Statement | None:
        """When this bus's log is kept in ``store``, the statement that appends ``events``
        (prepared as :meth:`publish_many` prepares them) within a :meth:`Store.batch` of
        writes to ``store``, one row at a time; None otherwise (use an outbox then). Once
        the batch committed, call :meth:`appended` with the events."""
        recorder = self.log_recorder(store)
        if recorder is None:
            return None
        return recorder.append_statement(self.log_rows(events))

    def appended(self, events: Iterable[CloudEvent]) -> None:
        """Events of :meth:`log_rows` or :meth:`append_statement` were committed: count
        them, and wake this process's consumers if one of them takes one of the events
        (consumers elsewhere, and these for the events they skip, find them at their next
        poll)."""
        ready = list(events)
        wake = getattr(self.backend, "appended", None)
        if wake is not None and any(
            matches(sub.spec.pattern, event.type)
            for sub in self.subscriptions.values()
            for event in ready
        ):
            wake()
        self._count(ready)

    def _count(self, events: list[CloudEvent]) -> None:
        counts: dict[str, int] = {}
        for event in events:
            counts[event.type] = counts.get(event.type, 0) + 1
        for event_type, count in counts.items():
            self.metrics.observe_published(event_type, count)

    # -- consuming -------------------------------------------------------------------------

    def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        group: str,
        start: Literal["earliest", "latest"] = "earliest",
        max_deliveries: int = 5,
        ack_wait: float = 30.0,
        batch_size: int = 100,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
        ephemeral: bool = False,
    ) -> Subscription:
        """Have ``handler`` receive events whose type matches ``pattern`` (NATS rules:
        ``user.*``, ``order.>``), as consumer group ``group``.

        Every group receives every matching event once; the consumers of one group (in this
        and other processes) share them. If the bus is running, consuming starts at once. An
        ``ephemeral`` group is deleted when this bus closes (a tail, a per-process fan-out).
        ``group`` follows the one name rule (:mod:`hybridmesh.core.names`): it becomes a key
        in the SQL log and a token of NATS subjects and consumer names.
        """
        validate_pattern(pattern)
        problem = name_problem(group)
        if problem is not None:
            raise ValidationError([Problem(f"consumer group {problem}", field="group")])
        if group in self.subscriptions:
            raise ConfigurationError(f"group {group!r} is already subscribed on this bus")
        if max_deliveries < 1:
            raise ConfigurationError("max_deliveries must be at least 1")
        sub = Subscription(
            GroupSpec(group, pattern, start, max_deliveries, ack_wait),
            handler,
            batch_size,
            backoff_initial,
            backoff_max,
            ephemeral,
        )
        self.subscriptions[group] = sub
        if self._started:
            sub.task = asyncio.create_task(self._start_one(sub), name=f"bus:{group}")
        return sub

    async def _start_one(self, sub: Subscription) -> None:
        while not self._stopping:
            try:
                await self.backend.ensure_group(sub.spec)
                break
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the backend is away: keep trying, as a fetch does
                await self._fetch_failed(sub, error)
        await self._consume(sub)

    async def _consume(self, sub: Subscription) -> None:
        while not self._stopping:
            try:
                batches = await self.backend.fetch(
                    sub.spec, self.consumer, max_events=sub.batch_size, wait=self.poll_wait
                )
            except asyncio.CancelledError:
                raise
            except Exception as error:
                await self._fetch_failed(sub, error)
                continue
            if sub.fetch_error is not None:
                log.info("group %s: fetching events works again", sub.spec.name)
                sub.fetch_error, sub.fetch_failures = None, 0
            if not batches:
                continue
            try:
                await self._process_all(sub, batches)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A settle that failed leaves its lease to expire: the batch comes again.
                log.exception(
                    "group %s: settling a batch failed; it will be redelivered", sub.spec.name
                )
                await self.clock.sleep(1.0)

    async def _fetch_failed(self, sub: Subscription, error: Exception) -> None:
        """Record a failed fetch (health reports the group failing until one succeeds) and
        pause before the next: 1 s, doubling to at most :data:`_MAX_FETCH_PAUSE`. The first
        failure is logged with its traceback, the ones after it in one line each."""
        sub.fetch_failures += 1
        sub.fetch_error = _bounded(f"{type(error).__name__}: {error}")
        if sub.fetch_failures == 1:
            log.exception("group %s: fetching events failed; trying again", sub.spec.name)
        else:
            log.warning(
                "group %s: fetching events failed %d times in a row: %s",
                sub.spec.name,
                sub.fetch_failures,
                sub.fetch_error,
            )
        await self.clock.sleep(min(2.0 ** (sub.fetch_failures - 1), _MAX_FETCH_PAUSE))

    async def health(self) -> BusHealth:
        """Whether the bus can publish and consume now: it is running, its backend answers
        (:meth:`EventBackend.check`), and no group's latest fetch failed."""
        failing = {
            name: sub.fetch_error
            for name, sub in self.subscriptions.items()
            if sub.fetch_error is not None
        }
        if not self._started:
            return BusHealth(False, "stopped", self.backend.name, None, failing)
        try:
            await self.backend.check()
        except Exception as error:
            message = _bounded(f"{type(error).__name__}: {error}")
            return BusHealth(False, "failing", self.backend.name, message, failing)
        if failing:
            return BusHealth(False, "failing", self.backend.name, None, failing)
        return BusHealth(True, "ok", self.backend.name, None, failing)

    async def drain(self, *, max_seconds: float = 30.0) -> int:
        """Handle what is pending for every subscription, without background tasks, until
        a round finds nothing ready. Returns how many deliveries were handled."""
        if not self._started:
            await self.backend.start()
            for sub in self.subscriptions.values():
                await self.backend.ensure_group(sub.spec)
        total = 0
        deadline = self.clock.monotonic() + max_seconds
        while self.clock.monotonic() < deadline:
            progressed = 0
            for sub in self.subscriptions.values():
                batches = await self.backend.fetch(
                    sub.spec, self.consumer, max_events=sub.batch_size, wait=0
                )
                if batches:
                    progressed += await self._process_all(sub, batches)
            if not progressed:
                break
            total += progressed
        return total

    async def _process_all(self, sub: Subscription, batches: list[PartitionBatch]) -> int:
        if len(batches) == 1:
            return await self._process(sub, batches[0])
        counts = await asyncio.gather(*(self._process(sub, b) for b in batches))
        return sum(counts)

    async def _process(self, sub: Subscription, batch: PartitionBatch) -> int:
        """Handle one partition's deliveries in order; settle once. Returns how many
        deliveries were dealt with (handled, retried or dead-lettered)."""
        group = sub.spec.name
        metrics = self.metrics
        began = self.clock.monotonic()
        handled = dropped = 0
        settlement: Settlement | None = None
        for delivery in batch.deliveries:
            event = delivery.event
            if event is None:
                reason = _bounded(f"malformed event: {delivery.error or 'not a CloudEvent'}")
                log.error("group %s: %s", group, reason)
                settlement = Settlement(handled, dead_letter=reason)
                sub.dead_lettered += 1
                metrics.observe_handled(group, "dead_letter")
                break
            if self.recorder is not None:
                self.recorder.record_event(group, event)
            outcome = await self._handle(sub, event, delivery)
            if isinstance(outcome, Retry):
                if delivery.attempt >= sub.spec.max_deliveries:
                    why = _bounded(outcome.reason or "the handler asked for a retry")
                    reason = f"{why} (gave up after {delivery.attempt} attempts)"
                    with (
                        continue_trace(_trace_of(event)),
                        bind_context(request_id=event.id, source_service=event.source),
                    ):  # the line belongs with the handler's lines about this event
                        log.error("group %s: event %s dead-lettered: %s", group, event.id, reason)
                    settlement = Settlement(handled, dead_letter=reason)
                    sub.dead_lettered += 1
                    metrics.observe_handled(group, "dead_letter")
                else:
                    delay = (
                        outcome.delay
                        if outcome.delay is not None
                        else sub.backoff(delivery.attempt, self.rng)
                    )
                    settlement = Settlement(handled, retry_after=delay)
                    sub.retried += 1
                    metrics.observe_handled(group, "retry")
                break
            handled += 1
            if isinstance(outcome, Drop):
                dropped += 1
        sub.handled += handled
        if handled - dropped:
            metrics.observe_handled(group, "ack", handled - dropped)
        if dropped:
            metrics.observe_handled(group, "drop", dropped)
        await self.backend.settle(batch, settlement or Settlement(handled))
        metrics.observe_batch(group, self.clock.monotonic() - began)
        return handled + (1 if settlement is not None else 0)

    async def _handle(
        self, sub: Subscription, event: CloudEvent, delivery: Delivery
    ) -> HandlerResult:
        attempt = delivery.attempt
        with (
            continue_trace(_trace_of(event)),
            bind_context(request_id=event.id, source_service=event.source),
        ):
            span = (
                start_call_span(
                    f"handle {event.type}",
                    attributes={
                        "messaging.consumer.group.name": sub.spec.name,
                        "messaging.message.id": event.id,
                        "hybridmesh.attempt": attempt,
                    },
                    kind=SpanKind.CONSUMER,
                )
                if tracing_records()
                else _NO_SPAN
            )
            with span:
                current = _DELIVERY.set(delivery)
                try:
                    result = await sub.handler(event)
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.warning(
                        "group %s: handler failed on %s %s (attempt %d): %s",
                        sub.spec.name,
                        event.type,
                        event.id,
                        attempt,
                        error,
                    )
                    return Retry(reason=f"{type(error).__name__}: {error}")
                finally:
                    _DELIVERY.reset(current)
        return ACK if result is None else result

    # -- reading without a group -----------------------------------------------------------

    async def open_reader(
        self, pattern: str, *, start: Literal["earliest", "latest"] = "latest"
    ) -> EventReader:
        """Read the events whose type matches ``pattern`` (NATS rules) in log order, from
        the oldest retained one or after the newest, with no consumer group: nothing is
        acknowledged and nothing is left behind (see
        :class:`~hybridmesh.events.backend.EventReader`). For watching the bus."""
        validate_pattern(pattern)
        if not self._started:
            await self.backend.start()
        return await self.backend.open_reader(pattern, start=start)

    async def log_span(self) -> LogSpan:
        """The positions the log holds now: the oldest retained event's and the newest's
        (see :class:`~hybridmesh.events.backend.LogSpan`). Whoever compares positions they
        kept with it learns whether retention has removed events they saw."""
        if not self._started:
            await self.backend.start()
        return await self.backend.log_span()

    # -- dead letters ----------------------------------------------------------------------

    async def dead_letters(self, *, group: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The dead letters, newest first."""
        return await self.backend.dead_letters(group=group, limit=limit)

    async def dead_letter(self, dead_letter_id: str) -> DeadLetter:
        return await self.backend.get_dead_letter(dead_letter_id)

    async def replay(self, dead_letter_id: str) -> DeadLetter:
        """Deliver a dead letter's event again to its own group."""
        return await self.backend.replay(dead_letter_id)

    async def purge(self, *, group: str | None = None) -> int:
        return await self.backend.purge(group=group)


def _bounded(text: str, most: int = MAX_REASON) -> str:
    """``text`` cut to ``most`` characters: a dead letter's reason or a health message
    comes from an exception's text, which may be huge (a backend stores the reason in a
    header or a column, and a health answer should stay small)."""
    return text if len(text) <= most else text[: most - 1] + "…"


def _trace_of(event: CloudEvent) -> dict[str, str]:
    """The trace context ``event`` carries, as ``traceparent``/``tracestate`` headers."""
    extensions = event.extensions
    carrier = {"traceparent": str(extensions.get("traceparent") or "")}
    if "tracestate" in extensions:
        carrier["tracestate"] = str(extensions["tracestate"])
    return carrier


def _prepared(events: Iterable[CloudEvent]) -> list[CloudEvent]:
    """``events`` validated (``EventFormatError`` names the attribute), each with the current
    trace context as its ``traceparent`` extension unless it carries one."""
    ready: list[CloudEvent] = []
    trace: dict[str, str] = {}
    for event in events:
        event.validate()  # the type is a subject: validate() checks its tokens
        if event.traceparent is None:
            if not trace:
                inject_headers(trace)  # one trace context for the whole call
                for name, value in list(trace.items()):  # keep the event valid
                    if extension_value(value) is not None:
                        del trace[name]
            event = _with_trace(event, trace)
        ready.append(event)
    return ready


def _with_trace(event: CloudEvent, trace: dict[str, str]) -> CloudEvent:
    """``event`` with the trace extensions added.

    The event is completed in place rather than copied: it is about to be published in this
    very form, and copying a dataclass per event measurably slows publishing. An event
    only ever gains extensions it did not have.
    """
    extensions = dict(event.extensions)
    extensions.update(trace)
    object.__setattr__(event, "extensions", extensions)
    return event


__all__ = [
    "ACK",
    "MAX_REASON",
    "Ack",
    "BusHealth",
    "Drop",
    "EventBus",
    "Handler",
    "HandlerResult",
    "Retry",
    "Subscription",
    "current_delivery",
]
