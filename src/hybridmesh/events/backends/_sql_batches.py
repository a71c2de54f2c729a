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


@dataclass(slots=True, frozen=True)
class Scan:
    """One leased partition, and the range of it that one look reads."""

    partition: int
    position: int  # the group is done with every seq up to this one
    head_attempts: int
    upto: int  # the last seq the look reads; every seq up to it has committed
    limit: int  # at most this many rows come back; when all do, it read up to the last
    newest: int  # the log's newest seq when leased: beyond ``upto``, the scan was cut short

    @classmethod
    def of(cls, leased: dict[str, Any], limit: int, span: int) -> Scan:
        """The scan of a partition as the lease returned it (with its ``first`` seq past
        the position and the log's ``newest``): from the first pending seq, ``span`` seqs
        at most, up to the newest."""
        position = int(leased["position"])
        first, newest = leased["first"], int(leased["newest"] or 0)
        upto = position if first is None else min(int(first) + span - 1, newest)
        return cls(leased["partition"], position, leased["head_attempts"], upto, limit, newest)


@dataclass(slots=True, frozen=True)
class Look:
    """What one look at the log came to: the batches to deliver, the partitions to give
    back (moved past what was read), and whether it passed over rows the group does not
    want (then the group is not idle) and stopped short of the end (then look again at
    once, rather than wait)."""

    batches: list[PartitionBatch]
    releases: list[SettleRow]
    passed_over: bool
    cut_short: bool


NOTHING = Look([], [], passed_over=False, cut_short=False)


def plan_batches(
    spec: GroupSpec, token: str, scans: list[Scan], rows: list[dict[str, Any]]
) -> Look:
    """Turn the rows read for the ``scans`` into batches (oldest first), and the rows
    that release the partitions holding nothing the group wants, past what was read.

    ``rows`` have ``seq``, ``partition``, ``type`` and ``body``: what the read returned
    (``_sql_queries.read_events_sql``), which may include types the group does not want
    when its condition only narrows; :func:`matches` decides.
    """
    by_partition: dict[int, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: int(r["seq"])):
        by_partition.setdefault(row["partition"], []).append(row)
    batches: list[PartitionBatch] = []
    releases: list[SettleRow] = []
    passed_over = cut_short = False
    for scan in scans:
        found = by_partition.get(scan.partition, [])
        full = len(found) >= scan.limit
        read_upto = int(found[-1]["seq"]) if full else max(scan.upto, scan.position)
        deliveries: list[Delivery] = []
        for row in found:
            if not matches(spec.pattern, row["type"]):
                continue
            attempt = 1 if deliveries else scan.head_attempts + 1
            deliveries.append(delivery_of(row["body"], int(row["seq"]), attempt))
        if deliveries:
            seqs = tuple(int(d.position) for d in deliveries)
            handle = Lease(scan.partition, token, seqs, scan.head_attempts + 1, read_upto)
            batches.append(PartitionBatch(spec.name, str(scan.partition), deliveries, handle))
            continue
        releases.append(SettleRow(read_upto, 0, 0.0, spec.name, scan.partition, token))
        if read_upto > scan.position:
            passed_over = True
            cut_short = cut_short or full or scan.upto < scan.newest
    batches.sort(key=lambda batch: int(batch.deliveries[0].position))
    return Look(batches, releases, passed_over, cut_short)


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


def delivery_of(body: str, seq: int, attempt: int) -> Delivery:
    """The delivery of a stored event (a malformed body is delivered with its error)."""
    # The log holds only events that were validated on publish: the trusted parse.
    try:
        event = CloudEvent.from_stored(body)
    except EventFormatError as error:
        return Delivery(None, attempt, raw=body.encode(), error=str(error), position=seq)
    return Delivery(event, attempt, position=seq)


__all__ = [
    "NOTHING",
    "Lease",
    "Look",
    "Scan",
    "SettleWrite",
    "delivery_of",
    "given_back",
    "plan_batches",
    "settle_rows",
]
