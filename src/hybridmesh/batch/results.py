"""Applying the legacy side's results: the ledger settles the records, and each record that
failed goes to the review queue in the same transaction.

Both ways results come back use it: result files read by the inbox collector
(:mod:`hybridmesh.batch.inbox`) and the answer of a bulk POST
(:mod:`hybridmesh.batch.http_delivery`).
"""

from __future__ import annotations

from collections.abc import Sequence

from hybridmesh.batch.ledger import BatchLedger, RecordResult, Settlement
from hybridmesh.observability import get_logger
from hybridmesh.review import ReviewQueue
from hybridmesh.store import Store, Transaction

log = get_logger("hybridmesh.batch")


class ResultRecorder:
    """Settles results of one target and files its failures for review, atomically."""

    def __init__(self, store: Store, ledger: BatchLedger, review: ReviewQueue) -> None:
        self.store = store
        self.ledger = ledger
        self.review = review

    async def apply(
        self,
        source: str,
        target: str,
        results: Sequence[RecordResult],
        *,
        missing_from_run: str | None = None,
        missing_reason: str = "no result for this record",
    ) -> Settlement:
        """Apply ``results`` (read from ``source``, named in the log) in one transaction.

        ``missing_from_run`` and ``missing_reason`` are the ledger's
        (:meth:`BatchLedger.settle`): the run's records without a result fail too.
        """
        async with self.store.transaction() as tx:
            settlement = await self.ledger.settle(
                tx,
                target,
                results,
                missing_from_run=missing_from_run,
                missing_reason=missing_reason,
            )
            await self._file_failures(tx, settlement)
        _report(source, settlement)
        return settlement

    async def _file_failures(self, tx: Transaction, settlement: Settlement) -> None:
        for record in settlement.failed:
            await self.review.add(
                "batch",
                record.error or "failed",
                {
                    "target": record.target,
                    "operation": record.operation,
                    "record_id": record.id,
                    "run_id": record.run_id,
                    "idempotency_key": record.idempotency_key,
                    "payload": record.payload,
                },
                origin_ref=record.id,
                tx=tx,
            )


def _report(source: str, settlement: Settlement) -> None:
    log.info(
        "%s: %d acknowledged, %d failed (sent for review)",
        source,
        len(settlement.acknowledged),
        len(settlement.failed),
    )
    if settlement.unknown:
        shown = ", ".join(settlement.unknown[:10])
        more = f" and {len(settlement.unknown) - 10} more" if len(settlement.unknown) > 10 else ""
        log.warning("%s: no record matches result id(s) %s%s", source, shown, more)


__all__ = ["ResultRecorder"]
