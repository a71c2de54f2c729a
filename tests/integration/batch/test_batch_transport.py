"""The hybrid client's ``batch`` pattern: calls to a legacy system queued as batch records."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.batch.helpers import OpenBatch
from tests.integration.client.helpers import Scripted, registry_for

from hybridmesh.batch import BatchTransport, RecordStatus
from hybridmesh.client import CommunicationRequest, HybridClient
from hybridmesh.core.clock import FakeClock
from hybridmesh.core.errors import TransportError
from hybridmesh.observability import MeshMetrics


def client_for(url: str, transport: BatchTransport, clock: FakeClock) -> HybridClient:
    client = HybridClient(registry_for(url), metrics=MeshMetrics(), clock=clock)
    client.add_transport(transport)
    return client


async def test_a_batch_call_to_a_legacy_monolith_is_a_queued_record(
    open_batch: OpenBatch, upstream: tuple[Scripted, str], clock: FakeClock
) -> None:
    scripted, url = upstream
    batch = await open_batch()
    request = CommunicationRequest(
        type="batch",
        method="POST",
        endpoint="/orders/export",
        payload={"order": "O-7", "lines": [{"sku": "A", "qty": 2}]},
        headers={"Idempotency-Key": "saga-1/step-3"},
    )
    async with client_for(url, BatchTransport(batch), clock) as client:
        response = await client.communicate("orders", "erp", request)
        again = await client.communicate("orders", "erp", request)
        named = await client.communicate(
            "orders", "erp", CommunicationRequest(type="batch", operation="stock", payload=None)
        )
    assert scripted.hits == 0  # nothing went over REST
    assert response.pattern == "batch" and response.status == 202
    assert response.data["target"] == "erp" and response.data["operation"] == "export"
    assert again.data["queued"] == response.data["queued"]  # the same key: one record
    record = await batch.record(response.data["queued"])
    assert record.status is RecordStatus.QUEUED
    assert record.payload == {"order": "O-7", "lines": [{"sku": "A", "qty": 2}]}
    assert record.idempotency_key == "saga-1/step-3"
    assert named.data["operation"] == "stock"
    assert len(await batch.records(target="erp")) == 2


async def test_a_legacy_command_falls_back_to_the_batch_queue(
    open_batch: OpenBatch, upstream: tuple[Scripted, str], clock: FakeClock, exchange: Path
) -> None:
    scripted, url = upstream
    scripted.fail(5)  # REST answers 503 to every attempt
    batch = await open_batch()
    request = CommunicationRequest(
        type="command",
        method="POST",
        endpoint="/invoices",
        payload={"invoice": "I-1"},
        idempotency_key="inv-1",
    )
    async with client_for(url, BatchTransport(batch), clock) as client:
        response = await client.communicate("orders", "erp", request)
    assert response.pattern == "batch" and response.fallback_used
    record = await batch.record(response.data["queued"])
    assert (record.operation, record.idempotency_key) == ("invoices", "inv-1")
    (run,) = await batch.flush()
    assert Path(run.location).parent == exchange / "erp" / "outbox"


async def test_a_payload_that_cannot_be_a_record_is_a_client_error(
    open_batch: OpenBatch, upstream: tuple[Scripted, str], clock: FakeClock
) -> None:
    _, url = upstream
    batch = await open_batch()
    async with client_for(url, BatchTransport(batch), clock) as client:
        with pytest.raises(TransportError) as raised:
            await client.communicate(
                "orders", "erp", CommunicationRequest(type="batch", payload=[1, 2, 3])
            )
    assert raised.value.status == 422 and raised.value.pattern == "batch"
    assert await batch.records() == []
