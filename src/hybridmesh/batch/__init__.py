"""Batch integration with legacy systems: operations queued, delivered in files or bulk
POSTs, and acknowledged by result files or the bulk answer.

::

    batch = BatchIntegration(
        store,
        exchange_dir=Path("/srv/exchange"),
        targets=[BatchTarget("legacy-erp", format="xml", schedule="0 2 * * *")],
    )
    review.register_retry("batch", review_retry_handler(batch))
    await batch.enqueue("legacy-erp", "orders", {"order_id": "O-1"}, idempotency_key="O-1")
    batch.start()                      # flush on schedule, read result files
    client.add_transport(BatchTransport(batch))   # type="batch" calls queue records

Every record ends ``acknowledged``, or ``failed`` with an item in the review queue; see
:mod:`hybridmesh.batch.integration` for the guarantees and :mod:`hybridmesh.batch.formats`
for the files.
"""

from hybridmesh.batch.config import load_batch_targets
from hybridmesh.batch.formats import ResultFileError
from hybridmesh.batch.integration import (
    ANY_OPERATION,
    DEFAULT_EXCHANGE_DIR,
    DEFAULT_LIMIT,
    BatchFormat,
    BatchIntegration,
    BatchTarget,
    CollectReport,
    review_retry_handler,
)
from hybridmesh.batch.queue import (
    BatchRecord,
    BatchRun,
    RecordResult,
    RecordStatus,
    RunStatus,
)
from hybridmesh.batch.transport import BatchTransport

__all__ = [
    "ANY_OPERATION",
    "DEFAULT_EXCHANGE_DIR",
    "DEFAULT_LIMIT",
    "BatchFormat",
    "BatchIntegration",
    "BatchRecord",
    "BatchRun",
    "BatchTarget",
    "BatchTransport",
    "CollectReport",
    "RecordResult",
    "RecordStatus",
    "ResultFileError",
    "RunStatus",
    "load_batch_targets",
    "review_retry_handler",
]
