"""The HTTP bulk channel: a run is one POST of JSON to the target's bulk endpoint.

The request carries ``Idempotency-Key: <run_id>`` and the body
``{"run_id", "target", "operation", "records": [{"record_id", "idempotency_key",
"payload"}]}``; the answer gives each record's result at once (read by
:func:`~hybridmesh.batch.formats.parse_bulk_answer`). No answer, or one that is not 2xx,
queues the run's records again; an answer that cannot be read fails them all for review,
since they may have been acted on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from hybridmesh.batch.delivery import DeliveryContext, RunOutcome
from hybridmesh.batch.formats import ResultFileError, parse_bulk_answer
from hybridmesh.batch.ledger import BatchRun
from hybridmesh.core.serialization import dumpb
from hybridmesh.observability import get_logger
from hybridmesh.transports import Http1Response, fetch

log = get_logger("hybridmesh.batch")

#: The ``format`` of bulk POST runs in the ledger.
KIND = "http"
#: How many request timeouts a POST without a recorded answer is given before its records
#: are presumed lost and queued again.
STALE_AFTER_TIMEOUTS = 5


@dataclass(frozen=True)
class HttpBulkDelivery:
    """POSTs each run to ``endpoint``."""

    endpoint: str

    @property
    def kind(self) -> str:
        return KIND

    async def deliver(
        self, context: DeliveryContext, target: str, operation: str, limit: int
    ) -> RunOutcome | None:
        """The run is recorded before the POST, so a process that stops mid-request leaves
        it for :func:`recover_stale_posts`."""
        run_id = context.ledger.new_id()
        async with context.store.transaction() as tx:
            records = await context.ledger.claim(tx, target, operation, run_id, limit)
            if not records:
                return None
            await context.ledger.add_run(
                tx, run_id, target, operation, KIND, self.endpoint, len(records)
            )
        body = {
            "run_id": run_id,
            "target": target,
            "operation": operation,
            "records": [
                {"record_id": r.id, "idempotency_key": r.idempotency_key, "payload": r.payload}
                for r in records
            ],
        }
        try:
            response = await self._post(context, run_id, dumpb(body))
        except (aiohttp.ClientError, TimeoutError, OSError) as failure:
            why = f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
            run = await _undelivered(context, run_id, f"no answer from {self.endpoint}: {why}")
            return RunOutcome(run, delivered=False)
        answer = response.body
        if not 200 <= response.status < 300:
            text = answer[:200].decode("utf-8", "replace")
            why = f"{self.endpoint} answered {response.status} {response.reason}: {text}"
            why = why.rstrip(": ")
            return RunOutcome(await _undelivered(context, run_id, why), delivered=False)
        source = f"answer of {self.endpoint} to run {run_id}"
        try:
            results = parse_bulk_answer(answer, source)
            missing = "no result for this record in the bulk answer"
        except ResultFileError as error:
            # Delivered but not understood: a person decides, rather than sending it twice.
            results, missing = [], f"the bulk answer could not be read: {error}"
        await context.results.apply(
            source, target, results, missing_from_run=run_id, missing_reason=missing
        )
        return RunOutcome(await context.ledger.run(run_id), delivered=True)

    async def _post(self, context: DeliveryContext, run_id: str, body: bytes) -> Http1Response:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Idempotency-Key": run_id,
        }
        # A redirect is an answer, not followed: a bulk POST must not turn into a GET.
        async with asyncio.timeout(context.http_timeout):
            return await fetch(context.http(), "POST", self.endpoint, headers=headers, body=body)


async def recover_stale_posts(context: DeliveryContext) -> list[BatchRun]:
    """Queue again the records of bulk POSTs that never got an answer recorded (the process
    stopped mid-request); a POST is given ``STALE_AFTER_TIMEOUTS`` request timeouts."""
    stale = await context.ledger.stale_runs(KIND, STALE_AFTER_TIMEOUTS * context.http_timeout)
    return [
        await _undelivered(context, run_id, "no answer was recorded; the POST is presumed lost")
        for run_id in stale
    ]


async def _undelivered(context: DeliveryContext, run_id: str, error: str) -> BatchRun:
    run = await context.ledger.fail_run(run_id, error)
    log.warning("batch run %s not delivered (%s); its records are queued again", run_id, error)
    return run


__all__ = ["KIND", "STALE_AFTER_TIMEOUTS", "HttpBulkDelivery", "recover_stale_posts"]
