"""The ``batch`` transport of the hybrid client: a call queued as a batch record.

The client picks it for ``type="batch"`` requests and as the fallback of commands to (and
from) legacy systems. A call becomes one record of the queue (target, operation):

- ``operation``: the request's ``operation``, else the last segment of its endpoint path
  (``/orders/export`` → ``export``; ``/`` → ``default``);
- ``payload``: the request's payload (a JSON object);
- ``idempotency_key``: the ``Idempotency-Key`` header, so a retried or re-sent call queues
  one record, not two.

The answer is 202 with the record id: the legacy system gets the record in its next batch.
"""

from __future__ import annotations

from hybridmesh.batch.integration import BatchIntegration
from hybridmesh.core.errors import HybridMeshError, TransportError, ValidationError
from hybridmesh.transports.base import OutboundRequest, TransportResponse, header

DEFAULT_OPERATION = "default"


class BatchTransport:
    """Queues calls on ``integration``. Bad input (a payload that is not an object, a name
    that cannot be a file name) raises :class:`TransportError` with status 422, which the
    client does not retry; a store failure raises it without a status, which it may."""

    pattern = "batch"

    def __init__(self, integration: BatchIntegration) -> None:
        self.integration = integration

    async def send(self, request: OutboundRequest) -> TransportResponse:
        operation = request.operation or operation_from_path(request.path)
        key = header(request.headers, "Idempotency-Key") or None
        try:
            record = await self.integration.enqueue(
                request.target, operation, request.payload, idempotency_key=key
            )
        except ValidationError as error:
            raise TransportError(
                message=f"cannot queue this call as a batch record: {error.reason}",
                target=request.target,
                pattern=self.pattern,
                status=422,
            ) from error
        except HybridMeshError as error:
            raise TransportError(
                message=f"queueing failed: {type(error).__name__}: {error}",
                target=request.target,
                pattern=self.pattern,
            ) from error
        data = {
            "queued": record.id,
            "target": record.target,
            "operation": record.operation,
            "status": record.status.value,
        }
        return TransportResponse(202, data, {})

    async def close(self) -> None:
        return None


def operation_from_path(path: str) -> str:
    """The last segment of an endpoint path, the operation of a call that names none."""
    segments = [segment for segment in path.split("?", 1)[0].split("/") if segment]
    return segments[-1] if segments else DEFAULT_OPERATION


__all__ = ["DEFAULT_OPERATION", "BatchTransport", "operation_from_path"]
