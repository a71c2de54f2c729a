"""The batch integration on every store (SQLite file and PostgreSQL): queueing, flushing to
files and a bulk endpoint, results read back, failures in the review queue, and races."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import pytest
from tests.integration.batch.helpers import START, BulkEndpoint, OpenBatch

from hybridmesh.batch import (
    BatchIntegration,
    BatchRun,
    BatchTarget,
    RecordStatus,
    RunStatus,
    review_retry_handler,
)
from hybridmesh.core.clock import FakeClock
from hybridmesh.core.errors import ValidationError
from hybridmesh.review import ReviewQueue


def csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text("utf-8"), newline="")))


def write_acks(exchange: Path, target: str, name: str, text: str) -> Path:
    inbox = exchange / target / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_text(text, "utf-8")
    return path


def result(record_id: str, status: str) -> str:
    return f'<result record_id="{record_id}" status="{status}"/>'


async def queued(batch: BatchIntegration, n: int, operation: str = "orders") -> list[str]:
    ids = []
    for i in range(n):
        record = await batch.enqueue("erp", operation, {"order": f"O-{i}", "qty": i})
        ids.append(record.id)
    return ids


# -- queueing --------------------------------------------------------------------------------


async def test_enqueueing_the_same_key_twice_keeps_one_record(open_batch: OpenBatch) -> None:
    batch = await open_batch()
    first = await batch.enqueue("erp", "orders", {"order": "O-1"}, idempotency_key="ex-1/step-2")
    again = await batch.enqueue("erp", "orders", {"order": "O-1"}, idempotency_key="ex-1/step-2")
    other = await batch.enqueue("erp", "invoices", {"order": "O-1"}, idempotency_key="ex-1/step-2")
    assert again.id == first.id and again.status is RecordStatus.QUEUED
    assert other.id != first.id  # the key is unique per target and operation
    await batch.enqueue("erp", "orders", {"order": "O-2"})
    await batch.enqueue("erp", "orders", {"order": "O-2"})  # no key: no dedupe
    assert len(await batch.records(target="erp")) == 4


async def test_a_key_seen_before_returns_its_record_even_after_it_was_sent(
    open_batch: OpenBatch,
) -> None:
    batch = await open_batch()
    first = await batch.enqueue("erp", "orders", {"n": 1}, idempotency_key="k")
    await batch.flush()
    again = await batch.enqueue("erp", "orders", {"n": 1}, idempotency_key="k")
    assert again.id == first.id and again.status is RecordStatus.SENT
    assert await batch.flush() == []


async def test_concurrent_enqueues_of_one_key_make_one_record(open_batch: OpenBatch) -> None:
    a, b = await open_batch(), await open_batch()
    records = await asyncio.gather(
        *(x.enqueue("erp", "orders", {"n": 1}, idempotency_key="same") for x in (a, b, a, b))
    )
    assert len({r.id for r in records}) == 1
    assert len(await a.records()) == 1


async def test_bad_records_are_refused(open_batch: OpenBatch) -> None:
    batch = await open_batch()
    with pytest.raises(ValidationError, match="JSON object"):
        await batch.enqueue("erp", "orders", ["not", "an", "object"])
    with pytest.raises(ValidationError, match="operation"):
        await batch.enqueue("erp", "../../etc", {})
    assert await batch.records() == []


# -- flushing to files -----------------------------------------------------------------------


async def test_a_full_queue_is_flushed_at_its_limit(open_batch: OpenBatch, exchange: Path) -> None:
    batch = await open_batch(targets=[BatchTarget("erp", limit=3)])
    ids = await queued(batch, 2)
    await batch.drain()
    assert await batch.runs() == []
    ids += await queued(batch, 1)
    await batch.drain()
    (run,) = await batch.runs()
    assert run.records == 3 and run.status is RunStatus.SENT and run.format == "csv"
    assert [row["record_id"] for row in csv_rows(Path(run.location))] == ids
    assert {r.status for r in await batch.records()} == {RecordStatus.SENT}


async def test_enqueues_racing_past_the_limit_flush_in_runs_of_at_most_the_limit(
    open_batch: OpenBatch,
) -> None:
    batch = await open_batch(targets=[BatchTarget("erp", limit=5)])
    await asyncio.gather(*(batch.enqueue("erp", "orders", {"n": i}) for i in range(23)))
    await batch.drain()
    await batch.run_due()  # the scheduler's pass flushes what filled up meanwhile
    runs = await batch.runs()
    assert runs and all(run.records == 5 for run in runs)
    queued = await batch.records(status="queued")
    assert len(queued) < 5 and len(queued) + 5 * len(runs) == 23


async def test_a_flush_makes_runs_of_at_most_the_limit(open_batch: OpenBatch) -> None:
    batch = await open_batch(targets=[BatchTarget("erp", limit=4)])
    async with batch.store.transaction() as tx:  # in a transaction: no flush at the limit
        for i in range(10):
            await batch.enqueue("erp", "orders", {"n": i}, tx=tx)
    runs = await batch.flush()
    assert [r.records for r in runs] == [4, 4, 2]
    assert {r.status for r in await batch.records()} == {RecordStatus.SENT}


async def test_csv_and_xml_files_land_in_the_exchange_dir(
    open_batch: OpenBatch, exchange: Path
) -> None:
    batch = await open_batch(
        targets=[
            BatchTarget("erp", "orders", fields=("order", "lines")),
            BatchTarget("erp", "*", format="xml"),
        ]
    )
    order = await batch.enqueue(
        "erp", "orders", {"order": 'O-1, "big"', "lines": [{"sku": "A"}]}, idempotency_key="k1"
    )
    invoice = await batch.enqueue("erp", "invoices", {"note": "<b>&</b>", "total": 9.5})
    runs = {r.operation: r for r in await batch.flush()}

    csv_run, xml_run = runs["orders"], runs["invoices"]
    assert csv_run.location == str(exchange / "erp" / "outbox" / f"orders-{csv_run.id}.csv")
    assert csv_rows(Path(csv_run.location)) == [
        {
            "record_id": order.id,
            "idempotency_key": "k1",
            "order": 'O-1, "big"',
            "lines": '[{"sku":"A"}]',
        }
    ]
    assert xml_run.location == str(exchange / "erp" / "outbox" / f"invoices-{xml_run.id}.xml")
    root = ET.parse(xml_run.location).getroot()
    assert root.attrib["run"] == xml_run.id and root.attrib["operation"] == "invoices"
    (record,) = root
    assert record.attrib == {"id": invoice.id}
    assert {f.attrib["name"]: f.text for f in record} == {"note": "<b>&</b>", "total": "9.5"}
    assert sorted(p.name for p in (exchange / "erp" / "outbox").iterdir()) == sorted(
        Path(r.location).name for r in runs.values()
    )


async def test_the_cron_schedule_flushes_a_queue_when_due(
    open_batch: OpenBatch, clock: FakeClock
) -> None:
    batch = await open_batch(targets=[BatchTarget("erp", format="xml", schedule="0 * * * *")])
    await queued(batch, 2)
    assert await batch.run_due() == []
    clock.advance(59 * 60)  # 00:59
    assert await batch.run_due() == []
    clock.advance(60)  # 01:00
    (run,) = await batch.run_due()
    assert run.records == 2 and run.created_at == START + timedelta(hours=1)
    assert ET.parse(run.location).getroot().attrib["created"] == run.created_at.isoformat()
    await queued(batch, 1)
    clock.advance(30 * 60)  # 01:30: the next slot is 02:00
    assert await batch.run_due() == []
    clock.advance(30 * 60)
    assert [r.records for r in await batch.run_due()] == [1]


async def test_the_running_loop_flushes_on_schedule(
    open_batch: OpenBatch, clock: FakeClock
) -> None:
    batch = await open_batch(targets=[BatchTarget("erp", schedule="*/5 * * * *")])
    await queued(batch, 1)
    batch.start()
    runs = await wait_for_runs(batch)
    await batch.stop()
    assert runs[0].created_at == START + timedelta(minutes=5)
    assert clock.now() >= START + timedelta(minutes=5)


async def wait_for_runs(batch: BatchIntegration) -> list[BatchRun]:
    """The runs, once there are any: the loop runs in a task, on the fake clock."""
    for _ in range(1000):
        if runs := await batch.runs():
            return runs
        await asyncio.sleep(0.01)
    raise AssertionError("the loop made no run within 10 s")


async def test_two_concurrent_flushes_put_each_record_in_exactly_one_run(
    open_batch: OpenBatch,
) -> None:
    targets = [BatchTarget("erp", limit=7)]
    a, b = await open_batch(targets=targets), await open_batch(targets=targets)
    async with a.store.transaction() as tx:
        ids = [(await a.enqueue("erp", "orders", {"n": i}, tx=tx)).id for i in range(60)]
    results = await asyncio.gather(a.flush(), b.flush(), a.flush(), b.flush())
    runs = [run for made in results for run in made]
    exported = [row["record_id"] for run in runs for row in csv_rows(Path(run.location))]
    assert sorted(exported) == sorted(ids)  # every record once, none twice
    assert all(run.records <= 7 for run in runs)
    records = await a.records(limit=100)
    assert {r.status for r in records} == {RecordStatus.SENT}
    assert {r.run_id for r in records} == {run.id for run in runs}


# -- results ---------------------------------------------------------------------------------


async def test_a_failed_record_in_an_ack_file_goes_to_the_review_queue(
    open_batch: OpenBatch, exchange: Path
) -> None:
    batch = await open_batch()
    ok, bad, late = await queued(batch, 3)
    (run,) = await batch.flush()
    acks = write_acks(
        exchange,
        "erp",
        "acks-1.csv",
        f"record_id,status,error\n{ok},ok,\n{bad},failed,unknown SKU A-9\nnope,ok,\n",
    )
    report = await batch.collect_results()
    assert (report.acknowledged, report.failed, report.unknown) == (1, 1, ["nope"])
    assert report.files == [str(acks)] and not acks.exists()
    assert (exchange / "erp" / "inbox" / "processed" / "acks-1.csv").exists()

    assert (await batch.record(ok)).status is RecordStatus.ACKNOWLEDGED
    failed = await batch.record(bad)
    assert failed.status is RecordStatus.FAILED and failed.error == "unknown SKU A-9"
    assert (await batch.record(late)).status is RecordStatus.SENT  # no result yet
    (item,) = await batch.review.list(origin="batch")
    assert item.status == "open" and item.origin_ref == bad and item.reason == "unknown SKU A-9"
    assert item.payload["target"] == "erp" and item.payload["operation"] == "orders"
    assert item.payload["payload"] == {"order": "O-1", "qty": 1}
    assert (await batch.runs())[0].status is RunStatus.SENT  # one record still out

    write_acks(exchange, "erp", "acks-2.xml", f"<results>{result(late, 'ok')}</results>")
    assert (await batch.collect_results()).acknowledged == 1
    (done,) = await batch.runs()
    assert done.id == run.id and done.status is RunStatus.PARTIALLY_FAILED
    assert done.acknowledged_at is not None


async def test_a_repeated_ack_file_changes_nothing(open_batch: OpenBatch, exchange: Path) -> None:
    batch = await open_batch()
    (bad,) = await queued(batch, 1)
    await batch.flush()
    text = f"record_id,status,error\n{bad},failed,no\n"
    write_acks(exchange, "erp", "acks.csv", text)
    await batch.collect_results()
    write_acks(exchange, "erp", "acks.csv", text)
    report = await batch.collect_results()
    assert (report.failed, report.ignored) == (0, 1)
    assert len(await batch.review.list(origin="batch")) == 1
    processed = exchange / "erp" / "inbox" / "processed"
    assert sorted(p.name for p in processed.iterdir()) == ["acks.1.csv", "acks.csv"]


async def test_requeue_through_the_review_queue_sends_the_record_again(
    open_batch: OpenBatch, exchange: Path
) -> None:
    batch = await open_batch()
    review = batch.review
    review.register_retry("batch", review_retry_handler(batch))
    ok, bad = await queued(batch, 2)
    await batch.flush()
    write_acks(exchange, "erp", "a.csv", f"record_id,status\n{ok},ok\n{bad},failed\n")
    await batch.collect_results()
    (item,) = await review.list(origin="batch")
    assert item.reason == "rejected by erp (no reason given)"

    retried = await review.retry(item.id, note="SKU created")
    assert retried.status == "retried"
    assert (await batch.record(bad)).status is RecordStatus.QUEUED
    (run,) = await batch.flush()
    assert [row["record_id"] for row in csv_rows(Path(run.location))] == [bad]
    with pytest.raises(ValidationError, match="only failed records"):
        await batch.requeue(ok)


async def test_a_malformed_result_file_is_rejected_and_the_rest_applied(
    open_batch: OpenBatch, exchange: Path, caplog: pytest.LogCaptureFixture
) -> None:
    batch = await open_batch()
    first, second = await queued(batch, 2)
    await batch.flush()
    bad = write_acks(exchange, "erp", "a-bad.csv", f"record_id,status\n{first},ok\n{second},??\n")
    good = write_acks(exchange, "erp", "b-good.xml", f"<results>{result(second, 'ok')}</results>")
    write_acks(exchange, "erp", ".c-partial.csv", "record_id,sta")  # still being written
    with caplog.at_level(logging.ERROR, logger="hybridmesh.batch"):
        report = await batch.collect_results()
    assert list(report.rejected) == [str(bad)] and report.files == [str(good)]
    assert f"{bad}:3: error" in report.rejected[str(bad)]
    assert any(str(bad) in r.getMessage() and ":3:" in r.getMessage() for r in caplog.records)
    assert (exchange / "erp" / "inbox" / "rejected" / "a-bad.csv").exists()
    assert (exchange / "erp" / "inbox" / ".c-partial.csv").exists()
    assert (await batch.record(first)).status is RecordStatus.SENT  # nothing of it applied
    assert (await batch.record(second)).status is RecordStatus.ACKNOWLEDGED


async def test_results_for_another_targets_records_are_unknown(
    open_batch: OpenBatch, exchange: Path
) -> None:
    batch = await open_batch()
    (record,) = await queued(batch, 1)
    await batch.flush()
    write_acks(exchange, "crm", "a.csv", f"record_id,status\n{record},ok\n")
    report = await batch.collect_results()
    assert report.unknown == [record]
    assert (await batch.record(record)).status is RecordStatus.SENT


# -- a bulk endpoint -------------------------------------------------------------------------


async def test_a_bulk_endpoint_acknowledges_at_once(
    open_batch: OpenBatch, bulk: BulkEndpoint
) -> None:
    batch = await open_batch(
        targets=[BatchTarget("erp", format="http", endpoint=f"{bulk.url}/orders")]
    )
    ok = await batch.enqueue("erp", "orders", {"order": "O-1"}, idempotency_key="k1")
    bad = await batch.enqueue("erp", "orders", {"order": "O-2"})
    lost = await batch.enqueue("erp", "orders", {"order": "O-3"})
    bulk.fail[bad.id] = "credit limit"
    bulk.skip.add(lost.id)
    (run,) = await batch.flush()

    (body,) = bulk.bodies
    assert bulk.headers[0]["Idempotency-Key"] == run.id == body["run_id"]
    assert (body["target"], body["operation"]) == ("erp", "orders")
    assert body["records"][0] == {
        "record_id": ok.id,
        "idempotency_key": "k1",
        "payload": {"order": "O-1"},
    }
    assert run.format == "http" and run.location == f"{bulk.url}/orders"
    assert run.status is RunStatus.PARTIALLY_FAILED
    assert (await batch.record(ok.id)).status is RecordStatus.ACKNOWLEDGED
    items = {i.origin_ref: i for i in await batch.review.list(origin="batch")}
    assert items[bad.id].reason == "credit limit"
    assert "no result for this record" in items[lost.id].reason
    assert (await batch.record(lost.id)).status is RecordStatus.FAILED


async def test_an_unavailable_bulk_endpoint_leaves_the_records_queued(
    open_batch: OpenBatch, bulk: BulkEndpoint
) -> None:
    endpoint = f"{bulk.url}/orders"
    batch = await open_batch(targets=[BatchTarget("erp", format="http", endpoint=endpoint)])
    ids = await queued(batch, 3)
    bulk.status = 503
    (failed,) = await batch.flush()
    assert failed.status is RunStatus.FAILED and "503" in (failed.error or "")
    assert {r.status for r in await batch.records()} == {RecordStatus.QUEUED}
    assert await batch.review.list(origin="batch") == []

    bulk.status = 200
    (delivered,) = await batch.flush()
    assert delivered.status is RunStatus.ACKNOWLEDGED and delivered.id != failed.id
    assert [r["record_id"] for r in bulk.bodies[-1]["records"]] == ids
    assert {r.status for r in await batch.records()} == {RecordStatus.ACKNOWLEDGED}


async def test_a_redirect_from_the_bulk_endpoint_is_not_followed(
    open_batch: OpenBatch, bulk: BulkEndpoint
) -> None:
    moved = bulk.url.removesuffix("/bulk") + "/moved"  # answers 307 to /bulk/orders
    batch = await open_batch(targets=[BatchTarget("erp", format="http", endpoint=moved)])
    await queued(batch, 2)
    (failed,) = await batch.flush()
    assert failed.status is RunStatus.FAILED and "answered 307" in (failed.error or "")
    assert bulk.bodies == []
    assert {r.status for r in await batch.records()} == {RecordStatus.QUEUED}


async def test_an_unreachable_bulk_endpoint_leaves_the_records_queued(
    open_batch: OpenBatch, bulk: BulkEndpoint
) -> None:
    closed = "http://127.0.0.1:9/bulk"  # the discard port: nothing listens on loopback
    batch = await open_batch(targets=[BatchTarget("erp", format="http", endpoint=closed)])
    await queued(batch, 2)
    (failed,) = await batch.flush()
    assert failed.status is RunStatus.FAILED and "no answer" in (failed.error or "")
    assert {r.status for r in await batch.records()} == {RecordStatus.QUEUED}


async def test_a_post_that_never_got_an_answer_is_requeued_later(
    open_batch: OpenBatch, bulk: BulkEndpoint, clock: FakeClock
) -> None:
    batch = await open_batch(
        targets=[BatchTarget("erp", format="http", endpoint=bulk.url)], http_timeout=10
    )
    (record,) = await queued(batch, 1)
    async with batch.store.transaction() as tx:  # as if the process died mid-POST
        await batch.ledger.claim(tx, "erp", "orders", "run-lost", 10)
        await batch.ledger.add_run(tx, "run-lost", "erp", "orders", "http", bulk.url, 1)
    assert await batch.recover_stale_runs() == []
    clock.advance(51)
    (lost,) = await batch.recover_stale_runs()
    assert lost.id == "run-lost" and lost.status is RunStatus.FAILED
    assert (await batch.record(record)).status is RecordStatus.QUEUED


async def test_the_review_queue_defaults_to_one_on_the_same_store(
    open_batch: OpenBatch, exchange: Path, clock: FakeClock
) -> None:
    batch = await open_batch(review=None)
    (record,) = await queued(batch, 1)
    await batch.flush()
    write_acks(exchange, "erp", "a.csv", f"record_id,status,error\n{record},failed,x\n")
    await batch.collect_results()
    (item,) = await ReviewQueue(batch.store, clock=clock).list(origin="batch")
    assert item.origin_ref == record
