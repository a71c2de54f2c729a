"""The dashboard in a real browser, against the platform on loopback."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import PageErrors, screenshot
from tests.browser.pages import sign_in
from tests.browser.stack import SERVICES, Stack

# The heading of each page of the nav bar, where it is not the link's label.
HEADINGS = {"SLO": "Service level objectives"}


def test_every_page_of_the_nav_and_the_detail_routes_load(page: Page, stack: Stack) -> None:
    """Each page the nav bar offers (read from the page, so a new one is covered too) is a
    real view, not a placeholder, and loads with no error (console errors fail the test)."""
    execution_id = stack.call(stack.engine.executions(status="completed", limit=1))[0].id
    sign_in(page, stack.tokens["read"])
    nav = page.get_by_role("navigation", name="Main")
    labels = nav.get_by_role("link").all_inner_texts()
    assert "Flags" in labels
    for label in labels:
        link = nav.get_by_role("link", name=label, exact=True)
        link.click()
        expect(link).to_have_attribute("aria-current", "page")
        expect(page.get_by_role("heading", level=1)).to_contain_text(HEADINGS.get(label, label))
        expect(page.locator("main .placeholder")).to_have_count(0)
        expect(page.locator("#banner")).to_be_hidden()
    for path, heading in ((f"executions/{execution_id}", "order"), ("services/orders", "orders")):
        page.goto(f"/ui/#/{path}")
        expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
    expect(page.locator("#banner")).to_be_hidden()


def test_the_root_redirects_to_the_dashboard_and_it_needs_a_token(page: Page) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/ui/#/?$|/ui/$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()


def test_signing_in_with_a_bad_token_shows_the_problem(page: Page, page_errors: PageErrors) -> None:
    page_errors.allow(r"status of 401")
    page.goto("/ui/")
    page.get_by_label("API token").fill("hmt_not_a_token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#sign-in-error")).to_have_text(
        "Unauthorized: the token is unknown or revoked"
    )
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_signing_out_forgets_the_token(page: Page, stack: Stack) -> None:
    sign_in(page, stack.tokens["read"])
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    page.goto("/ui/#/executions")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_the_service_map_draws_every_service_and_dependency(page: Page, stack: Stack) -> None:
    sign_in(page, stack.tokens["read"], at="/ui/#/services")
    nodes = page.locator("svg.service-map g.node")
    expect(nodes).to_have_count(len(SERVICES))
    expect(page.locator("svg.service-map path.edge")).to_have_count(
        sum(len(deps) for *_, deps in SERVICES)
    )
    legacy = page.locator('svg.service-map g.node[data-name="erp"]')
    expect(legacy).to_have_attribute("data-architecture", "traditional-monolith")
    order_to_payments = page.locator(
        'svg.service-map path.edge[data-source="orders"][data-target="payments"]'
    )
    expect(order_to_payments).to_have_class(re.compile(r"\bdep-sync\b"))
    expect(page.locator("svg.service-map .edge-label", has_text="rest")).not_to_have_count(0)
    expect(page.locator("#services-table tbody tr")).to_have_count(len(SERVICES))
    page.locator('svg.service-map g.node[data-name="orders"]').click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("orders")
    expect(page.get_by_role("cell", name="inventory")).to_be_visible()


def test_the_executions_list_filters_by_status_and_pages(page: Page, stack: Stack) -> None:
    sign_in(page, stack.tokens["read"], at="/ui/#/executions")
    rows = page.locator("#executions-table tbody tr")
    expect(rows.first).to_be_visible()
    screenshot(page, "dashboard-executions")
    page.get_by_label("Status").select_option("running")
    expect(rows.locator(".badge").filter(has_not_text="running")).to_have_count(0)
    expect(rows.locator(".badge", has_text="running").first).to_be_visible()
    page.get_by_label("Status").select_option("compensated")
    expect(rows).to_have_count(1)
    page.get_by_label("Status").select_option("completed")
    expect(page).to_have_url(re.compile(r"#/executions\?status=completed$"))
    expect(rows).to_have_count(5)
    expect(page.locator("#executions-table .badge", has_text="completed")).to_have_count(5)

    page.goto("/ui/#/executions?status=completed&limit=2")
    expect(rows).to_have_count(2)
    more = page.get_by_role("button", name="Load more")
    more.click()
    expect(rows).to_have_count(4)
    more.click()
    expect(rows).to_have_count(5)
    expect(more).to_be_hidden()
    ids = rows.locator("td:first-child").all_inner_texts()
    assert len(set(ids)) == 5


def test_the_timeline_draws_attempts_retries_and_compensations(page: Page, stack: Stack) -> None:
    declined = stack.call(stack.engine.executions(status="compensated"))[0]
    sign_in(page, stack.tokens["read"], at=f"/ui/#/executions/{declined.id}")
    timeline = page.locator("#timeline svg")
    expect(timeline.locator('g.gantt-row[data-row="reserve"] rect.bar.completed')).to_have_count(1)
    expect(timeline.locator('g.gantt-row[data-row="charge"] rect.bar.retried')).to_have_count(2)
    expect(timeline.locator('g.gantt-row[data-row="charge"] rect.bar.failed')).to_have_count(1)
    expect(timeline.locator('g.gantt-row[data-row="charge"] rect.bar.backoff')).to_have_count(2)
    expect(timeline.locator('g.gantt-row[data-row="reserve"] rect.bar.compensation')).to_have_count(
        1
    )
    expect(page.locator("#execution-facts")).to_contain_text("compensated")
    expect(page.get_by_role("button", name="Cancel execution")).to_have_count(0)
    screenshot(page, "dashboard-execution")


def test_cancelling_a_running_execution_ends_it_cancelled(
    page: Page, stack: Stack, page_errors: PageErrors
) -> None:
    shipment = stack.call(stack.start_shipment("s-cancel"))
    sign_in(page, stack.tokens["operate"], at=f"/ui/#/executions/{shipment}")
    expect(page.locator("#timeline rect.bar.wait")).to_have_count(1)
    page.get_by_role("button", name="Cancel execution").click()
    page.get_by_role("button", name="Keep it running").click()
    page.get_by_role("button", name="Cancel execution").click()
    page.get_by_role("button", name="Yes, cancel it").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("cancelled", timeout=20_000)
    expect(page.get_by_role("button", name="Cancel execution")).to_have_count(0)
    expect(page.locator("#timeline line.event-line.cancel")).to_have_count(1)
    assert stack.call(stack.engine.get(shipment)).status.value == "cancelled"
    assert "/operations/undo-reserve" in stack.ops.paths()


def test_a_read_token_cannot_cancel_and_is_told_so(
    page: Page, stack: Stack, page_errors: PageErrors
) -> None:
    page_errors.allow(r"status of 403")
    shipment = stack.call(stack.start_shipment("s-read"))
    sign_in(page, stack.tokens["read"], at=f"/ui/#/executions/{shipment}")
    page.get_by_role("button", name="Cancel execution").click()
    page.get_by_role("button", name="Yes, cancel it").click()
    expect(page.get_by_role("alert").filter(has_text="role")).to_contain_text(
        "Your token's role cannot do this"
    )
    assert stack.call(stack.engine.get(shipment)).status.value == "running"


@pytest.mark.parametrize("path", ["/ui/", "/ui/static/js/app.js", "/ui/static/css/dashboard.css"])
def test_dashboard_responses_carry_the_security_headers(page: Page, path: str) -> None:
    response = page.request.get(path)
    assert response.ok
    headers = response.headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"


def test_assets_are_served_with_their_content_types_and_nothing_else(page: Page) -> None:
    script = page.request.get("/ui/static/js/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["cache-control"] == "no-cache"
    for outside in ("/ui/static/%2e%2e/__init__.py", "/ui/static/js/missing.js"):
        assert page.request.get(outside).status == 404
