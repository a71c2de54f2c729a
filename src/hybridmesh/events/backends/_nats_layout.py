"""Where the JetStream backend keeps things: stream, subject and consumer names.

Three streams per prefix (``hybridmesh`` below):

- ``HYBRIDMESH_EVENTS`` holds the events, on ``hybridmesh.ev.<origin>.<partition>.<type>``.
  ``origin`` is ``pub`` for a normal publish and ``r-<group>`` for a replay meant for one
  group only. One durable pull consumer per group and partition filters
  ``hybridmesh.ev.*.<partition>.<pattern>``: the partition and the group's pattern are
  matched by the server, replays for other groups are skipped by the client.
- ``HYBRIDMESH_LEASES`` holds one lease token per group and partition, on
  ``hybridmesh.lease.<group>.<partition>`` (one message per subject). Whoever holds a token
  (fetched it, not yet released) may pull that partition.
- ``HYBRIDMESH_DLQ`` holds the dead letters, on ``hybridmesh.dlq.<group>.<seq>`` (one
  message per subject; a replay rewrites it with the replay time).

Group names that are not NATS tokens are mapped to tokens (:func:`group_token`).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass

from hybridmesh.core.errors import ConfigurationError
from hybridmesh.events.envelope import CloudEvent

PUBLISHED = "pub"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def group_token(group: str) -> str:
    """``group`` as one NATS subject token (and consumer-name part); stable across processes."""
    if _TOKEN.fullmatch(group):
        return group
    digest = hashlib.blake2b(group.encode(), digest_size=4).hexdigest()
    return re.sub(r"[^A-Za-z0-9_-]", "_", group)[:40] + "_" + digest


def replay_origin(token: str) -> str:
    """The origin token of events replayed to one group."""
    return f"r-{token}"


def message_id(event: CloudEvent) -> str:
    """The ``Nats-Msg-Id`` of an event: its (source, id), hashed, so dedupe spans both."""
    key = f"{event.source}\x1f{event.id}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


def partition_of(event: CloudEvent, partitions: int) -> int:
    """The partition of ``event``: by its partition key, else by its id (as every backend)."""
    key = event.partition_key or event.id
    return zlib.crc32(key.encode()) % partitions


def ack_info(reply: str) -> tuple[int, int]:
    """(stream sequence, times delivered) from a JetStream ack subject, without building
    nats-py's metadata object (this runs once per delivered message)."""
    tokens = reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return int(tokens[5]), int(tokens[4])
    # $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>...
    return int(tokens[7]), int(tokens[6])


@dataclass(frozen=True)
class Layout:
    """The names under one prefix."""

    prefix: str
    partitions: int

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.prefix):
            raise ConfigurationError(
                f"NATS prefix {self.prefix!r}: use 1-64 letters, digits, '-' or '_'"
            )
        if not 1 <= self.partitions <= 1024:
            raise ConfigurationError(f"partitions must be 1..1024, not {self.partitions}")

    @property
    def events_stream(self) -> str:
        return f"{self.prefix.upper()}_EVENTS"

    @property
    def leases_stream(self) -> str:
        return f"{self.prefix.upper()}_LEASES"

    @property
    def dlq_stream(self) -> str:
        return f"{self.prefix.upper()}_DLQ"

    @property
    def events_subjects(self) -> list[str]:
        return [f"{self.prefix}.ev.*.*.>"]

    def event_subject(self, origin: str, partition: int, type_: str) -> str:
        return f"{self.prefix}.ev.{origin}.{partition}.{type_}"

    def origin_of(self, subject: str) -> str:
        """The origin token of an event subject (``pub`` or ``r-<group>``)."""
        return subject[len(self.prefix) + 4 :].split(".", 1)[0]

    def consumer_filter(self, partition: int, pattern: str) -> str:
        return f"{self.prefix}.ev.*.{partition}.{pattern}"

    def doorbell(self, pattern: str) -> str:
        """Every event subject a group with ``pattern`` may want, in any partition."""
        return f"{self.prefix}.ev.*.*.{pattern}"

    def consumer(self, token: str, partition: int) -> str:
        return f"{token}-p{partition}"

    def lease_consumer(self, token: str) -> str:
        return f"{token}-lease"

    def lease_subject(self, token: str, partition: int) -> str:
        return f"{self.prefix}.lease.{token}.{partition}"

    def lease_filter(self, token: str) -> str:
        return f"{self.prefix}.lease.{token}.*"

    def dlq_subject(self, token: str, seq: int) -> str:
        return f"{self.prefix}.dlq.{token}.{seq}"

    def dlq_filter(self, token: str | None) -> str:
        """The dead letters of one group, or of all groups."""
        return f"{self.prefix}.dlq.>" if token is None else f"{self.prefix}.dlq.{token}.*"


__all__ = [
    "PUBLISHED",
    "Layout",
    "ack_info",
    "group_token",
    "message_id",
    "partition_of",
    "replay_origin",
]
