"""What may be queued, how targets are configured, and how a call names its operation."""

from __future__ import annotations

from typing import Any

import pytest

from hybridmesh.batch import BatchTarget, FileDelivery, HttpBulkDelivery
from hybridmesh.batch.ledger import check_record
from hybridmesh.batch.transport import operation_from_path
from hybridmesh.core.errors import ValidationError


def test_a_payload_is_a_json_object() -> None:
    assert check_record("erp", "orders", None, None) == {}
    assert check_record("erp", "orders.v2", {"a": [1]}, "key-1") == {"a": [1]}


@pytest.mark.parametrize(
    ("target", "operation", "payload", "key", "field"),
    [
        ("erp", "orders", [1, 2], None, "payload"),
        ("erp", "orders", {"record_id": 1}, None, "payload"),
        ("erp", "orders", {"idempotency_key": 1}, None, "payload"),
        ("erp", "orders", {"bad\x01name": 1}, None, "payload"),
        ("erp", "orders", {"at": object()}, None, "payload"),
        ("erp", "../etc", {}, None, "operation"),
        ("", "orders", {}, None, "target"),
        ("erp", "orders", {}, "", "idempotency_key"),
        ("erp", "orders", {}, "x" * 201, "idempotency_key"),
    ],
)
def test_what_cannot_be_exported_is_refused_when_queued(
    target: str, operation: str, payload: Any, key: str | None, field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        check_record(target, operation, payload, key)
    assert [p.field for p in raised.value.problems] == [field]


def test_the_format_is_read_once_into_a_typed_delivery_channel() -> None:
    assert BatchTarget("erp").delivery == FileDelivery("csv")
    xml = BatchTarget("erp", format="xml", fields=("sku", "qty"))
    assert xml.delivery == FileDelivery("xml", ("sku", "qty"))
    assert xml.delivery.kind == "xml"
    bulk = BatchTarget("erp", format="http", endpoint="http://erp.internal/bulk")
    assert bulk.delivery == HttpBulkDelivery("http://erp.internal/bulk")
    assert bulk.delivery.kind == "http"


def test_target_settings_are_checked() -> None:
    assert BatchTarget("erp", schedule="@daily").cron is not None
    with pytest.raises(ValidationError, match="cron"):
        BatchTarget("erp", schedule="61 * * * *")
    with pytest.raises(ValidationError, match="needs an endpoint"):
        BatchTarget("erp", format="http")
    with pytest.raises(ValidationError, match="at least 1"):
        BatchTarget("erp", limit=0)
    with pytest.raises(ValidationError, match="csv, xml or http"):
        BatchTarget("erp", format="json")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "operation"),
    [("/orders/export", "export"), ("orders/", "orders"), ("/", "default"), ("", "default")],
)
def test_a_call_without_an_operation_uses_the_last_path_segment(path: str, operation: str) -> None:
    assert operation_from_path(path) == operation
