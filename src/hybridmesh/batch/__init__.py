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
:mod:`hybridmesh.batch.integration` (the scheduler) for the guarantees,
:mod:`hybridmesh.batch.ledger` for the records, :mod:`hybridmesh.batch.delivery` for the
channels (files, HTTP bulk), :mod:`hybridmesh.batch.inbox` for result files and
:mod:`hybridmesh.batch.formats` for the file formats.
"""

from hybridmesh.batch.config import load_batch_targets
from hybridmesh.batch.delivery import Delivery, DeliveryContext, RunOutcome
from hybridmesh.batch.file_delivery import FileDelivery
from hybridmesh.batch.formats import ResultFileError
from hybridmesh.batch.http_delivery import HttpBulkDelivery
from hybridmesh.batch.inbox import CollectReport, InboxCollector
from hybridmesh.batch.integration import (
    DEFAULT_EXCHANGE_DIR,
    BatchIntegration,
    review_retry_handler,
)
from hybridmesh.batch.ledger import (
    BatchLedger,
    BatchRecord,
    BatchRun,
    RecordResult,
    RecordStatus,
    RunStatus,
)
from hybridmesh.batch.target import ANY_OPERATION, DEFAULT_LIMIT, BatchFormat, BatchTarget
from hybridmesh.batch.transport import BatchTransport

__all__ = [
    "ANY_OPERATION",
    "DEFAULT_EXCHANGE_DIR",
    "DEFAULT_LIMIT",
    "BatchFormat",
    "BatchIntegration",
    "BatchLedger",
    "BatchRecord",
    "BatchRun",
    "BatchTarget",
    "BatchTransport",
    "CollectReport",
    "Delivery",
    "DeliveryContext",
    "FileDelivery",
    "HttpBulkDelivery",
    "InboxCollector",
    "RecordResult",
    "RecordStatus",
    "ResultFileError",
    "RunOutcome",
    "RunStatus",
    "load_batch_targets",
    "review_retry_handler",
]
