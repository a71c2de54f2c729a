"""Fetch and settle for the JetStream backend: partitions pulled under leases.

A fetch takes the group's free lease tokens (:mod:`._nats_lease`), pulls each leased
partition's consumer with ``no_wait``, and returns one batch per partition that had events;
the leases of the others go back at once. When nothing is ready it waits for a
:class:`~._nats_wire.Doorbell` (new publishes) or the end of a retry delay; while other
processes hold leases, it queues for one (a waiting pull on the lease consumer, which the
server serves first come, first served, so a busy process cannot starve the others).

Settling acks the handled events, naks the rest in log order, and releases the lease,
carrying the released events' counts and, for a retry, the time before which the partition
stays closed, in the next token. The first fetcher to see that token naks it with the
remaining delay, so the server holds the whole partition back: the retried event and every
later one, whatever its key.

JetStream redelivers in the order events were nak'd (or expired), not in log order, so the
events themselves are nak'd at once, in log order: nak'd with a delay, the retried event
would queue up behind the ones released after it. The delay lives in the lease instead.

Acks and naks go out on the reader's connection, by the message's reply subject, not on the
connection the message came in on: JetStream takes them from any connection. A batch
fetched before the server closed the backend's connection is settled on the new one, so its
lease and events come back at once rather than when ``ack_wait`` runs out. Likewise the
naks a closed connection refused to send (nats-py raises before sending anything) and the
leases whose pulls it refused are kept in :class:`Unsent` and sent on the next connection.
What the dying connection did send, or received unread, is not known; it comes back after
``ack_wait``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from nats import errors as nats_errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import errors as js_errors

from hybridmesh.core.clock import Clock
from hybridmesh.core.errors import ValidationError
from hybridmesh.events.backend import Delivery, GroupSpec, PartitionBatch, Settlement
from hybridmesh.events.backends._nats_dlq import DeadLetterStore
from hybridmesh.events.backends._nats_layout import PUBLISHED, Layout, ack_info, replay_origin
from hybridmesh.events.backends._nats_lease import Held, Lease, LeaseState
from hybridmesh.events.backends._nats_wire import Doorbell, PullClient
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.events.subjects import matches
from hybridmesh.observability import get_logger

log = get_logger("hybridmesh.events.nats")

WRONG_LAST_SEQUENCE = 10071  # a lease token exists already / was replaced meanwhile
LEASE_GRACE = 0.2  # a lease outlives its events' ack_wait by this much, so they expire first
_CONTENDED_WAIT = 0.1  # how long to queue for a lease held elsewhere before looking again
# NATS 2.9 may never answer a pull request that expires within a millisecond or so.
_MIN_QUEUE_WAIT = 0.02
_DRAIN_PULL = 100  # pull size while taking all of a partition's queued redeliveries
_ACK, _NAK, _TERM = b"+ACK", b"-NAK", b"+TERM"


def _nak_after(seconds: float) -> bytes:
    """A nak whose message comes again ``seconds`` from now."""
    return _NAK + b' {"delay": %d}' % int(seconds * 1e9)


class Unsent:
    """Reply subjects to nak, in order, that a closed connection refused to send: messages
    this process holds and nobody else can have (the server redelivers them only after
    ``ack_wait``). Shared by the backend's successive connections."""

    def __init__(self) -> None:
        self.replies: list[str] = []

    def add(self, msgs: Sequence[Msg]) -> None:
        self.replies += [m.reply for m in msgs]


@dataclass(frozen=True)
class GroupRef:
    """A consumer group as the backend knows it: its spec and its subject token."""

    spec: GroupSpec
    token: str

    @property
    def replay_origin(self) -> str:
        return replay_origin(self.token)


@dataclass
class _Round:
    """What one look at a group's partitions found."""

    batches: list[PartitionBatch] = field(default_factory=list)
    contended: bool = False
    wake_in: float | None = None
    skipped: bool = False
    unexplored: bool = False


