"""Pulling from JetStream without lingering, and waking up when something is published.

nats-py's ``PullSubscription.fetch`` turns into a lingering pull request when nothing is
ready, and that request keeps leasing messages after the caller has given up. The backend
holds a lease per partition and must know exactly what it pulled, so it asks with
``no_wait`` only (:class:`PullClient`) and waits for new events with a core-NATS
subscription on their subjects (:class:`Doorbell`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hybridmesh.core.errors import HybridMeshError

API_PREFIX = "$JS.API"
_FINISHED = ("404", "408")  # no messages / the no-wait request is over
_HEARTBEAT = "100"


class PullError(HybridMeshError):
    """JetStream refused a pull request (consumer missing, limits exceeded, ...)."""


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
            self.done.set_exception(PullError(f"pull refused: {status} {description}"))


class PullClient:
    """No-wait pull requests for any number of consumers.

    JetStream delivers pulled messages under their own subjects, so each request has its
    own inbox subscription (SUB and UNSUB are one-way protocol lines, no round trip).
    """

    def __init__(self, nc: NATS, *, timeout: float = 10.0) -> None:
        self._nc = nc
        self._timeout = timeout

    async def pull(self, stream: str, consumer: str, batch: int) -> list[Msg]:
        """Up to ``batch`` messages that are ready now, in delivery order; never waits for
        new ones. Raises :class:`PullError`, or ``TimeoutError`` when the server does not
        answer (what it delivers later is then left to expire)."""
        request = _Request(batch, asyncio.get_running_loop().create_future())
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox, cb=request.receive)
        try:
            body = json.dumps({"batch": batch, "no_wait": True}).encode()
            await self._nc.publish(
                f"{API_PREFIX}.CONSUMER.MSG.NEXT.{stream}.{consumer}", body, reply=inbox
            )
            async with asyncio.timeout(self._timeout):
                await request.done
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return request.messages


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


__all__ = ["Doorbell", "PullClient", "PullError"]
