"""The JetStream requests the backend makes itself, where nats-py's helpers do not fit.

- :class:`PullClient`: nats-py's ``PullSubscription.fetch`` turns into a lingering pull
  request when nothing is ready, and that request keeps leasing messages after the caller
  has given up. The backend holds a lease per partition and must know exactly what it
  pulled, so it asks with ``no_wait`` only.
- :class:`Publisher`: pipelined publishes whose acks are only counted, without a future per
  message (``publish_async``), for batches of events.
- :class:`Doorbell`: a core-NATS subscription on the event subjects, to wake a waiting fetch.
- :class:`Link`: what the backend knows of its connection (up, down, closed), fed by
  nats-py's callbacks, so a publish waiting for acks learns at once that they will not come.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hybridmesh.core.errors import HybridMeshError

API_PREFIX = "$JS.API"
_FINISHED = ("404", "408")  # no messages / the no-wait request is over
_HEARTBEAT = "100"


class JetStreamError(HybridMeshError):
    """JetStream refused a request (consumer or stream missing, limits exceeded, ...)."""


class LinkChanged(HybridMeshError):
    """The connection dropped (or came back) while a publish waited for its acks: some acks
    may never come, so the publish must be made again (the stream's dedupe makes that safe)."""


class Link:
    """The state of one connection, as nats-py's callbacks report it.

    Every change (disconnected, reconnected, closed) sets the current :meth:`waiter` and
    starts a new one, so whoever waits on it learns of the next change.
    """

    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self.connected = True
        self.closed = False
        self.last_error: str | None = None

    def waiter(self) -> asyncio.Event:
        return self._changed

    def _ring(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def on_disconnected(self) -> None:
        self.connected = False
        self._ring()

    async def on_reconnected(self) -> None:
        self.connected = True
        self._ring()

    async def on_closed(self) -> None:
        self.connected = False
        self.closed = True
        self._ring()

    async def wait_up(self, seconds: float) -> None:
        """Until the connection is up or closed, or ``seconds`` pass."""
        async with asyncio.timeout(max(seconds, 0.0)):
            while not (self.connected or self.closed):
                await self._changed.wait()


@dataclass
class _Request:
    batch: int
    done: asyncio.Future[None]
    messages: list[Msg] = field(default_factory=list)

    async def receive(self, msg: Msg) -> None:
        if self.done.done():
            return  # an abandoned request: the message expires and comes again
        # Status lines (no messages, timeout, heartbeat) carry no ack subject; a delivery
        # always does, whatever headers its publisher set.
        status = msg.headers.get("Status") if msg.headers and not msg.reply else None
        if status is None:
            self.messages.append(msg)
            if len(self.messages) >= self.batch:
                self.done.set_result(None)
        elif status in _FINISHED or (status == "409" and self.messages):
            self.done.set_result(None)
        elif status != _HEARTBEAT:
            description = msg.headers.get("Description", "") if msg.headers else ""
            self.done.set_exception(JetStreamError(f"pull refused: {status} {description}"))


class PullClient:
    """No-wait pull requests for any number of consumers.

    JetStream delivers pulled messages under their own subjects, so each request has its
    own inbox subscription (SUB and UNSUB are one-way protocol lines, no round trip).
    """

    def __init__(self, nc: NATS, *, timeout: float = 10.0) -> None:
        self._nc = nc
        self._timeout = timeout

    async def pull(
        self, stream: str, consumer: str, batch: int, *, expires: float | None = None
    ) -> list[Msg]:
        """Up to ``batch`` messages that are ready now, in delivery order. With ``expires``,
        the request waits up to that long on the server for the first ones (it is queued
        with other waiting requests, first come first served).

        Raises :class:`JetStreamError`, or ``TimeoutError`` when the server does not answer
        (what it delivers later is then left to expire)."""
        request = _Request(batch, asyncio.get_running_loop().create_future())
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox, cb=request.receive)
        ask: dict[str, int | bool] = {"batch": batch, "no_wait": True}
        if expires is not None:
            ask = {"batch": batch, "expires": max(1_000_000, int(expires * 1e9))}
        try:
            await self._nc.publish(
                f"{API_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                json.dumps(ask).encode(),
                reply=inbox,
            )
            async with asyncio.timeout(self._timeout + (expires or 0.0)):
                await request.done
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return request.messages


@dataclass
class _Acks:
    expected: int
    done: asyncio.Future[None]
    received: int = 0
    error: str | None = None
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    async def receive(self, msg: Msg) -> None:
        self.received += 1
        if msg.headers and msg.headers.get("Status") == "503":
            self.error = self.error or "no stream answered (is the backend started?)"
        elif b'"error"' in msg.data:
            error = json.loads(msg.data).get("error", {})
            self.error = self.error or f"{error.get('description', error)}"
        self.progress.set()
        if self.received >= self.expected and not self.done.done():
            self.done.set_result(None)


class Publisher:
    """Publishes batches to JetStream, pipelined: at most ``window`` unacknowledged."""

    def __init__(self, nc: NATS, *, timeout: float = 10.0, window: int = 4096) -> None:
        self._nc = nc
        self._timeout = timeout
        self._window = window

    async def publish(
        self,
        messages: Sequence[tuple[str, bytes, dict[str, str] | None]],
        *,
        link: Link | None = None,
        within: float | None = None,
    ) -> None:
        """Publish ``(subject, payload, headers)`` in order; returns when JetStream stored
        them all (a duplicate ``Nats-Msg-Id`` counts as stored). Raises
        :class:`JetStreamError`, ``TimeoutError`` (after ``within`` seconds, by default
        the client's timeout), or :class:`LinkChanged` when ``link`` changes meanwhile."""
        if not messages:
            return
        acks = _Acks(len(messages), asyncio.get_running_loop().create_future())
        changed = link.waiter() if link is not None else asyncio.Event()
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox, cb=acks.receive)
        if within is None:
            within = self._timeout + len(messages) / 1000
        try:
            async with asyncio.timeout(within):
                for sent, (subject, payload, headers) in enumerate(messages):
                    while sent - acks.received >= self._window:
                        acks.progress.clear()
                        await _first(acks.progress.wait(), changed)
                    await self._nc.publish(subject, payload, reply=inbox, headers=headers)
                await _first(acks.done, changed)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if acks.error is not None:
            raise JetStreamError(f"publish refused: {acks.error}")


async def _first(work: Awaitable[object], changed: asyncio.Event) -> None:
    """Wait for ``work``; raise :class:`LinkChanged` if ``changed`` is set first."""
    if changed.is_set():
        raise LinkChanged("the connection changed")
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(changed.wait())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled():
        raise LinkChanged("the connection changed while waiting for acks")
    task.result()


class Doorbell:
    """Rings when anything is published on ``subject`` (a core-NATS subscription)."""

    def __init__(self) -> None:
        self._rang = asyncio.Event()
        self._sub: Subscription | None = None

    @classmethod
    async def open(cls, nc: NATS, subject: str) -> Doorbell:
        """Subscribe; once this returns, no publish on ``subject`` goes unnoticed."""
        bell = cls()
        bell._sub = await nc.subscribe(subject, cb=bell._ring)
        await nc.flush()
        return bell

    async def _ring(self, msg: Msg) -> None:
        self._rang.set()

    async def wait(self, seconds: float) -> None:
        """Until it rings or ``seconds`` pass."""
        if seconds > 0 and not self._rang.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rang.wait(), seconds)
        self._rang.clear()

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


__all__ = ["Doorbell", "JetStreamError", "Link", "LinkChanged", "Publisher", "PullClient"]
