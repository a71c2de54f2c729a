"""Dead letters of the Kafka backend: a compacted topic, one record per letter.

``<prefix>.dead-letters`` has one partition and ``cleanup.policy=compact``. A letter is a
record keyed by its id, with the event's bytes as the value (the structured JSON form when
it parsed, else the bytes as received) and the rest in headers: the group, the reason, the
attempts, when it failed, and where the event was (topic, partition, offset), which Kafka
tools show as they are. The newest record of a key is the letter's state: a replay writes
the letter again with ``hybridmesh_replayed_at``; a purge writes a tombstone (no value).

Why a topic, not the store: Kafka teams look for dead letters on a topic (Kafka Connect and
Spring Kafka do the same), any consumer can read them, and the backend needs no database.
Reading the letters reads the topic from its start; dead letters are few, and compaction
keeps only the newest record of each.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from hybridmesh.core.clock import Clock
from hybridmesh.core.errors import NotFoundError
from hybridmesh.events.backend import BackendUnavailableError, DeadLetter, Delivery
from hybridmesh.events.envelope import CloudEvent

GROUP = "hybridmesh_group"
REASON = "hybridmesh_reason"
ATTEMPTS = "hybridmesh_attempts"
FAILED_AT = "hybridmesh_failed_at"
REPLAYED_AT = "hybridmesh_replayed_at"
ORIGIN = "hybridmesh_origin"


def letter_id(group: str, topic: str, partition: int, offset: int) -> str:
    """A letter's id: the same delivery buried twice is one letter."""
    digest = hashlib.blake2b(
        f"{group}\x1f{topic}\x1f{partition}\x1f{offset}".encode(), digest_size=10
    )
    return "dl-" + digest.hexdigest()


def _time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


class DeadLetterTopic:
    """Adds, reads, marks and purges the letters on the dead-letter topic."""

    def __init__(
        self,
        topic: str,
        producer: AIOKafkaProducer,
        consumer_config: dict[str, Any],
        clock: Clock,
    ) -> None:
        self._tp = TopicPartition(topic, 0)
        self._producer = producer
        self._consumer_config = consumer_config
        self._clock = clock

    async def bury(
        self, group: str, delivery: Delivery, reason: str, topic: str, partition: int, offset: int
    ) -> None:
        """Store a dead letter durably (returns once the brokers have it)."""
        body = delivery.event.to_json() if delivery.event is not None else delivery.raw
        headers = {
            GROUP: group,
            REASON: reason,
            ATTEMPTS: str(delivery.attempt),
            FAILED_AT: self._clock.now().isoformat(),
            ORIGIN: f"{topic}/{partition}/{offset}",
        }
        await self._write(letter_id(group, topic, partition, offset), body, headers)

    async def _write(self, key: str, body: bytes | None, headers: dict[str, str]) -> None:
        try:
            await self._producer.send_and_wait(
                self._tp.topic,
                body,
                key=key.encode(),
                partition=0,
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
        except KafkaError as error:
            raise BackendUnavailableError(
                f"Kafka: storing a dead letter failed: {error}"
            ) from error

    async def all(self) -> dict[str, tuple[DeadLetter, dict[str, str]]]:
        """Every letter, by id, with its headers (read from the topic's start)."""
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **self._consumer_config)
        letters: dict[str, tuple[DeadLetter, dict[str, str]]] = {}
        try:
            await consumer.start()
            consumer.assign([self._tp])
            end = (await consumer.end_offsets([self._tp]))[self._tp]
            await consumer.seek_to_beginning(self._tp)
            while await consumer.position(self._tp) < end:
                got = await consumer.getmany(self._tp, timeout_ms=1000, max_records=1000)
                for message in got.get(self._tp, []):
                    if message.offset >= end:
                        break
                    key = (message.key or b"").decode()
                    if message.value is None:
                        letters.pop(key, None)
                        continue
                    headers = {k: v.decode("utf-8", "replace") for k, v in message.headers}
                    letters[key] = (self._letter(key, message.value, headers), headers)
        except KafkaError as error:
            raise BackendUnavailableError(f"Kafka: reading dead letters failed: {error}") from error
        finally:
            await consumer.stop()
        return letters

    @staticmethod
    def _letter(key: str, body: bytes, headers: dict[str, str]) -> DeadLetter:
        try:
            event: CloudEvent | None = CloudEvent.from_json(body)
        except Exception:  # any bytes can end up here; they stay readable as the body
            event = None
        return DeadLetter(
            id=key,
            group=headers.get(GROUP, ""),
            reason=headers.get(REASON, ""),
            attempts=int(headers.get(ATTEMPTS, "0") or 0),
            failed_at=_time(headers.get(FAILED_AT)) or datetime.fromtimestamp(0, UTC),
            body=body,
            event=event,
            replayed_at=_time(headers.get(REPLAYED_AT)),
            extra={"origin": headers.get(ORIGIN)},
        )

    async def list(self, group: str | None, limit: int) -> list[DeadLetter]:
        letters = [letter for letter, _ in (await self.all()).values()]
        found = [d for d in letters if group is None or d.group == group]
        return sorted(found, key=lambda d: d.failed_at, reverse=True)[:limit]

    async def get(self, dead_letter_id: str) -> DeadLetter:
        found = (await self.all()).get(dead_letter_id)
        if found is None:
            raise NotFoundError(f"no dead letter {dead_letter_id!r}")
        return found[0]

    async def mark_replayed(self, dead_letter_id: str) -> DeadLetter:
        found = (await self.all()).get(dead_letter_id)
        if found is None:
            raise NotFoundError(f"no dead letter {dead_letter_id!r}")
        letter, headers = found
        now = self._clock.now()
        await self._write(letter.id, letter.body, {**headers, REPLAYED_AT: now.isoformat()})
        return replace(letter, replayed_at=now)

    async def purge(self, group: str | None) -> int:
        doomed = [
            key
            for key, (letter, _) in (await self.all()).items()
            if group is None or letter.group == group
        ]
        await asyncio.gather(*(self._write(key, None, {}) for key in doomed))  # tombstones
        return len(doomed)


__all__ = ["DeadLetterTopic", "letter_id"]
