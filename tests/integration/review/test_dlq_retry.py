"""Dead letters in the review queue, on a real SQL event log (SQLite): a poison event is
dead-lettered, filed for review, and retried by replaying it to its group."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from hybridmesh.core.errors import ValidationError
from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.sql import SqlEventBackend
from hybridmesh.review import ReviewQueue, dead_letter_retry, review_dead_letter


@dataclass
class Mailer:
    """A consumer that fails until its template is fixed."""

    broken: bool = True
    handled: list[str] = field(default_factory=list)

    async def __call__(self, event: CloudEvent) -> None:
        if self.broken:
            raise ValueError(f"no template for {event.type}")
        self.handled.append(event.id)


@dataclass
class Mesh:
    backend: SqlEventBackend
    bus: EventBus
    mailer: Mailer
    queue: ReviewQueue


@pytest.fixture
async def mesh(sqlite_url: str) -> AsyncIterator[Mesh]:
    backend = await SqlEventBackend.open(sqlite_url)
    bus = EventBus(backend)
    mailer = Mailer()
    bus.subscribe("order.*", mailer, group="mailer", max_deliveries=1)
    queue = ReviewQueue(backend.store, actor="ops")
    queue.register_retry("dlq", dead_letter_retry(backend))
    yield Mesh(backend, bus, mailer, queue)
    await bus.close()


async def test_a_filed_dead_letter_is_replayed_and_handled_when_retried(mesh: Mesh) -> None:
    poison = await mesh.bus.publish(CloudEvent.create("order.shipped", "/orders", {"order": 1}))
    await mesh.bus.drain()
    [letter] = await mesh.bus.dead_letters()

    item = await review_dead_letter(mesh.queue, letter)

    assert (item.origin, item.origin_ref, item.status) == ("dlq", letter.id, "open")
    assert item.payload == poison.to_dict()
    assert "group mailer" in item.reason and "no template for order.shipped" in item.reason
    assert (await review_dead_letter(mesh.queue, letter)).id == item.id  # filed once

    mesh.mailer.broken = False
    retried = await mesh.queue.retry(item.id, note="template added")
    await mesh.bus.drain()

    assert mesh.mailer.handled == [poison.id]
    assert retried.status == "retried"
    assert [a.action for a in retried.actions] == ["created", "retried"]
    assert (await mesh.bus.dead_letter(letter.id)).replayed_at is not None


async def test_a_replay_that_fails_again_is_filed_as_a_new_item(mesh: Mesh) -> None:
    await mesh.bus.publish(CloudEvent.create("order.shipped", "/orders", {"order": 2}))
    await mesh.bus.drain()
    [letter] = await mesh.bus.dead_letters()
    first = await review_dead_letter(mesh.queue, letter)

    await mesh.queue.retry(first.id)  # the replay is accepted, but the mailer still fails
    await mesh.bus.drain()
    newest, _ = await mesh.bus.dead_letters()
    second = await review_dead_letter(mesh.queue, newest)

    assert newest.id != letter.id and second.id != first.id
    assert (await mesh.queue.get(first.id)).status == "retried"
    assert [i.id for i in await mesh.queue.list()] == [second.id]


async def test_a_dead_letter_that_never_parsed_keeps_its_raw_body_and_cannot_be_replayed(
    mesh: Mesh,
) -> None:
    await mesh.backend.ensure_group(mesh.bus.subscriptions["mailer"].spec)
    await mesh.backend.store.execute(
        "INSERT INTO event_log (event_id, source, type, partition, only_group, body, "
        "published_at) VALUES ('bad-1', '/legacy', 'order.shipped', 0, NULL, '{not json', 0)"
    )
    await mesh.bus.drain()
    [letter] = await mesh.bus.dead_letters()
    item = await review_dead_letter(mesh.queue, letter)
    assert item.payload == {"body": "{not json"}

    with pytest.raises(ValidationError):
        await mesh.queue.retry(item.id)

    after = await mesh.queue.get(item.id)
    assert after.status == "open"
    assert [a.action for a in after.actions] == ["created", "retry_failed"]
    assert after.actions[-1].note is not None and "EventFormatError" in after.actions[-1].note
