"""The routes views in a real browser, against the real control plane, with per-second
windows and a mirror mismatch recorded as a gateway replica records them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import screenshot
from tests.browser.pages import sign_in
from tests.browser.plane_stack import PlaneStack
from tests.integration.control.migration_rig import apply_routes

from hybridmesh.gateway.mirror import Mismatch, MismatchWriter
from hybridmesh.gateway.stats import WindowRecorder


async def record(plane: PlaneStack) -> None:
    """Ten seconds ago: the monolith answered 40 requests (4 of them 503) in about 30 ms,
    delivery 10 in about 200 ms; and one mirrored answer differed."""
    store = plane.store
    recorder = WindowRecorder(store, replica="r1", clock=lambda: time.time() - 10)
    for n in range(40):
        recorder.observe("content-delivery", "monolith", 503 if n < 4 else 200, 0.03)
    for _ in range(10):
        recorder.observe("content-delivery", "delivery", 200, 0.2)
    await recorder.close()
    writer = MismatchWriter(store)
    writer.put(
        Mismatch(
            id="m-1",
            route="content-delivery",
            at=time.time() - 10,
            method="GET",
            path="/content/42",
            differences=[{"field": "body", "path": "title", "change": "changed"}],
            primary_status=200,
            candidate_status=200,
            primary_body='{"title": "a"}',
            candidate_body='{"title": "b"}',
        ),
        20,
    )
    await writer.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneStack]:
    plane = PlaneStack(tmp_path_factory.mktemp("plane") / "mesh.db")
    plane.start()
    try:
        plane.call(apply_routes(plane.store))
        plane.call(record(plane))
        yield plane
    finally:
        plane.stop()


def test_the_routes_view_shows_each_backends_live_figures(page: Page, stack: PlaneStack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/routes")
    expect(page.get_by_role("heading", level=1)).to_have_text("Routes")
    monolith = page.locator("#routes-table tbody tr", has_text="monolith")
    # 40 requests over the 60 s window; 4 of them errors; p95 in the 30 ms bucket.
    expect(monolith).to_contain_text("0.67/s")
    expect(monolith).to_contain_text("10.00%")
    expect(monolith.locator("td").nth(5)).to_contain_text(" ms")
    delivery = page.locator("#routes-table tbody tr").nth(1)
    expect(delivery.locator("td").nth(1)).to_have_text("delivery")
    expect(delivery).to_contain_text("0.17/s")
    expect(delivery).to_contain_text("0.00%")
    expect(page.locator("#routes-updated")).to_contain_text("Updated")
    screenshot(page, "dashboard-routes")


def test_a_route_shows_its_backends_and_mismatches(page: Page, stack: PlaneStack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/routes")
    page.get_by_role("link", name="content-delivery").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("content-delivery")
    expect(page.locator("#route-facts")).to_contain_text("prefix /content")
    expect(page.locator("#route-backends")).to_contain_text("monolith")
    row = page.locator("#mismatches-table tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("GET /content/42")
    expect(row).to_contain_text("title")
