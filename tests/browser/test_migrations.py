"""The migrations views in a real browser, against the real control plane: plans made and
moved through the migration domain's API, a person's controls clicked in the page."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import PageErrors, screenshot
from tests.browser.pages import sign_in
from tests.browser.plane_stack import PlaneStack
from tests.integration.control.migration_rig import Runner, apply_routes, store_plan

from hybridmesh.gateway.state import GatewayState
from hybridmesh.migration.state import MigrationState, PlanRecord, Status


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneStack]:
    """The real control plane (the page fixture opens pages on it), with the gateway's
    content-delivery route."""
    plane = PlaneStack(tmp_path_factory.mktemp("plane") / "mesh.db")
    plane.start()
    try:
        plane.call(apply_routes(plane.store))
        yield plane
    finally:
        plane.stop()


def awaiting_approval(plane: PlaneStack, name: str) -> Runner:
    """Plan ``name`` stored, started and moved by a runner through its 10 % step (healthy
    traffic, some of it failing, recorded in the gateway's windows) to its 50 % step, which
    waits for approval."""

    async def move() -> Runner:
        await store_plan(plane.store, name)
        runner = Runner(plane.store, time.time())
        await runner.tick(name, 3)
        for second in range(0, 50, 3):
            await runner.traffic("delivery", runner.now + second, ok=15 + second % 7, failed=0)
        runner.now += 700
        record = await runner.tick(name, 3)
        assert record.status is Status.WAITING_APPROVAL, record.reason
        return runner

    return plane.call(move())


def record(plane: PlaneStack, name: str) -> PlanRecord:
    return plane.call(MigrationState(plane.store).get(name))


def test_the_list_and_a_plan_show_where_it_stands_and_its_history(
    page: Page, stack: PlaneStack
) -> None:
    awaiting_approval(stack, "carve-delivery")
    sign_in(page, stack.tokens["read"], "/ui/#/migrations")
    expect(page.get_by_role("heading", level=1)).to_have_text("Migrations")
    row = page.locator("#migrations-table tbody tr", has_text="carve-delivery")
    expect(row).to_contain_text("waiting approval")
    row.get_by_role("link", name="carve-delivery").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("carve-delivery")
    facts = page.locator("#migration-facts")
    expect(facts).to_contain_text("content-delivery 50%")
    expect(facts).to_contain_text("monolith 90%, delivery 10%")
    expect(page.get_by_role("img", name="Traffic split over time, percent")).to_be_visible()
    gate = page.locator("#gates .gate", has_text="content-delivery 10%")
    expect(
        gate.get_by_role("img", name="content-delivery 10%: error rate over time, percent")
    ).to_be_visible()
    expect(gate.locator(".threshold-label").first).to_have_text("max 1%")
    expect(gate).to_contain_text("requests to delivery")
    expect(page.locator("#migration-steps")).to_contain_text("pass")
    # A read token may look; the buttons are offered by status, the API says who may act.
    expect(page.locator("#migration-approve")).to_be_enabled()
    expect(page.locator("#migration-resume")).to_be_disabled()
    screenshot(page, "dashboard-migration")


def test_approving_from_the_button_lets_the_plan_progress(page: Page, stack: PlaneStack) -> None:
    runner = awaiting_approval(stack, "approve-me")
    waiting = record(stack, "approve-me")
    sign_in(page, stack.tokens["operate"], "/ui/#/migrations/approve-me")
    page.locator("#migration-approve").click()
    expect(page.locator("#migration-question")).to_contain_text("Approve the current step?")
    page.get_by_label("Reason").fill("release manager says go")
    page.locator("#migration-confirm-yes").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("running")

    approved = record(stack, "approve-me")
    assert (approved.status, approved.approved_step) == (Status.RUNNING, waiting.step)
    entry = stack.call(MigrationState(stack.store).audit("approve-me"))[-1]
    assert (entry.actor, entry.action, entry.reason) == (
        "operate",
        "migration.approve",
        "release manager says go",
    )
    moved = stack.call(runner.tick("approve-me"))
    assert (moved.step, moved.phase.value) == (waiting.step, "monitoring")
    route = stack.call(GatewayState(stack.store).route("content-delivery")).route
    assert route.backend("delivery").weight == 50.0
    expect(page.locator("#migration-facts")).to_contain_text("delivery 50%")


def test_pause_resume_and_abort_from_the_buttons(page: Page, stack: PlaneStack) -> None:
    awaiting_approval(stack, "stop-me")
    sign_in(page, stack.tokens["operate"], "/ui/#/migrations/stop-me")
    heading = page.get_by_role("heading", level=1)

    page.locator("#migration-pause").click()
    page.locator("#migration-confirm-no").click()  # thought better of it
    expect(page.locator("#migration-confirm")).to_be_hidden()
    assert record(stack, "stop-me").status is Status.WAITING_APPROVAL

    page.locator("#migration-pause").click()
    page.locator("#migration-confirm-yes").click()
    expect(heading).to_contain_text("paused")
    assert record(stack, "stop-me").status is Status.PAUSED
    expect(page.locator("#migration-pause")).to_be_disabled()

    page.locator("#migration-resume").click()
    page.locator("#migration-confirm-yes").click()
    expect(heading).to_contain_text("running")
    assert record(stack, "stop-me").status is Status.RUNNING

    page.locator("#migration-abort").click()
    page.locator("#migration-confirm-yes").click()
    expect(heading).to_contain_text("aborting")
    assert record(stack, "stop-me").status is Status.ABORTING
    expect(page.locator("#migration-abort")).to_be_disabled()


def test_a_read_token_cannot_approve_and_is_told_so(
    page: Page, stack: PlaneStack, page_errors: PageErrors
) -> None:
    page_errors.allow("403")
    awaiting_approval(stack, "read-only")
    sign_in(page, stack.tokens["read"], "/ui/#/migrations/read-only")
    page.locator("#migration-approve").click()
    page.locator("#migration-confirm-yes").click()
    expect(page.locator("#banner")).to_contain_text("needs operate")
    assert record(stack, "read-only").status is Status.WAITING_APPROVAL
