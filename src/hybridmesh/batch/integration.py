"""Batch integration with legacy systems: queue operations, deliver them in runs, read the
results back.

Operations are queued per (target, operation). A run of ``limit`` records (default
10,000) goes out as soon as that many are queued; the whole queue is flushed when its cron
schedule is due, or on demand (:meth:`flush`). Each run, of at most ``limit`` records, is
delivered as

- a file ``<exchange_dir>/<target>/outbox/<operation>-<run_id>.csv`` (or ``.xml``), which
  appears whole (written under a hidden name, then renamed); or
- one POST of JSON to the target's bulk endpoint, with ``Idempotency-Key: <run_id>``, whose
  answer gives each record's result at once.

The legacy side answers files with result files in ``<exchange_dir>/<target>/inbox/``
(see :mod:`hybridmesh.batch.formats`); :meth:`collect_results` applies them and moves each
file to ``inbox/processed/`` (or ``inbox/rejected/`` when malformed).

This module is the scheduler: it queues records in the ledger
(:mod:`hybridmesh.batch.ledger`), decides when runs go out and hands each to its target's
delivery (:mod:`hybridmesh.batch.delivery`: files or HTTP bulk), and runs the loop that also
reads the inboxes (:mod:`hybridmesh.batch.inbox`).

Nothing accepted is lost: a record is queued until a run carries it; a run that cannot be
delivered puts its records back in the queue; every record ends ``acknowledged``, or
``failed`` with an open item in the review queue, filed in the same transaction. Delivery
is at least once: after a crash between writing a file and recording its run, the records
go out again in a later run, under the same record ids and idempotency keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from hybridmesh.batch.delivery import DeliveryContext
from hybridmesh.batch.http_delivery import recover_stale_posts
from hybridmesh.batch.inbox import CollectReport, InboxCollector
from hybridmesh.batch.ledger import (
    BatchLedger,
    BatchRecord,
    BatchRun,
    RecordStatus,
    check_record,
    ordered_id,
)
from hybridmesh.batch.results import ResultRecorder
from hybridmesh.batch.target import ANY_OPERATION, BatchTarget
from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import ConfigurationError, HybridMeshError, Problem, ValidationError
from hybridmesh.observability import get_logger
from hybridmesh.review import ReviewItem, ReviewQueue
from hybridmesh.store import Store, Transaction
from hybridmesh.transports import HttpSession

#: Where files are exchanged with legacy systems when nothing else is configured (the CLI
#: reads ``HYBRIDMESH_EXCHANGE_DIR``).
DEFAULT_EXCHANGE_DIR = ".hybridmesh/exchange"

log = get_logger("hybridmesh.batch")


class BatchIntegration:
    """The batch scheduler: queues operations for legacy systems in the ledger, decides when
    a run goes out (on schedule, when full, on demand) and hands it to its target's
    :class:`~hybridmesh.batch.delivery.Delivery`; its loop also runs the inbox collector.

    ``exchange_dir`` holds each target's ``outbox`` and ``inbox``. ``review`` receives the
    records that fail (default: a :class:`ReviewQueue` on the same store). ``targets``
    configures delivery per target and operation (unlisted ones: CSV, no schedule, 10,000
    records). ``http`` is the session bulk POSTs use (default: one of its own, closed by
    :meth:`close`); each POST may take ``http_timeout`` seconds (default 60). The loop
    (:meth:`run`) reads result files every ``poll_interval`` seconds (default 5). ``ids``
    names records and runs (default: version 7 UUIDs, in the order they are made). Store
    failures raise :class:`~hybridmesh.core.errors.StoreError`.
    """

    def __init__(
        self,
        store: Store,
        *,
        exchange_dir: Path | str,
        review: ReviewQueue | None = None,
        clock: Clock = SYSTEM_CLOCK,
        targets: Sequence[BatchTarget] = (),
        http: HttpSession | aiohttp.ClientSession | None = None,
        poll_interval: float = 5.0,
        http_timeout: float = 60.0,
        ids: Callable[[], str] = ordered_id,
    ) -> None:
        if poll_interval <= 0 or http_timeout <= 0:
            raise ConfigurationError("poll_interval and http_timeout must be more than 0")
        self.store = store
        self.exchange_dir = Path(exchange_dir)
        self.review = review if review is not None else ReviewQueue(store, clock=clock)
        self.ledger = BatchLedger(store, clock=clock, ids=ids)
        self.poll_interval = poll_interval
        self.http_timeout = http_timeout
        self._clock = clock
        self._targets: dict[tuple[str, str], BatchTarget] = {}
        for config in targets:
            key = (config.target, config.operation)
            if key in self._targets:
                raise ConfigurationError(f"batch target {key[0]}/{key[1]} is configured twice")
            self._targets[key] = config
        now = clock.now()
        self._next_due: dict[BatchTarget, datetime] = {
            config: config.cron.next_after(now)
            for config in self._targets.values()
            if config.cron is not None
        }
        self._http = http if http is not None else HttpSession()
        self._owns_http = http is None
        results = ResultRecorder(store, self.ledger, self.review)
        self._delivery = DeliveryContext(
            store=store,
            ledger=self.ledger,
            results=results,
            exchange_dir=self.exchange_dir,
            clock=clock,
            http=self._session,
            http_timeout=http_timeout,
        )
        self.inbox = InboxCollector(self.exchange_dir, results)
        self._flushing: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._loop: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def _session(self) -> aiohttp.ClientSession:
        return self._http.get() if isinstance(self._http, HttpSession) else self._http

    # -- queueing --------------------------------------------------------------------------

    def target_for(self, target: str, operation: str) -> BatchTarget:
        """The delivery settings of a queue: its own, its target's ``"*"``, or the default."""
        return (
            self._targets.get((target, operation))
            or self._targets.get((target, ANY_OPERATION))
            or BatchTarget(target, operation)
        )

    async def enqueue(
        self,
        target: str,
        operation: str,
        payload: Any,
        *,
        idempotency_key: str | None = None,
        tx: Transaction | None = None,
    ) -> BatchRecord:
        """Queue one operation; return its record.

        ``payload`` is a JSON object (None counts as ``{}``); its keys ``record_id`` and
        ``idempotency_key`` are reserved. With an ``idempotency_key`` already queued for this
        target and operation, nothing is added and the first record is returned, whatever
        its status. With ``tx``, the record is written in the caller's transaction.

        When the queue holds ``limit`` records, a run of them starts in the background (see
        :meth:`drain`); the scheduler catches up on queues filled inside a ``tx``.
        Raises :class:`ValidationError` for a bad name, key or payload.
        """
        data = check_record(target, operation, payload, idempotency_key)
        record, created = await self.ledger.add(target, operation, data, idempotency_key, tx=tx)
        if created and tx is None and (target, operation) not in self._flushing:
            config = self.target_for(target, operation)
            if await self.ledger.queue_size(target, operation) >= config.limit:
                self._flush_in_background(target, operation)
        return record

    def _flush_in_background(self, target: str, operation: str) -> None:
        key = (target, operation)
        if key in self._flushing:  # another enqueue got there while this one counted
            return

        async def flush() -> None:
            try:
                await self._flush_queue(target, operation, full_only=True)
            except (HybridMeshError, OSError):
                log.exception("flushing the full queue %s/%s failed; it stays queued", *key)
            finally:
                del self._flushing[key]

        self._flushing[key] = asyncio.create_task(flush(), name=f"batch-flush-{target}-{operation}")

    async def drain(self) -> None:
        """Wait for the flushes that :meth:`enqueue` started in the background."""
        while self._flushing:
            await asyncio.gather(*self._flushing.values(), return_exceptions=True)

    # -- delivering ------------------------------------------------------------------------

    async def flush(
        self, target: str | None = None, operation: str | None = None
    ) -> list[BatchRun]:
        """Deliver every queued record (of ``target`` and ``operation``, when given) now.

        Returns the runs made, oldest first. A run that could not be delivered is among
        them with status ``failed``; its records are queued again for the next flush.
        Concurrent flushes, in this process or others, never put a record in two runs.
        Raises :class:`OSError` when a file cannot be written (its records stay queued).
        """
        sizes = await self.ledger.queue_sizes()
        runs: list[BatchRun] = []
        for queue_target, queue_operation in sorted(sizes):
            if target is not None and queue_target != target:
                continue
            if operation is not None and queue_operation != operation:
                continue
            runs.extend(await self._flush_queue(queue_target, queue_operation))
        return runs

    async def _flush_queue(
        self, target: str, operation: str, *, full_only: bool = False
    ) -> list[BatchRun]:
        """Deliver the queue in runs of up to ``limit`` records; with ``full_only``, only
        while a whole run's worth is queued (the rest waits for the schedule)."""
        config = self.target_for(target, operation)
        runs: list[BatchRun] = []
        while True:
            if full_only and await self.ledger.queue_size(target, operation) < config.limit:
                return runs
            outcome = await config.delivery.deliver(self._delivery, target, operation, config.limit)
            if outcome is None:
                return runs
            runs.append(outcome.run)
            if not outcome.delivered:
                return runs  # the legacy side is down: its records wait for the next flush

    async def recover_stale_runs(self) -> list[BatchRun]:
        """Queue again the records of bulk POSTs that never got an answer recorded (the
        process stopped mid-request); a POST is given ``5 * http_timeout`` seconds."""
        return await recover_stale_posts(self._delivery)

    # -- results ---------------------------------------------------------------------------

    async def collect_results(self) -> CollectReport:
        """Apply every result file in the targets' inboxes, oldest name first (see
        :meth:`InboxCollector.collect <hybridmesh.batch.inbox.InboxCollector.collect>`).
        Never raises for a bad file."""
        return await self.inbox.collect()

    # -- records ---------------------------------------------------------------------------

    async def records(
        self,
        status: RecordStatus | str | None = None,
        target: str | None = None,
        limit: int = 100,
    ) -> list[BatchRecord]:
        """Records, newest first, optionally of one status and target."""
        return await self.ledger.records(status=status, target=target, limit=limit)

    async def record(self, record_id: str) -> BatchRecord:
        """One record; :class:`~hybridmesh.core.errors.NotFoundError` when there is none."""
        return await self.ledger.get(record_id)

    async def runs(self, limit: int = 100) -> list[BatchRun]:
        """Runs, newest first."""
        return await self.ledger.runs(limit=limit)

    async def requeue(self, record_id: str) -> BatchRecord:
        """Queue a failed record again, for the next run of its queue (idempotent).

        Raises :class:`~hybridmesh.core.errors.NotFoundError` for an unknown record and
        :class:`ValidationError` for one that is sent or acknowledged.
        """
        record = await self.ledger.requeue(record_id)
        log.info("batch record %s queued again", record_id)
        return record

    # -- the loop --------------------------------------------------------------------------

    async def run_due(self) -> list[BatchRun]:
        """One pass of the scheduler: flush the queues whose schedule is due, deliver full
        runs of the others, and requeue the records of bulk POSTs that never got an answer."""
        await self.recover_stale_runs()
        now = self._clock.now()
        due = {config for config, when in self._next_due.items() if when <= now}
        runs: list[BatchRun] = []
        for (target, operation), size in sorted((await self.ledger.queue_sizes()).items()):
            config = self.target_for(target, operation)
            if config in due:
                runs.extend(await self._flush_queue(target, operation))
            elif size >= config.limit:
                runs.extend(await self._flush_queue(target, operation, full_only=True))
        for config in due:
            assert config.cron is not None
            self._next_due[config] = config.cron.next_after(now)
        return runs

    async def run(self, stop: asyncio.Event) -> None:
        """Flush on schedule and collect results until ``stop`` is set. A failing pass is
        logged and the loop goes on."""
        next_collect = self._clock.monotonic()
        while not stop.is_set():
            if self._clock.monotonic() >= next_collect:
                await self._guarded(self.collect_results)
                next_collect = self._clock.monotonic() + self.poll_interval
            await self._guarded(self.run_due)
            wait = next_collect - self._clock.monotonic()
            if self._next_due:
                until_due = min(self._next_due.values()) - self._clock.now()
                wait = min(wait, until_due.total_seconds())
            await self._sleep(max(wait, 0.0), stop)

    async def _guarded(self, step: Callable[[], Awaitable[Any]]) -> None:
        try:
            await step()
        except Exception:
            log.exception("batch integration: %s failed; trying again later", step.__name__)

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> None:
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()
            await asyncio.gather(sleeper, stopper, return_exceptions=True)

    def start(self) -> asyncio.Task[None]:
        """Run the loop in a task until :meth:`stop` (a second call returns the same task)."""
        if self._loop is None or self._loop.done():
            self._stop = asyncio.Event()
            self._loop = asyncio.create_task(self.run(self._stop), name="hybridmesh-batch")
        return self._loop

    async def stop(self) -> None:
        """Stop the loop started by :meth:`start` and wait for it, and for background
        flushes."""
        self._stop.set()
        if self._loop is not None:
            await self._loop
            self._loop = None
        await self.drain()

    async def close(self) -> None:
        """Stop, and close the HTTP session if it is this integration's own. Idempotent."""
        await self.stop()
        if self._owns_http and isinstance(self._http, HttpSession):
            await self._http.close()

    async def __aenter__(self) -> BatchIntegration:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def review_retry_handler(integration: BatchIntegration) -> Callable[[ReviewItem], Awaitable[None]]:
    """The review queue's retry handler for ``batch`` items: queues the failed record
    (``origin_ref``) again, so the next run of its queue carries it.

    Register it with ``queue.register_retry("batch", review_retry_handler(integration))``.
    Raises :class:`ValidationError` for an item without a record id, or a record that is
    not failed; :class:`~hybridmesh.core.errors.NotFoundError` for an unknown record.
    """

    async def retry(item: ReviewItem) -> None:
        if not item.origin_ref:
            raise ValidationError(
                [Problem(f"review item {item.id} names no batch record", field="origin_ref")]
            )
        await integration.requeue(item.origin_ref)

    return retry


__all__ = ["DEFAULT_EXCHANGE_DIR", "BatchIntegration", "review_retry_handler"]
