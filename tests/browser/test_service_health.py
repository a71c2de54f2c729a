"""The service map and the registry table show each service's health, from the circuit
breakers of the process serving the control plane and the gateway's figures of the last
minute, against the real platform on loopback."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Locator, Page, expect
from tests.browser.conftest import screenshot
from tests.browser.pages import sign_in
from tests.browser.stack import Stack

from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.state import GatewayState
from hybridmesh.gateway.stats import WindowRecorder

#: One route per service the gateway fronts: inventory's answers, and the storefront's.
ROUTES = """
routes:
  - name: inventory
    match: {path: {prefix: /inventory}}
    backends:
      - {name: inventory, service: inventory, weight: 100}
  - name: storefront
    match: {path: {prefix: /shop}}
    backends:
      - {name: storefront, service: storefront, weight: 90}
      - {name: static, url: "http://127.0.0.1:9003", weight: 10}
"""


async def record_traffic(stack: Stack) -> None:
    """Ten seconds ago: inventory answered 40 requests through the gateway, 4 of them 503
    (10 %); the storefront 20, all fine; the URL backend 10, all failed."""
    recorder = WindowRecorder(stack.store, replica="r1", clock=lambda: time.time() - 10)
    for n in range(40):
        recorder.observe("inventory", "inventory", 503 if n < 4 else 200, 0.03)
    for _ in range(20):
        recorder.observe("storefront", "storefront", 200, 0.02)
    for _ in range(10):
        recorder.observe("storefront", "static", 502, 0.01)
    await recorder.close()


async def open_breaker(stack: Stack, service: str) -> None:
    """Open, by hand, the breaker the serving process's client keeps for HTTP calls to
    ``service`` (it exists once a call has gone through it)."""
    breaker = stack.client.policies.find_breaker(service)
    assert breaker is not None, f"no call to {service} went through the client"
    breaker.force_open()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The platform after one order (its steps call inventory, payments and users through
    the client), with the payments breaker opened and the gateway's recent figures."""
    running = Stack(tmp_path_factory.mktemp("health") / "mesh.db")
    running.start()
    try:
        running.call(running.run_order("o-1"))
        running.call(GatewayState(running.store).apply(parse_routes(ROUTES, "routes.yaml")))
        running.call(record_traffic(running))
        running.call(open_breaker(running, "payments"))
        yield running
    finally:
        running.stop()


def node(page: Page, name: str) -> Locator:
    return page.locator(f'svg.service-map g.node[data-name="{name}"]')


def health_cell(page: Page, name: str) -> Locator:
    """The Health cell of ``name``'s row in the registry table."""
    return page.locator(f'#services-table tbody tr:has(a:text-is("{name}")) .health')


def test_an_open_breaker_shows_its_service_down_and_its_edges_broken(
    page: Page, stack: Stack
) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/services")
    payments = node(page, "payments")
    expect(payments).to_have_attribute("data-health", "down")
    expect(payments.locator(".health-label")).to_have_text("Down")
    expect(payments).to_have_attribute("aria-label", re.compile(r"health Down$"))
    expect(health_cell(page, "payments")).to_have_text("Down")
    into_payments = page.locator('svg.service-map path.edge[data-target="payments"]')
    expect(into_payments).to_have_class(re.compile(r"\bbroken\b"))
    expect(into_payments).to_have_attribute("marker-end", "url(#arrow-broken)")
    # Its callee's breaker is closed: its own edge is drawn as usual.
    expect(page.locator('svg.service-map path.edge[data-target="fraud-check"]')).not_to_have_class(
        re.compile(r"\bbroken\b")
    )
    # users answered the order's call and its breaker is closed; erp has no signal at all.
    expect(node(page, "users")).to_have_attribute("data-health", "ok")
    expect(node(page, "erp")).to_have_attribute("data-health", "unknown")
    expect(node(page, "erp").locator(".health-label")).to_have_text("No data")
    expect(page.locator("#health-legend")).to_contain_text("Degraded")


def test_gateway_errors_to_a_service_show_it_degraded(page: Page, stack: Stack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/services")
    # 10 % of inventory's gateway requests failed; its breaker is closed.
    expect(node(page, "inventory")).to_have_attribute("data-health", "degraded")
    expect(health_cell(page, "inventory")).to_have_text("Degraded")
    # The storefront's own backend answered every request: the failing URL backend of
    # the same route is not the storefront.
    expect(node(page, "storefront")).to_have_attribute("data-health", "ok")
    expect(page.locator("#health-updated")).to_contain_text("updated")
    screenshot(page, "dashboard-services")


def test_the_health_follows_the_breaker_while_the_view_is_open(page: Page, stack: Stack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/services")
    expect(node(page, "users")).to_have_attribute("data-health", "ok")
    stack.call(open_breaker(stack, "users"))
    try:
        expect(node(page, "users")).to_have_attribute("data-health", "down", timeout=15_000)
        expect(health_cell(page, "users")).to_have_text("Down")
    finally:
        stack.call(reset_breaker(stack, "users"))


async def reset_breaker(stack: Stack, service: str) -> None:
    breaker = stack.client.policies.find_breaker(service)
    assert breaker is not None
    breaker.reset()
