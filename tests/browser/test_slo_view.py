"""The SLO view (#/slo) and the replications view (#/replications) against the real
control plane, with figures recorded through the store: the call rollup a hybrid client
writes, an ended execution, a replication and its reconciliation runs."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import screenshot
from tests.browser.pages import sign_in
from tests.browser.plane_stack import PlaneStack
from tests.integration.observability.test_slo_report import add_reconcile_run, record_calls

from hybridmesh.data.config import load_data
from hybridmesh.data.control import DataControl


def replications_file(folder: Path) -> Path:
    legacy = folder / "legacy.db"
    with sqlite3.connect(legacy) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    db.close()
    path = folder / "replications.yaml"
    path.write_text(
        f"""\
replications:
  - name: erp-customers
    source: {{url: "sqlite:///{legacy}", system: legacy-erp}}
    target: {{url: "sqlite:///{folder / "service.db"}"}}
    tables:
      - source: customers
        target: users
"""
    )
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneStack]:
    """The real control plane with 200 calls in the last minutes (6 failed, 30 slow), and a
    replication whose last reconciliation found 2 of 400 rows missing."""
    folder = tmp_path_factory.mktemp("slo")
    running = PlaneStack(folder / "mesh.db")
    running.start()
    now = time.time()
    running.call(
        record_calls(
            running.store,
            now - 180,
            [("orders", "users", "success", 0.02)] * 164
            + [("orders", "users", "success", 0.5)] * 30
            + [("orders", "users", "failure", None)] * 6,
        )
    )

    async def replication() -> None:
        control = DataControl(running.store)
        await control.apply(load_data(replications_file(folder)))
        await add_reconcile_run(
            running.store, "run-1", "erp-customers", now - 60, source_rows=400, missing=2
        )

    running.call(replication())
    try:
        yield running
    finally:
        running.stop()


def test_each_slo_has_a_panel_with_the_recorded_figures(page: Page, stack: PlaneStack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/slo")
    panels = page.locator("section.slo-panel")
    expect(panels).to_have_count(4)

    reliability = page.locator("#slo-integration-reliability")
    expect(reliability.locator("h2")).to_contain_text("exhausted")
    expect(reliability.locator(".slo-sli")).to_have_text("97.00 % of 200 (objective 99.90 %)")
    expect(reliability.locator(".slo-burn")).to_have_text("30.00")
    expect(reliability.locator(".budget-bar")).to_have_attribute(
        "aria-label", "Error budget left: 0.0 %"
    )
    row = reliability.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("orders → users")
    expect(row).to_contain_text("194 / 200")

    latency = page.locator("#slo-sync-latency")
    expect(latency.locator(".slo-sli")).to_have_text("84.54 % of 194 (objective 95.00 %)")

    consistency = page.locator("#slo-data-consistency")
    expect(consistency.locator(".slo-sli")).to_have_text("99.50 % of 400 (objective 99.00 %)")
    expect(consistency.locator(".slo-burn")).to_have_text("0.50")
    expect(consistency.locator("h2")).to_contain_text("burning")
    expect(consistency.locator(".budget-bar")).to_have_attribute(
        "aria-label", "Error budget left: 50.0 %"
    )
    expect(consistency.locator("tbody")).to_contain_text("erp-customers")

    expect(page.locator("#slo-workflow-completion h2")).to_contain_text("no data")
    screenshot(page, "dashboard-slo")


def test_the_window_selector_reloads_the_report(page: Page, stack: PlaneStack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/slo")
    expect(page.locator("#slo-window-text")).to_contain_text("last 24h")
    page.get_by_label("Window").select_option("1h")
    expect(page).to_have_url(re.compile(r"#/slo\?window=1h$"))
    expect(page.locator("#slo-window-text")).to_contain_text("last 1h")
    expect(page.locator("#slo-integration-reliability .slo-sli")).to_contain_text("of 200")


def test_the_replications_view_shows_the_last_reconciliation(page: Page, stack: PlaneStack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/replications")
    row = page.locator("#replications-table tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("erp-customers")
    expect(row).to_contain_text("stopped")
    expect(row).to_contain_text("2/0/0 of 400 rows")
    expect(row.locator(".badge")).to_have_text("inconsistent")
    screenshot(page, "dashboard-replications")
