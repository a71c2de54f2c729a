"""Browser tests of the dashboard: Debian's Chromium, driven by Playwright.

One browser for the module, a fresh page (and browser context: its own sessionStorage)
per test. Module, not session: Playwright's synchronous API keeps its event loop marked as
running while it is started, which the asyncio tests of other modules run in the same
process cannot share, so it stops before they run.

Every console error and uncaught page error is recorded, and a test during which one
occurred fails, unless the test said it expects that message (:meth:`PageErrors.allow`:
an API answer of 401 is logged by Chromium as a failed load, for one).

Without /usr/bin/chromium the tests skip, unless ``HYBRIDMESH_REQUIRE_SERVICES=1`` is set
(as CI does), in which case they fail. ``HYBRIDMESH_SCREENSHOTS=1`` makes the tests that
show a view save it to docs/images/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from tests.browser.stack import Stack
from tests.conftest import REQUIRE_SERVICES

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = os.environ.get("HYBRIDMESH_SCREENSHOTS", "") not in ("", "0", "false")
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"

PAGE_ERRORS = pytest.StashKey["PageErrors"]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.browser)


@dataclass
class PageErrors:
    """Console errors and uncaught exceptions of a page, less those a test allows."""

    seen: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Expect console errors matching ``pattern`` (a regular expression)."""
        self.allowed.append(re.compile(pattern))

    def record(self, message: str) -> None:
        self.seen.append(message)

    def unexpected(self) -> list[str]:
        return [m for m in self.seen if not any(p.search(m) for p in self.allowed)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail a test whose page logged an error it did not expect (after its own checks)."""
    result = yield
    errors = item.stash.get(PAGE_ERRORS, None)
    if errors is not None and errors.unexpected():
        pytest.fail("the page logged errors:\n" + "\n".join(errors.unexpected()), pytrace=False)
    return result


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium, headless, for the module's tests."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message} (HYBRIDMESH_REQUIRE_SERVICES is set)", pytrace=False)
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The platform on loopback with a registry, finished orders (one of them compensated
    after its charge kept failing) and a shipment that waits for its carrier."""
    running = Stack(tmp_path_factory.mktemp("stack") / "mesh.db")
    running.start()
    try:
        for n in range(5):
            running.call(running.run_order(f"o-{n}"))
        running.ops.fail("/operations/charge", 503, 503, 503)
        running.call(running.run_order("o-declined"))
        running.call(running.start_shipment("s-1"))
        yield running
    finally:
        running.stop()


@pytest.fixture
def page_errors(request: pytest.FixtureRequest) -> PageErrors:
    errors = PageErrors()
    request.node.stash[PAGE_ERRORS] = errors
    return errors


@pytest.fixture
def page(browser: Browser, stack: Stack, page_errors: PageErrors) -> Iterator[Page]:
    """A new page on the stack's origin, in a context of its own; errors are recorded."""
    context = browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    new_page = context.new_page()
    new_page.on(
        "console",
        lambda message: message.type == "error" and page_errors.record(f"console: {message.text}"),
    )
    new_page.on("pageerror", lambda error: page_errors.record(f"page error: {error}"))
    try:
        yield new_page
    finally:
        context.close()


def screenshot(page: Page, name: str) -> None:
    """Save the page to docs/images/``name``.png when HYBRIDMESH_SCREENSHOTS is set."""
    if SCREENSHOTS:
        IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(IMAGES / f"{name}.png"), full_page=True)
