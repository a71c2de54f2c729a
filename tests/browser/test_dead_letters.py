"""The dead-letters view in a real browser, against the real control plane: a poison event
dead-lettered by a real subscription on the SQL event log, inspected, replayed from the
button and then handled; a group's letters purged."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import screenshot
from tests.browser.pages import sign_in
from tests.browser.plane_stack import PlaneStack
from tests.waiting import eventually

from hybridmesh.events import CloudEvent


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneStack]:
    """The real control plane (the `page` fixture opens pages on this stack's origin)."""
    running = PlaneStack(tmp_path_factory.mktemp("plane") / "mesh.db")
    running.start()
    try:
        yield running
    finally:
        running.stop()


@dataclass
class Consumer:
    """A handler that fails until it is fixed."""

    broken: bool = True
    handled: list[str] = field(default_factory=list)

    async def __call__(self, event: CloudEvent) -> None:
        if self.broken:
            raise ValueError(f"no template for {event.type}")
        self.handled.append(event.id)


def dead_letter(stack: PlaneStack, group: str, pattern: str, event: CloudEvent) -> Consumer:
    """Subscribe a failing consumer as ``group`` and publish ``event``; return once the
    bus has dead-lettered it."""
    consumer = Consumer()

    async def publish() -> None:
        stack.bus.subscribe(pattern, consumer, group=group, max_deliveries=1)
        await stack.bus.publish(event)

        async def lettered() -> bool:
            return bool(await stack.bus.dead_letters(group=group))

        await eventually(lettered, what=f"a dead letter in {group}")

    stack.call(publish())
    return consumer


def test_the_view_loads_and_lists_nothing_at_first(page: Page, stack: PlaneStack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/dead-letters")
    expect(page.get_by_role("heading", level=1)).to_have_text("Dead letters")
    expect(page.locator("#dead-letters-table")).to_contain_text("No dead letters.")
    expect(page.locator("#banner")).to_be_hidden()


def test_a_dead_letter_replayed_from_the_button_is_handled(page: Page, stack: PlaneStack) -> None:
    poison = CloudEvent.create("order.shipped", "/orders", {"order": "O-17"})
    mailer = dead_letter(stack, "mailer", "order.*", poison)
    [letter] = stack.call(stack.bus.dead_letters(group="mailer"))
    mailer.broken = False  # the template is fixed: the next delivery will be handled

    sign_in(page, stack.tokens["operate"], "/ui/#/dead-letters")
    page.get_by_label("Consumer group").fill("mailer")
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("link", name=letter.id).click()
    detail = page.locator("#dead-letter-detail")
    expect(detail).to_contain_text("ValueError: no template for order.shipped")
    expect(detail).to_contain_text("mailer")
    expect(page.locator("#dead-letter-event")).to_contain_text(poison.id)
    expect(page.locator("#dead-letter-event")).to_contain_text('"order": "O-17"')
    screenshot(page, "dashboard-dead-letters")

    page.get_by_role("button", name="Replay", exact=True).click()
    page.get_by_role("button", name="Cancel").click()  # declined: nothing is sent
    assert stack.call(stack.bus.dead_letter(letter.id)).replayed_at is None
    page.get_by_role("button", name="Replay", exact=True).click()
    page.get_by_role("button", name="Yes, replay it").click()
    expect(page.locator("#dead-letters-status")).to_have_text(
        f"Replayed {letter.id} to group mailer."
    )
    expect(page.get_by_role("button", name="Replay again")).to_be_visible()

    stack.call(eventually(lambda: mailer.handled == [poison.id], what="the replay handled"))
    assert stack.call(stack.bus.dead_letter(letter.id)).replayed_at is not None


def test_purging_a_group_from_the_button_deletes_its_letters(page: Page, stack: PlaneStack) -> None:
    dead_letter(stack, "billing", "invoice.*", CloudEvent.create("invoice.sent", "/billing", {}))
    sign_in(page, stack.tokens["operate"], "/ui/#/dead-letters?group=billing")
    expect(page.locator("#dead-letters-table tbody tr")).to_have_count(1)
    page.get_by_role("button", name="Purge group billing").click()
    page.get_by_role("button", name="Yes, purge").click()
    expect(page.locator("#dead-letters-status")).to_have_text("Purged 1 dead letter.")
    expect(page.locator("#dead-letters-table")).to_contain_text("No dead letters in group billing.")
    assert stack.call(stack.bus.dead_letters(group="billing")) == []
