"""The executions list follows the live stream: an execution started while the list is
open comes in on top, and its row changes in place when its status does, with no reload."""

from __future__ import annotations

from playwright.sync_api import Page, expect
from tests.browser.pages import sign_in
from tests.browser.stack import Stack


def test_a_started_then_cancelled_execution_updates_its_row_in_place(
    page: Page, stack: Stack
) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/executions")
    expect(page.locator("#executions-card")).to_have_attribute("data-live", "open")
    before = page.locator("#executions-table tbody tr").count()

    shipment = stack.call(stack.start_shipment("s-live"))
    row = page.locator(f'#executions-table tbody tr[data-id="{shipment}"]')
    expect(row).to_contain_text("running", timeout=20_000)
    expect(page.locator("#executions-table tbody tr").first).to_have_attribute("data-id", shipment)
    expect(page.locator("#executions-table tbody tr")).to_have_count(before + 1)

    stack.call(stack.engine.cancel(shipment, "not needed"))
    expect(row.locator(".badge")).to_have_text("cancelled", timeout=20_000)
    assert stack.call(stack.engine.get(shipment)).status.value == "cancelled"
    expect(page.locator("#executions-table tbody tr")).to_have_count(before + 1)
