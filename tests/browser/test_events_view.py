"""The live events view (#/events) against the real control plane: events published on
the bus appear as they come, the type filter reopens the stream with its pattern, pause
holds events back until resume; and every page of the dashboard loads without an error."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import screenshot
from tests.browser.pages import sign_in
from tests.browser.plane_stack import PlaneStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneStack]:
    """The real control plane, serving the dashboard (the ``page`` fixture's origin)."""
    running = PlaneStack(tmp_path_factory.mktemp("live") / "mesh.db")
    running.start()
    try:
        yield running
    finally:
        running.stop()


def live(page: Page) -> None:
    """Wait until the view's stream is open (the server has subscribed it)."""
    expect(page.locator("#stream-state")).to_have_text("live")


def test_a_published_event_appears_with_its_json(page: Page, stack: PlaneStack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/events")
    live(page)
    first = stack.publish("order.placed", {"order_id": "o-1", "total": 42}, subject="orders/o-1")
    second = stack.publish("order.shipped", {"order_id": "o-1"})

    rows = page.locator("#events-table tbody tr.event-row")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("order.shipped")  # newest on top
    expect(rows.nth(1)).to_contain_text("order.placed")
    expect(rows.nth(1)).to_contain_text("orders/o-1")
    expect(page.locator("#events-count")).to_have_text("2 events shown.")

    rows.nth(1).click()
    detail = page.locator("#event-json")
    expect(detail).to_contain_text(first.id)
    expect(detail).to_contain_text('"total": 42')
    assert second.id not in detail.inner_text()
    screenshot(page, "dashboard-events")


def test_the_type_filter_shows_only_matching_events(page: Page, stack: PlaneStack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/events")
    live(page)
    page.get_by_label("Type").fill("payment.*")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"#/events\?type=payment\.\*$"))
    expect(page.locator("#events-table caption")).to_have_text("Events of type payment.*")
    live(page)

    stack.publish("user.registered", {"user_id": "u-1"})
    stack.publish("payment.captured", {"amount": 10})
    stack.publish("payment.captured.late", {"amount": 11})  # two tokens after payment

    rows = page.locator("#events-table tbody tr.event-row")
    # The stream sends in the bus's order: once the last match is shown, the others
    # would have been too.
    stack.publish("payment.refunded", {"amount": 3})
    expect(rows.nth(0)).to_contain_text("payment.refunded")
    expect(rows).to_have_count(2)
    expect(page.locator("#events-table")).not_to_contain_text("user.registered")
    expect(page.locator("#events-table")).not_to_contain_text("payment.captured.late")


def test_pause_holds_events_until_resume(page: Page, stack: PlaneStack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/events?type=stock.*")
    live(page)
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#stream-state")).to_have_text("paused")
    stack.publish("stock.reserved", {"sku": "a"})
    expect(page.locator("#events-count")).to_have_text("0 events shown; 1 held while paused.")
    expect(page.locator("#events-table tbody tr.event-row")).to_have_count(0)

    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#events-table tbody tr.event-row")).to_have_count(1)
    expect(page.locator("#events-table")).to_contain_text("stock.reserved")
    live(page)


PAGES = {
    "/services": "Services",
    "/executions": "Executions",
    "/events": "Events",
    "/slo": "Service level objectives",
    "/replications": "Replications",
    "/migrations": "Migrations",
    "/routes": "Routes",
    "/flags": "Flags",
    "/dead-letters": "Dead letters",
    "/review": "Review",
}


def test_every_page_loads_on_the_real_control_plane(page: Page, stack: PlaneStack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/services")
    links = page.get_by_role("navigation", name="Main").get_by_role("link")
    assert {link.get_attribute("href") for link in links.all()} == {f"#{p}" for p in PAGES}
    for path, heading in PAGES.items():
        page.goto(f"/ui/#{path}")
        expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
    expect(page.locator("#banner")).to_be_hidden()
