"""What any CloudEvents bus on aiokafka must add to raw aiokafka's work per event, at least.

The Kafka goals ask the bus for at least 0.85 times raw aiokafka's throughput and 1.0 times
FastStream's. Every Kafka row is bound by this process's processor time (the broker runs in
its own process), so a throughput ratio is about the inverse ratio of processor time per
event: the bus may spend ``raw / 0.85`` microseconds an event, and ``faststream``. Raw
aiokafka's own figure holds its peer's JSON work, ``json.dumps`` and ``json.loads`` of the
same body size, which the bus does with orjson instead; that difference is credited to the
bus.

What a bus whose handlers take validated CloudEvents cannot leave out, measured here one
piece at a time, without a broker:

- an id for each event (the bus's UUID v7; a UUID v4 from ``uuid`` costs about the same);
- the event's time in RFC 3339, as the binding writes it;
- the binding's headers (``ce_*``, ``content-type``), written into and read out of a record
  batch by aiokafka's compiled record code;
- the headers' values read as text, for the attributes;
- an event object built on each side (the publisher's and the handler's);
- checking the received event (records on a topic come from any producer);
- awaiting the handler, a coroutine function.

Not counted, though a bus needs them too: trace context, dropping copies, and recording
that an event was handled. So the floor is low, and the budget it is compared with
generous.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from hybridmesh.core.ids import uuid7
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.events.kafka_binding import to_kafka

REPEAT = 5  # rounds of each measurement; the quickest counts (other work only slows one)
EVENTS = 20_000  # events per round
BATCH = 500  # records per record batch, as a fetch of the benchmark's rows


def _per_event(work: Callable[[], Any]) -> float:
    """Microseconds an event of ``work``, which handles ``EVENTS`` events; best round."""
    best = float("inf")
    for _ in range(REPEAT):
        began = time.process_time()
        work()
        best = min(best, time.process_time() - began)
    return best / EVENTS * 1e6


def _records(headers: list[tuple[str, bytes]], value: bytes) -> Callable[[], None]:
    """Writing ``EVENTS`` records into batches, and reading them back."""

    def work() -> None:
        for _ in range(EVENTS // BATCH):
            builder = DefaultRecordBatchBuilder(
                magic=2,
                compression_type=0,
                is_transactional=0,
                producer_id=-1,
                producer_epoch=-1,
                base_sequence=-1,
                batch_size=1 << 20,
            )
            for offset in range(BATCH):
                builder.append(offset, timestamp=None, key=None, value=value, headers=headers)
            for record in DefaultRecordBatch(bytes(builder.build())):
                _ = record.headers, record.value

    return work


def _sample(body_bytes: int) -> tuple[CloudEvent, dict[str, Any]]:
    """An event as the benchmark publishes it (with a traceparent), and a peer's body."""
    event = CloudEvent.create("bench.event", "/benchmarks/events", {"n": 1, "ts": time.time()})
    event = event.with_extensions(traceparent=f"00-{'1' * 32}-{'2' * 16}-01").validate()
    bare = len(json.dumps({"n": 1, "ts": time.time(), "pad": ""}))
    return event, {"n": 1, "ts": time.time(), "pad": "x" * max(0, body_bytes - bare)}


async def _handle(event: CloudEvent) -> None:
    return None


async def _handled(event: CloudEvent) -> None:
    for _ in range(EVENTS):
        await _handle(event)


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine``, which never waits, to its end outside an event loop (the
    benchmark's own loop is running when this measures)."""
    with contextlib.suppress(StopIteration):
        coroutine.send(None)
    coroutine.close()


def measure(body_bytes: int) -> dict[str, float]:
    """Microseconds an event of each part (rounded), and their sum: the floor."""
    event, body = _sample(body_bytes)
    record = to_kafka(event)
    value = json.dumps(body).encode()
    stdlib_json = _per_event(lambda: [json.loads(json.dumps(body)) for _ in range(EVENTS)])
    data_json = _per_event(lambda: [orjson.loads(orjson.dumps(event.data)) for _ in range(EVENTS)])
    parts = {
        "id": _per_event(lambda: [uuid7() for _ in range(EVENTS)]),
        "time": _per_event(
            lambda: [datetime.now(UTC).isoformat(timespec="microseconds") for _ in range(EVENTS)]
        ),
        "headers": _per_event(_records(record.headers, value)) - _per_event(_records([], value)),
        "json_credit": data_json - stdlib_json,
    }
    headers = record.headers
    parts["attributes"] = _per_event(
        lambda: [{name: raw.decode() for name, raw in headers} for _ in range(EVENTS)]
    )
    parts["objects"] = 2 * _per_event(
        lambda: [
            CloudEvent(
                type=event.type,
                source=event.source,
                id=event.id,
                time=event.time,
                datacontenttype=event.datacontenttype,
                data=event.data,
                extensions=event.extensions,
            )
            for _ in range(EVENTS)
        ]
    )
    parts["check"] = _per_event(
        lambda: [replace(event, _valid=False).validate() for _ in range(EVENTS)]
    )
    parts["check"] -= _per_event(lambda: [replace(event, _valid=False) for _ in range(EVENTS)])
    parts["handler"] = _per_event(lambda: _run(_handled(event)))
    figures = {name: round(value, 2) for name, value in parts.items()}
    figures["floor"] = round(sum(parts.values()), 2)
    return figures


def budgets(raw_cpu: float, faststream_cpu: float, raw_goal: float) -> dict[str, float]:
    """Microseconds an event the bus may add to raw aiokafka's own work under each goal."""
    return {
        "vs_raw": round(raw_cpu / raw_goal - raw_cpu, 2),
        "vs_faststream": round(faststream_cpu - raw_cpu, 2),
    }


__all__ = ["budgets", "measure"]
