"""The executions list filtered by kind and definition name, kept in the address, paged
under the filters, and followed live with only what the filters admit coming in."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from tests.browser.pages import sign_in
from tests.browser.stack import FAST, Stack

from hybridmesh.orchestration import ErrorHandling, Kind, Operation, Plan, PlanStep

#: A workflow of one step: count the stock.
RESTOCK = Plan(
    Kind.WORKFLOW,
    "restock",
    1,
    (
        PlanStep(
            step_id="count",
            name="count",
            service="inventory",
            architecture=None,
            operation=Operation(endpoint="/operations/count", payload={}),
            retry=FAST,
        ),
    ),
    ErrorHandling.FAIL_FAST,
)


async def run_restock(stack: Stack) -> str:
    execution_id = await stack.engine.start_workflow("restock", {})
    await stack.engine.wait(execution_id, timeout=20)
    return execution_id


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Three finished orders (sagas), two finished restocks (workflows) and a shipment
    (a saga) waiting for its carrier."""
    running = Stack(tmp_path_factory.mktemp("filters") / "mesh.db")
    running.start()
    try:
        running.call(running.engine.register(RESTOCK))
        for n in range(3):
            running.call(running.run_order(f"o-{n}"))
        for _ in range(2):
            running.call(run_restock(running))
        running.call(running.start_shipment("s-1"))
        yield running
    finally:
        running.stop()


def kinds_and_names(page: Page) -> list[tuple[str, str]]:
    rows = page.locator("#executions-table tbody tr")
    return [
        (row.locator("td").nth(2).inner_text(), row.locator("td").nth(1).inner_text())
        for row in rows.all()
    ]


def test_the_list_filters_by_kind_and_definition_name(page: Page, stack: Stack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/executions")
    rows = page.locator("#executions-table tbody tr")
    expect(rows).to_have_count(6)

    page.get_by_label("Kind").select_option("workflow")
    expect(page).to_have_url(re.compile(r"#/executions\?kind=workflow$"))
    expect(rows).to_have_count(2)
    assert kinds_and_names(page) == [("workflow", "restock v1")] * 2

    page.get_by_label("Definition").fill("order")
    page.get_by_label("Definition").press("Enter")
    expect(page).to_have_url(re.compile(r"#/executions\?kind=workflow&name=order$"))
    expect(rows).to_have_text(["No executions match."])

    page.get_by_label("Kind").select_option("saga")
    expect(page).to_have_url(re.compile(r"#/executions\?kind=saga&name=order$"))
    expect(rows).to_have_count(3)
    assert kinds_and_names(page) == [("saga", "order v1")] * 3
    expect(page.get_by_label("Definition")).to_have_value("order")

    page.get_by_label("Status").select_option("running")
    expect(page).to_have_url(re.compile(r"#/executions\?status=running&kind=saga&name=order$"))
    expect(rows).to_have_text(["No executions match."])


def test_load_more_pages_under_the_filters(page: Page, stack: Stack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/executions?kind=saga&name=order&limit=2")
    rows = page.locator("#executions-table tbody tr")
    expect(rows).to_have_count(2)
    expect(page.get_by_label("Kind")).to_have_value("saga")
    more = page.get_by_role("button", name="Load more")
    more.click()
    expect(rows).to_have_count(3)
    expect(more).to_be_hidden()
    assert kinds_and_names(page) == [("saga", "order v1")] * 3
    ids = rows.locator("td:first-child").all_inner_texts()
    assert len(set(ids)) == 3


def test_only_executions_the_filters_admit_come_in_live(page: Page, stack: Stack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/executions?kind=workflow&name=restock")
    expect(page.locator("#executions-card")).to_have_attribute("data-live", "open")
    rows = page.locator("#executions-table tbody tr")
    before = rows.count()

    order = stack.call(stack.engine.start_saga("order", {"order_id": "o-live"}))
    restock = stack.call(stack.engine.start_workflow("restock", {}))
    expect(page.locator(f'#executions-table tbody tr[data-id="{restock}"]')).to_be_visible(
        timeout=20_000
    )
    expect(rows).to_have_count(before + 1)
    expect(page.locator(f'#executions-table tbody tr[data-id="{order}"]')).to_have_count(0)
    stack.call(stack.engine.wait(order, timeout=20))
    stack.call(stack.engine.wait(restock, timeout=20))
