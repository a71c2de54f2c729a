"""Triggers: run registered functions when events arrive or when a cron schedule is due.

Event triggers ride on the :class:`~hybridmesh.events.bus.EventBus`: each is one consumer
group, so every matching event invokes the function at least once. The function receives::

    {**event.data, "event": {"id", "type", "source", "subject", "time"}}

(data that is not a JSON object goes under ``"data"``; ``time`` is RFC 3339 or None, and an
``"event"`` key in the data is replaced). A function that returns acknowledges the event; one
that fails (raises, times out, answers outside 2xx) makes the bus retry with backoff and,
after ``max_deliveries`` attempts, move the event to the dead letters (a failure that is not
retryable is retried too: the bus has no way to bury an event at once, and the dead letter
keeps the reason). The idempotency key is the same for every delivery of one event to one
function.

Schedule triggers run a function at each minute a :class:`~hybridmesh.core.cron.CronSchedule`
matches (UTC), on the injected clock. The function receives::

    {**payload, "schedule": {"cron": "<expression>", "time": "<the minute, RFC 3339>"}}

(a payload that is not a JSON object goes under ``"data"``). One schedule never runs two
invocations at once: a run that outlasts the next due minute makes that minute skipped, not
queued. A failing run is logged and counted (:class:`ScheduledFunction`, and the call metrics)
and the schedule keeps going. Several processes running the same schedule send the same
idempotency key for the same minute, so a function can run each minute once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.cron import CronSchedule
from hybridmesh.core.errors import ConfigurationError
from hybridmesh.core.ids import idempotency_key, new_request_id
from hybridmesh.core.names import MAX_NAME_LENGTH
from hybridmesh.events.bus import EventBus, Subscription
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.functions.registry import FunctionRegistry
from hybridmesh.observability import bind_context, get_logger

log = get_logger("hybridmesh.functions")

#: Longest single sleep of a schedule loop, in seconds: the wall clock is checked again after
#: it, so a clock that jumps (NTP, suspend) delays a firing by at most this much.
MAX_SLEEP = 60.0


def trigger_group(function_name: str, pattern: str) -> str:
    """The default consumer group of an event trigger: ``function-<name and pattern>-<hash>``.

    Function names and patterns hold characters a group name may not (``.``, ``_``, ``*``,
    ``>``), so those become ``-``, the result is cut to fit the 63 characters of a name, and
    8 hex digits of a hash of both tell apart triggers that would otherwise look alike. Every
    process derives the same group from the same trigger.
    """
    digest = idempotency_key("trigger", function_name, pattern)[:8]
    room = MAX_NAME_LENGTH - len("function--") - len(digest)
    words = re.sub(r"[^a-z0-9]+", "-", f"{function_name}-{pattern}".lower())[:room].strip("-")
    return f"function-{words}-{digest}" if words else f"function-{digest}"


@dataclass(eq=False)
class ScheduledFunction:
    """A function on a cron schedule, and what its runs have done so far."""

    schedule: CronSchedule
    function: str
    payload: Any = None
    fired: int = 0
    failed: int = 0
    last_error: str | None = None
    next_run: datetime | None = None
    running: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class FunctionTriggers:
    """Event and cron triggers for the functions of one registry.

    Event triggers consume while ``bus`` runs (``bus.start()``, or ``bus.drain()`` in
    scripts); the bus's lifecycle stays with its owner. Schedules run between :meth:`start`
    and :meth:`stop`, sleeping on ``clock``.
    """

    def __init__(
        self,
        registry: FunctionRegistry,
        *,
        bus: EventBus | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.registry = registry
        self.bus = bus
        self.clock = clock
        self.schedules: list[ScheduledFunction] = []
        self._started = False
        self._stopping = False

    # -- events ----------------------------------------------------------------------------

    def on_event(
        self,
        pattern: str,
        function_name: str,
        *,
        group: str | None = None,
        max_deliveries: int = 5,
        start: Literal["earliest", "latest"] = "earliest",
    ) -> Subscription:
        """Invoke ``function_name`` for every event whose type matches ``pattern``.

        ``group`` (default :func:`trigger_group`) is the consumer group: processes sharing it
        share the events. Raises ``FunctionNotFoundError`` for an unknown function
        and ``ConfigurationError`` without a bus or when the group is taken.
        """
        self.registry.get(function_name)
        if self.bus is None:
            raise ConfigurationError(
                f"event trigger for function {function_name!r}: these triggers have no bus"
            )
        registry = self.registry

        async def handle(event: CloudEvent) -> None:
            await registry.invoke(
                function_name,
                _event_payload(event),
                idempotency_key=idempotency_key(function_name, event.source, event.id),
            )

        return self.bus.subscribe(
            pattern,
            handle,
            group=group or trigger_group(function_name, pattern),
            max_deliveries=max_deliveries,
            start=start,
        )

    # -- schedules -------------------------------------------------------------------------

    def on_schedule(
        self, cron_expr: str, function_name: str, payload: Any = None
    ) -> ScheduledFunction:
        """Invoke ``function_name`` at every minute ``cron_expr`` matches (UTC).

        Raises ``ValidationError`` for a bad expression and ``FunctionNotFoundError`` for an
        unknown function. Added while running, the schedule starts at once.
        """
        schedule = CronSchedule.parse(cron_expr)
        self.registry.get(function_name)
        scheduled = ScheduledFunction(schedule, function_name, payload)
        self.schedules.append(scheduled)
        if self._started:
            self._launch(scheduled)
        return scheduled

    async def start(self) -> None:
        """Start every schedule's loop. Idempotent."""
        if self._started:
            return
        self._started = True
        self._stopping = False
        for scheduled in self.schedules:
            self._launch(scheduled)

    async def stop(self) -> None:
        """Stop the schedules. A run in flight is let finish (its timeout bounds it); the
        waiting loops are cancelled."""
        self._stopping = True
        tasks = [s.task for s in self.schedules if s.task is not None]
        for scheduled in self.schedules:
            if scheduled.task is not None and not scheduled.running:
                scheduled.task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for scheduled in self.schedules:
            scheduled.task = None
        self._started = False

    def _launch(self, scheduled: ScheduledFunction) -> None:
        scheduled.task = asyncio.create_task(
            self._run_schedule(scheduled),
            name=f"cron:{scheduled.function}:{scheduled.schedule}",
        )

    async def _run_schedule(self, scheduled: ScheduledFunction) -> None:
        last: datetime | None = None
        while not self._stopping:
            now = self.clock.now()
            # The clock may read a hair before the minute just fired: never fire it twice.
            due = scheduled.schedule.next_after(max(now, last) if last else now)
            scheduled.next_run = due
            while (remaining := (due - self.clock.now()).total_seconds()) > 0:
                await self.clock.sleep(min(remaining, MAX_SLEEP))
            if self._stopping:
                return
            scheduled.running = True
            try:
                await self._fire(scheduled, due)
            finally:
                scheduled.running = False
            last = due

    async def _fire(self, scheduled: ScheduledFunction, due: datetime) -> None:
        when = due.isoformat()
        payload = _merge(
            scheduled.payload, "schedule", {"cron": str(scheduled.schedule), "time": when}
        )
        key = idempotency_key(scheduled.function, str(scheduled.schedule), when)
        scheduled.fired += 1
        with bind_context(request_id=new_request_id(), source_service="cron"):
            try:
                await self.registry.invoke(scheduled.function, payload, idempotency_key=key)
            except Exception as error:
                scheduled.failed += 1
                scheduled.last_error = f"{type(error).__name__}: {error}"
                log.warning(
                    "scheduled run of function %s at %s (%s) failed: %s",
                    scheduled.function,
                    when,
                    scheduled.schedule,
                    scheduled.last_error,
                )


def _event_payload(event: CloudEvent) -> dict[str, Any]:
    meta = {
        "id": event.id,
        "type": event.type,
        "source": event.source,
        "subject": event.subject,
        "time": event.time.isoformat() if event.time is not None else None,
    }
    return _merge(event.data, "event", meta)


def _merge(data: Any, key: str, meta: dict[str, Any]) -> dict[str, Any]:
    if data is None:
        return {key: meta}
    if isinstance(data, dict):
        return {**data, key: meta}
    return {"data": data, key: meta}


__all__ = ["MAX_SLEEP", "FunctionTriggers", "ScheduledFunction", "trigger_group"]
