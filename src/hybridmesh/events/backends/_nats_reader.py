"""Reading the JetStream log without a consumer group: an ephemeral consumer.

A :class:`NatsLogReader` (``NatsEventBackend.open_reader``) pulls from a consumer of its
own: not durable, acknowledging nothing, in memory on the server, filtered on the events
published for every group (``<prefix>.ev.pub.*.<pattern>``). :meth:`NatsLogReader.close`
deletes it; a reader that never closes (its process was killed) leaves it to the server,
which deletes it once it has had no pull for :data:`READER_INACTIVE` seconds. A reader
that waits pulls at least every third of that, so it never expires while in use.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js import errors as js_errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from hybridmesh.core.ids import new_id
from hybridmesh.events.backend import Delivery
from hybridmesh.events.backends._nats_layout import PUBLISHED, Layout, ack_info
from hybridmesh.events.backends._nats_wire import Doorbell, PullClient
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.events.subjects import matches

#: Seconds without a pull after which the server deletes a reader's consumer.
READER_INACTIVE = 30.0


class NatsLogReader:
    """An :class:`~hybridmesh.events.backend.EventReader` of JetStream."""

    def __init__(
        self,
        js: JetStreamContext,
        pull: PullClient,
        layout: Layout,
        pattern: str,
        name: str,
        doorbell: Doorbell,
    ) -> None:
        self._js = js
        self._pull = pull
        self._layout = layout
        self.pattern = pattern
        self.name = name  # of its consumer on the events stream
        self._doorbell: Doorbell | None = doorbell

    @classmethod
    async def open(
        cls,
        nc: NATS,
        js: JetStreamContext,
        pull: PullClient,
        layout: Layout,
        pattern: str,
        start: Literal["earliest", "latest"],
    ) -> NatsLogReader:
        """Create the reader's consumer, and the doorbell that wakes its waits."""
        subject = f"{layout.prefix}.ev.{PUBLISHED}.*.{pattern}"  # any partition, no replays
        doorbell = await Doorbell.open(nc, subject)  # before the consumer: nothing slips by
        name = f"read-{new_id().replace('-', '')[:20]}"
        try:
            await js.add_consumer(
                layout.events_stream,
                ConsumerConfig(
                    name=name,
                    filter_subject=subject,
                    deliver_policy=DeliverPolicy.NEW if start == "latest" else DeliverPolicy.ALL,
                    ack_policy=AckPolicy.NONE,
                    inactive_threshold=READER_INACTIVE,
                    mem_storage=True,
                    num_replicas=1,
                ),
            )
        except BaseException:
            await doorbell.close()
            raise
        return cls(js, pull, layout, pattern, name, doorbell)

    async def read(self, max_events: int, wait: float) -> list[Delivery]:
        doorbell = self._doorbell
        if doorbell is None or max_events < 1:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait, 0.0)
        while True:
            messages = await self._pull.pull(self._layout.events_stream, self.name, max_events)
            found: list[Delivery] = []
            for message in messages:
                seq, _ = ack_info(message.reply)
                try:
                    event = CloudEvent.from_json(message.data)
                except Exception as error:  # whatever was published, reading goes on
                    error_text = f"{type(error).__name__}: {error}"
                    found.append(Delivery(None, 1, message.data, error_text, position=seq))
                    continue
                if matches(self.pattern, event.type):
                    found.append(Delivery(event, 1, position=seq))
            remaining = deadline - loop.time()
            if found or remaining <= 0:
                return found
            if not messages:
                await doorbell.wait(min(remaining, READER_INACTIVE / 3))

    async def close(self) -> None:
        doorbell, self._doorbell = self._doorbell, None
        if doorbell is None:
            return
        await doorbell.close()
        with contextlib.suppress(js_errors.NotFoundError):
            await self._js.delete_consumer(self._layout.events_stream, self.name)


__all__ = ["READER_INACTIVE", "NatsLogReader"]
