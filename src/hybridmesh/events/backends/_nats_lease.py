"""Partition leases of the JetStream backend.

JetStream has no "one consumer at a time per partition" on NATS 2.9 (pinned consumers came
in 2.11). ``max_ack_pending=1`` gives it at one event per round trip; any larger value does
not: a second fetcher gets the events after the first one's batch, and while a retried event
waits, the events after it are delivered. So every group has one *lease token* per
partition, a message in the leases stream read by the group's lease consumer:

- fetching the token (it is then in flight, unacknowledged) takes the lease; nobody else
  can fetch it;
- the lease ends by itself when the token's ``ack_wait`` runs out (the holder died), a little
  after the leased events' own ``ack_wait``, so those are back in the queue first;
- releasing is a ``nak`` of the token, or, when what it carries changes, publishing the
  next token on the same subject (one message per subject, so it replaces the old one);
- a retry's delay closes the partition: whoever fetches a token whose ``not_before`` lies
  ahead naks it with the remaining delay, so the server keeps it until then.

The token carries :class:`LeaseState`: when the partition may be pulled again (a retry's
delay) and, per event, how many of its deliveries were not attempts (it was released
untouched behind a retried event), so ``Delivery.attempt`` counts attempts only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg

from hybridmesh.events.backend import Delivery


@dataclass(frozen=True)
class LeaseState:
    """What a partition's lease token carries besides the lease itself."""

    not_before: float = 0.0
    """Wall-clock time (epoch seconds) before which nobody pulls the partition."""
    released: Mapping[int, int] = field(default_factory=dict)
    """Stream sequence -> deliveries of that event that were releases, not attempts."""

    @classmethod
    def decode(cls, data: bytes) -> LeaseState:
        """Tolerant: an unreadable token is a fresh one (attempts may then count higher)."""
        try:
            raw: Any = json.loads(data) if data else {}
            released = {int(k): int(v) for k, v in dict(raw.get("released", {})).items()}
            return cls(float(raw.get("not_before", 0.0)), released)
        except (ValueError, TypeError, AttributeError):
            return cls()

    def encode(self) -> bytes:
        body: dict[str, Any] = {}
        if self.not_before:
            body["not_before"] = self.not_before
        if self.released:
            body["released"] = {str(k): v for k, v in sorted(self.released.items())}
        return json.dumps(body, separators=(",", ":")).encode()

    def attempt(self, seq: int, delivered: int) -> int:
        """The attempt number of a delivery, from the server's delivery count."""
        return max(1, delivered - self.released.get(seq, 0))

    def after(
        self,
        *,
        first: int,
        finished: Iterable[int],
        released: Iterable[int],
        not_before: float = 0.0,
    ) -> LeaseState:
        """The state once a batch starting at ``first`` is settled: ``finished`` events are
        gone for good, ``released`` ones come again without it counting as an attempt.
        Entries below ``first`` are dropped: the batch started at the oldest pending event,
        so they were finished earlier."""
        done = set(finished)
        counts = {s: n for s, n in self.released.items() if s >= first and s not in done}
        for seq in released:
            counts[seq] = counts.get(seq, 0) + 1
        return LeaseState(not_before, counts)


@dataclass(eq=False)
class Held:
    """One pulled event message held under a lease."""

    seq: int
    msg: Msg
    delivery: Delivery | None = None


@dataclass(eq=False)
class Lease:
    """A partition leased by this process: the token and what was pulled under it.

    ``handed`` went out in the :class:`~hybridmesh.events.backend.PartitionBatch`, in log
    order; ``tail`` are redeliveries pulled past the batch size (a partition's queued
    redeliveries are pulled together so they can be put back in log order) and are released
    with the rest at settlement.
    """

    group: str
    group_token: str
    partition: int
    token: Msg
    token_seq: int
    state: LeaseState
    taken_at: float
    ack_wait: float
    pulled: list[tuple[int, int, Msg]] = field(default_factory=list)
    handed: list[Held] = field(default_factory=list)
    tail: list[Held] = field(default_factory=list)
    settled: bool = False


__all__ = ["Held", "Lease", "LeaseState"]
