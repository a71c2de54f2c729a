"""The position arithmetic of the SQL log, without I/O: leased rows become batches, and a
settlement becomes the row updates that record it.

A group's position in a partition is the highest seq it is done with; ``head_attempts`` is
how often the next event it wants was delivered already. Event seqs only grow, but they
have gaps (skipped types, other groups' replays, retention), so "just before event s" is
written ``s - 1``: everything between the last event handled and ``s`` was skipped anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hybridmesh.core.ids import new_id
from hybridmesh.core.serialization import dumps
from hybridmesh.events.backend import Delivery, GroupSpec, PartitionBatch, Settlement
from hybridmesh.events.backends._sql_log import DeadLetterRow, SettleRow
from hybridmesh.events.envelope import CloudEvent, EventFormatError
from hybridmesh.events.subjects import matches


@dataclass(frozen=True)
class Lease:
    """The token of a :class:`PartitionBatch`: what settling it needs to know."""

    partition: int
    token: str  # the lease's unique token: a settle only counts while it is current
    seqs: tuple[int, ...]  # of the deliveries, in order
    first_attempt: int
    read_upto: int  # the highest seq looked at; all of it is done when every delivery is

    def attempt(self, index: int) -> int:
        return self.first_attempt if index == 0 else 1


@dataclass(slots=True, frozen=True)
class SettleWrite:
    """What records one settlement: its row, and the dead letter to write before it (the
    row ends the lease the dead letter is written under)."""

    row: SettleRow
    dead_letter: DeadLetterRow | None = None


def plan_batches(
    spec: GroupSpec, token: str, leased: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> tuple[list[PartitionBatch], list[SettleRow]]:
    """Turn the rows read for the ``leased`` partitions into batches (oldest first), and
    the rows that release the partitions holding nothing the group wants, past what was
    skipped.

    ``rows`` have ``seq``, ``partition``, ``type`` and ``body`` (NULL for rows the query
    already ruled out); ``leased`` has ``partition``, ``position`` and ``head_attempts``.
    """
    by_partition: dict[int, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: int(r["seq"])):
        by_partition.setdefault(row["partition"], []).append(row)
    batches: list[PartitionBatch] = []
    releases: list[SettleRow] = []
    for lease in leased:
        partition, position = lease["partition"], lease["position"]
        head_attempts = lease["head_attempts"]
        deliveries: list[Delivery] = []
        read_upto = position
        for row in by_partition.get(partition, ()):
            read_upto = row["seq"]
            body = row["body"]
            if body is None or not matches(spec.pattern, row["type"]):
                continue
            attempt = 1 if deliveries else head_attempts + 1
            deliveries.append(_delivery(body, read_upto, attempt))
        if deliveries:
            seqs = tuple(int(d.position) for d in deliveries)
            handle = Lease(partition, token, seqs, head_attempts + 1, read_upto)
            batches.append(PartitionBatch(spec.name, str(partition), deliveries, handle))
        else:
            releases.append(SettleRow(read_upto, 0, 0.0, spec.name, partition, token))
    batches.sort(key=lambda batch: int(batch.deliveries[0].position))
    return batches, releases


def given_back(group: str, token: str, leased: list[dict[str, Any]]) -> list[SettleRow]:
    """The rows that give the ``leased`` partitions back as they were, before anything
    of them was delivered (a taken-over head keeps its count)."""
    return [
        SettleRow(row["position"], row["head_attempts"], 0.0, group, row["partition"], token)
        for row in leased
    ]


def settle_rows(batch: PartitionBatch, settlement: Settlement, now: float) -> SettleWrite:
    """What records ``settlement`` of ``batch`` (whose token is a :class:`Lease`): the row
    that moves the partition's position, and a dead letter when it dead-letters one."""
    lease: Lease = batch.token
    seqs = lease.seqs
    done = max(0, min(settlement.handled, len(seqs)))
    if done == len(seqs):
        return SettleWrite(_settled_at(batch, lease.read_upto))
    if settlement.retry_after is not None:
        not_before = now + settlement.retry_after
        return SettleWrite(_settled_at(batch, seqs[done] - 1, lease.attempt(done), not_before))
    if settlement.dead_letter is not None:
        after = seqs[done + 1] - 1 if done + 1 < len(seqs) else lease.read_upto
        letter = _dead_letter(batch, done, settlement.dead_letter, now)
        return SettleWrite(_settled_at(batch, after), letter)
    # Released untouched: the head comes again, with the attempts it had.
    return SettleWrite(_settled_at(batch, seqs[done] - 1, lease.attempt(done) - 1))


def _settled_at(
    batch: PartitionBatch, position: int, head_attempts: int = 0, not_before: float = 0.0
) -> SettleRow:
    lease: Lease = batch.token
    return SettleRow(position, head_attempts, not_before, batch.group, lease.partition, lease.token)


def _dead_letter(batch: PartitionBatch, index: int, reason: str, now: float) -> DeadLetterRow:
    lease: Lease = batch.token
    delivery = batch.deliveries[index]
    event = delivery.event
    if delivery.raw:
        body = delivery.raw.decode(errors="replace")
    else:
        body = dumps(event.to_dict()) if event is not None else ""
    return DeadLetterRow(
        id=new_id(),
        group=batch.group,
        event_id=event.id if event else None,
        source=event.source if event else None,
        type=event.type if event else None,
        reason=reason,
        attempts=lease.attempt(index),
        body=body,
        failed_at=now,
        partition=lease.partition,
        token=lease.token,
    )


def _delivery(body: str, seq: int, attempt: int) -> Delivery:
    # The log holds only events that were validated on publish: the trusted parse.
    try:
        event = CloudEvent.from_stored(body)
    except EventFormatError as error:
        return Delivery(None, attempt, raw=body.encode(), error=str(error), position=seq)
    return Delivery(event, attempt, position=seq)


__all__ = ["Lease", "SettleWrite", "given_back", "plan_batches", "settle_rows"]
