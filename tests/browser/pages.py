"""What the browser tests do on every page of the dashboard."""

from __future__ import annotations

from playwright.sync_api import Page, expect


def sign_in(page: Page, token: str, at: str = "/ui/") -> None:
    """Open ``at`` (a path of the dashboard: ``/ui/#/review``, say), sign in with ``token``
    and wait for the shell; the view of ``at`` then shows."""
    page.goto(at)
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