def _shares(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _allot(total: int, shares: dict[Lease, int]) -> dict[Lease, int]:
    """How many events each lease hands out: its share of what it pulled, then what others
    left unused goes to those that pulled more (queued redeliveries come all at once)."""
    allot = {lease: min(share, len(lease.pulled)) for lease, share in shares.items()}
    left = total - sum(allot.values())
    for lease in allot:
        more = max(0, min(left, len(lease.pulled) - allot[lease]))
        allot[lease] += more
        left -= more
    return allot


def _parse(data: bytes) -> tuple[CloudEvent | None, str | None]:
    try:
        return CloudEvent.from_json(data), None
    except Exception as error:  # whatever was published, the consumer must not crash on it
        return None, f"{type(error).__name__}: {error}"


class GroupReader:
    """Fetches and settles batches of consumer groups, for one backend connection."""

    def __init__(
        self,
        *,
        nc: NATS,
        js: JetStreamContext,
        pull: PullClient,
        letters: DeadLetterStore,
        layout: Layout,
        clock: Clock,
        request_timeout: float,
        unsent: Unsent | None = None,
    ) -> None:
        self._nc = nc
        self._unsent = unsent or Unsent()
        self._js = js
        self._pull = pull
        self._letters = letters
        self.layout = layout
        self.clock = clock
        self.request_timeout = request_timeout

    async def fetch(self, group: GroupRef, max_events: int, wait: float) -> list[PartitionBatch]:
        """Lease the partitions that are free and have events, up to ``max_events`` in all;
        wait up to ``wait`` seconds for some (woken by publishes on the group's subjects)."""
        if max_events < 1:
            return []
        deadline = self.clock.monotonic() + max(0.0, wait)
        bell: Doorbell | None = None
        queued: list[Msg] = []
        try:
            while True:
                found = await self._sweep(group, max_events, queued)
                queued = []
                if found.batches:
                    return found.batches
                left = deadline - self.clock.monotonic()
                if left <= 0:
                    return []
                if found.skipped:
                    continue  # cleared events not for this group; there may be more
                if bell is None:
                    bell = await Doorbell.open(self._nc, self.layout.doorbell(group.spec.pattern))
                    continue  # look once more: a publish before the bell was open is missed
                if found.contended and left >= _MIN_QUEUE_WAIT:
                    # Queue for a lease: the server hands a released token to the request
                    # that waited longest, so a busy process cannot starve this one.
                    queued = await self._queue_for_lease(group, min(left, _CONTENDED_WAIT))
                    continue
                await bell.wait(left if found.wake_in is None else min(left, found.wake_in))
        finally:
            if bell is not None:
                await bell.close()

    async def _queue_for_lease(self, group: GroupRef, seconds: float) -> list[Msg]:
        layout = self.layout
        try:
            return await self._pull.pull(
                layout.leases_stream, layout.lease_consumer(group.token), 1, expires=seconds
            )
        except TimeoutError:  # unanswered; a token it gets later comes back after ack_wait
            log.warning("group %s: a wait for a lease went unanswered", group.spec.name)
            return []

    async def _sweep(self, group: GroupRef, max_events: int, queued: list[Msg]) -> _Round:
        """Look until some events are found or every free partition was looked at (one look
        pulls at most ``max_events`` partitions). ``queued`` are lease tokens in hand."""
        summary = _Round()
        for _ in range(-(-self.layout.partitions // max_events)):
            found = await self._look(group, max_events, queued)
            queued = []
            if found.batches:
                return found
            summary.contended = summary.contended or found.contended
            summary.skipped = summary.skipped or found.skipped
            if found.wake_in is not None:
                summary.wake_in = min(found.wake_in, summary.wake_in or found.wake_in)
            if not found.unexplored:
                break
        return summary

    async def _look(self, group: GroupRef, max_events: int, queued: list[Msg]) -> _Round:
        """Take free leases, pull their partitions, keep the leases that found events."""
        layout, pull = self.layout, self._pull
        taken_at = self.clock.monotonic()
        tokens = queued + await pull.pull(
            layout.leases_stream, layout.lease_consumer(group.token), layout.partitions
        )
        found = _Round(contended=len(tokens) < layout.partitions)
        now = self.clock.now().timestamp()
        leases: list[Lease] = []
        for token in tokens:
            seq, _ = ack_info(token.reply)
            state = LeaseState.decode(token.data)
            if state.not_before > now:  # a retry's delay: hand it back until then
                await self._answer(token, _nak_after(state.not_before - now))
                wake = state.not_before - now + 0.005
                found.wake_in = wake if found.wake_in is None else min(found.wake_in, wake)
                continue
            partition = int(token.subject.rsplit(".", 1)[1])
            leases.append(
                Lease(
                    group=group.spec.name,
                    group_token=group.token,
                    partition=partition,
                    token=token,
                    token_seq=seq,
                    state=state,
                    taken_at=taken_at,
                    ack_wait=group.spec.ack_wait,
                )
            )
        # With a small max_events only the first leases are pulled. The others go back
        # first, so the next look starts with them: every partition gets its turn.
        idle = [lease.token for lease in leases[max_events:]]
        found.unexplored = bool(idle)
        leases = leases[:max_events]
        if not leases:
            await self._nak_all(idle)
            return found
        shares = dict(zip(leases, _shares(max_events, len(leases)), strict=True))
        hungry = await self._pull_all(group, shares)
        left = max_events - sum(min(len(lease.pulled), shares[lease]) for lease in leases)
        if hungry and left > 0:  # what the quiet partitions did not use
            extra = dict(zip(hungry, _shares(left, len(hungry)), strict=True))
            await self._pull_all(group, {k: v for k, v in extra.items() if v > 0})
            for lease, more in extra.items():
                shares[lease] += more
        budget = _allot(max_events, shares)
        for lease in leases:
            if lease.settled:  # a pull failed: let the lease and its events run out together
                continue
            if await self._hand_out(group, lease, budget[lease]):
                found.batches.append(
                    PartitionBatch(
                        group.spec.name,
                        str(lease.partition),
                        [h.delivery for h in lease.handed if h.delivery is not None],
                        token=lease,
                    )
                )
            else:
                found.skipped = found.skipped or bool(lease.pulled)
                idle.append(lease.token)
        await self._nak_all(idle)
        return found

    async def _pull_all(self, group: GroupRef, budget: dict[Lease, int]) -> list[Lease]:
        """Pull each lease's partition concurrently; returns those that may have more."""
        results = await asyncio.gather(
            *(self._pull_partition(group, lease, n) for lease, n in budget.items()),
            return_exceptions=True,
        )
        hungry: list[Lease] = []
        for lease, result in zip(budget, results, strict=True):
            if isinstance(result, nats_errors.ConnectionClosedError):
                # The closed connection sent no pull: what the lease holds is all known.
                pulled = sorted(lease.pulled, key=lambda item: item[0])
                self._unsent.add([msg for _, _, msg in pulled] + [lease.token])
                lease.settled = True
            elif isinstance(result, BaseException):
                log.warning(
                    "group %s partition %d: pull failed (%s); its lease will expire",
                    group.spec.name,
                    lease.partition,
                    result,
                )
                lease.settled = True
            elif result:
                hungry.append(lease)
        return hungry

    async def _pull_partition(self, group: GroupRef, lease: Lease, count: int) -> bool:
        """Pull up to ``count`` messages into ``lease.pulled``; True when more may wait.

        JetStream hands out redeliveries first, in the order they were queued, which is not
        always log order. When a full pull ends in a redelivery, more may be queued: take
        them all, so everything released later goes back in log order.
        """
        consumer = self.layout.consumer(group.token, lease.partition)
        ask = count
        while True:
            msgs = await self._pull.pull(self.layout.events_stream, consumer, ask)
            for msg in msgs:
                seq, delivered = ack_info(msg.reply)
                lease.pulled.append((seq, delivered, msg))
            if len(msgs) < ask:
                return False
            if ack_info(msgs[-1].reply)[1] == 1:
                return True
            ask = max(ask, _DRAIN_PULL)

    async def _hand_out(self, group: GroupRef, lease: Lease, count: int) -> bool:
        """Sort what was pulled into log order, ack what is not for this group, and split
        the rest into the batch (up to ``count``) and the held-back tail."""
        pattern = group.spec.pattern
        for seq, delivered, msg in sorted(lease.pulled, key=lambda item: item[0]):
            origin = self.layout.origin_of(msg.subject)
            if origin != PUBLISHED and origin != group.replay_origin:
                await self._answer(msg, _ACK)  # a replay meant for another group
                continue
            if len(lease.handed) >= count:
                lease.tail.append(Held(seq, msg))
                continue
            event, error = _parse(msg.data)
            if event is not None and not matches(pattern, event.type):
                await self._answer(msg, _ACK)  # its subject matched, its type does not
                continue
            attempt = lease.state.attempt(seq, delivered)
            raw = msg.data if event is None else b""
            delivery = Delivery(event, attempt, raw=raw, error=error, position=seq)
            lease.handed.append(Held(seq, msg, delivery))
        return bool(lease.handed)  # the tail only fills once the batch is full

    async def settle(self, batch: PartitionBatch, settlement: Settlement) -> None:
        """Ack the handled events; retry, dead-letter or release the rest; free the lease.

        Settling a batch whose lease ran out (the batch took longer than ``ack_wait``) only
        acks what was handled: the rest has gone to another consumer already.
        """
        lease = batch.token
        if not isinstance(lease, Lease):
            raise ValidationError("not a batch fetched from a NATS event backend")
        if lease.settled:
            return
        lease.settled = True
        handed = lease.handed
        done = min(max(settlement.handled, 0), len(handed))
        for held in handed[:done]:
            await self._answer(held.msg, _ACK)
        if self.clock.monotonic() - lease.taken_at >= lease.ack_wait:
            log.warning(
                "group %s partition %d: settled after its lease expired; unhandled events "
                "were delivered again elsewhere",
                lease.group,
                lease.partition,
            )
            return
        finished = [h.seq for h in handed[:done]]
        rest = handed[done:] + lease.tail  # nak'd in log order, so they return in log order
        released = rest  # their deliveries were not attempts
        head = handed[done] if done < len(handed) else None
        not_before = 0.0
        if head is not None and settlement.dead_letter is not None:
            await self._bury(lease, head, settlement.dead_letter)
            await self._answer(head.msg, _TERM)
            finished.append(head.seq)
            rest = released = rest[1:]
        elif head is not None and settlement.retry_after is not None:
            not_before = self.clock.now().timestamp() + max(0.0, settlement.retry_after)
            released = rest[1:]
        await self._nak_all([h.msg for h in rest])
        state = lease.state.after(
            first=handed[0].seq,
            finished=finished,
            released=[h.seq for h in released],
            not_before=not_before,
        )
        await self._release(lease, state)

    async def _nak_all(self, msgs: Sequence[Msg]) -> None:
        """Nak each, in order. The last one waits for the server's answer: a consumer handles
        acks in order, so when this returns all of them took effect and the next pull, from
        any process, sees them."""
        if not msgs:
            return
        for index, msg in enumerate(msgs):
            try:
                if index < len(msgs) - 1:
                    await self._answer(msg, _NAK)
                else:
                    await self._nc.request(msg.reply, _NAK, timeout=self.request_timeout)
            except nats_errors.ConnectionClosedError:
                self._unsent.add(msgs[index:])  # none of these went out
                raise

    async def send_unsent(self) -> None:
        """Nak, on this connection, what a closed one refused to send (see :class:`Unsent`)."""
        replies, self._unsent.replies = self._unsent.replies, []
        for index, reply in enumerate(replies):
            try:
                if index < len(replies) - 1:
                    await self._nc.publish(reply, _NAK)
                else:
                    await self._nc.request(reply, _NAK, timeout=self.request_timeout)
            except nats_errors.ConnectionClosedError:
                self._unsent.replies[:0] = replies[index:]
                raise

    async def _release(self, lease: Lease, state: LeaseState) -> None:
        """Free the lease; when its state changed, by publishing the next token in its place."""
        if state == lease.state:
            await self._nak_all([lease.token])
            return
        try:
            await self._js.publish(
                lease.token.subject,
                state.encode(),
                headers={"Nats-Expected-Last-Subject-Sequence": str(lease.token_seq)},
            )
        except js_errors.APIError as error:
            if error.err_code != WRONG_LAST_SEQUENCE:
                raise
            log.warning("group %s partition %d: lease lost", lease.group, lease.partition)
            return
        await self._answer(lease.token, _ACK)

    async def _answer(self, msg: Msg, verb: bytes) -> None:
        """Ack, nak or term ``msg`` on this reader's connection (see the module's text):
        ``msg.ack()`` and the like would use the connection it came in on, which may be
        closed for good by now."""
        await self._nc.publish(msg.reply, verb)

    async def _bury(self, lease: Lease, held: Held, reason: str) -> None:
        attempts = held.delivery.attempt if held.delivery is not None else 1
        await self._letters.add(
            group=lease.group,
            token=lease.group_token,
            seq=held.seq,
            subject=held.msg.subject,
            attempts=attempts,
            reason=reason,
            body=held.msg.data,
        )


__all__ = ["LEASE_GRACE", "WRONG_LAST_SEQUENCE", "GroupReader", "GroupRef", "Unsent"]
