"""The review view in a real browser, against the real control plane: an item filed
through the review queue is resolved from the button with a note, and the CLI then shows
it resolved; the listing filters by status."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import screenshot
from tests.browser.pages import sign_in
from tests.browser.plane_stack import PlaneStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneStack]:
    """The real control plane (the `page` fixture opens pages on this stack's origin)."""
    running = PlaneStack(tmp_path_factory.mktemp("plane") / "mesh.db")
    running.start()
    try:
        yield running
    finally:
        running.stop()


def cli_show(stack: PlaneStack, item_id: str) -> dict[str, object]:
    """`hybridmesh review show ID --json`, run as its own process on the stack's store."""
    command = ["review", "show", item_id, "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "hybridmesh", "--database-url", stack.database_url, *command],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    shown: dict[str, object] = json.loads(done.stdout)
    return shown


def test_the_view_loads_with_open_items_by_default(page: Page, stack: PlaneStack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/review")
    expect(page.get_by_role("heading", level=1)).to_have_text("Review")
    expect(page.get_by_label("Status")).to_have_value("open")
    expect(page.locator("#review-table")).to_be_visible()
    expect(page.locator("#banner")).to_be_hidden()


def test_an_item_resolved_from_the_button_is_resolved_for_the_cli(
    page: Page, stack: PlaneStack
) -> None:
    review = stack.runtime.review
    item = stack.call(
        review.add(
            "saga",
            "compensation of step charge failed: payments answered 503",
            {"order_id": "O-42", "amount": 129.5},
            origin_ref="exec-o-42",
        )
    )

    sign_in(page, stack.tokens["operate"], "/ui/#/review")
    page.get_by_role("link", name=item.id).click()
    detail = page.locator("#review-detail")
    expect(detail).to_contain_text("payments answered 503")
    expect(page.locator("#review-payload")).to_contain_text('"order_id": "O-42"')
    expect(page.locator("#review-actions")).to_contain_text("created")
    page.get_by_label("Note (kept on the item's timeline)").fill("refunded by hand")
    screenshot(page, "dashboard-review")

    page.get_by_role("button", name="Resolve", exact=True).click()
    page.get_by_role("button", name="Cancel").click()  # declined: nothing is sent
    assert stack.call(review.get(item.id)).status == "open"
    page.get_by_role("button", name="Resolve", exact=True).click()
    page.get_by_role("button", name="Yes, resolve").click()
    expect(page.locator("#review-status-line")).to_have_text(f"Item {item.id} is resolved.")
    expect(page.locator("#review-actions")).to_contain_text("refunded by hand")
    expect(page.get_by_role("button", name="Resolve", exact=True)).to_have_count(0)

    shown = cli_show(stack, item.id)
    assert shown["status"] == "resolved"
    assert shown["actions"][-1]["action"] == "resolved"  # type: ignore[index]
    assert shown["actions"][-1]["actor"] == "operate"  # type: ignore[index]
    assert shown["actions"][-1]["note"] == "refunded by hand"  # type: ignore[index]

    page.get_by_label("Status").select_option("resolved")
    expect(page.locator("#review-table")).to_contain_text(item.id)
    page.get_by_label("Status").select_option("open")
    expect(page.locator("#review-table")).not_to_contain_text(item.id)
