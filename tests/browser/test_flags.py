"""The feature flags views in a real browser, against the real control plane, with flags
stored through the flags domain API and read back there after each change."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from tests.browser.conftest import PageErrors, screenshot
from tests.browser.pages import sign_in
from tests.browser.plane_stack import PlaneStack

from hybridmesh.flags.client import FlagClient
from hybridmesh.flags.evaluation import Evaluation
from hybridmesh.flags.model import TARGETING_KEY, Flag
from hybridmesh.flags.store import FlagStore, StoredFlag

FLAGS: list[dict[str, Any]] = [
    {
        "key": "new-checkout",
        "description": "The rewritten checkout service",
        "variants": {"on": True, "off": False},
        "default_variant": "off",
        "targeting": [
            {
                "when": [{"attribute": "email", "ends_with": "@example.com"}],
                "variant": "on",
            },
            {"fractional": [{"variant": "on", "weight": 25}, {"variant": "off", "weight": 75}]},
        ],
    },
    {
        "key": "banner-colour",
        "enabled": False,
        "variants": {"red": "#c00", "blue": "#00c"},
        "default_variant": "blue",
    },
    {
        "key": "search-backend",
        "description": "Which search serves queries",
        "variants": {"legacy": "solr", "new": "opensearch"},
        "default_variant": "legacy",
        "targeting": [
            {"fractional": [{"variant": "new", "weight": 10}, {"variant": "legacy", "weight": 90}]}
        ],
    },
]


async def store_flags(plane: PlaneStack) -> None:
    flags = FlagStore(plane.store)
    for spec in FLAGS:
        await flags.put(Flag.model_validate(spec), source="test")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneStack]:
    plane = PlaneStack(tmp_path_factory.mktemp("plane") / "mesh.db")
    plane.start()
    try:
        plane.call(store_flags(plane))
        yield plane
    finally:
        plane.stop()


def stored(stack: PlaneStack, key: str) -> StoredFlag:
    return stack.call(FlagStore(stack.store).get(key))


def evaluate(stack: PlaneStack, key: str, targeting_key: str) -> Evaluation:
    flag = stored(stack, key).flag
    return FlagClient.from_flags([flag]).evaluate(key, {TARGETING_KEY: targeting_key}, None)


def test_the_list_shows_each_flag_its_state_variants_and_rollout(
    page: Page, stack: PlaneStack
) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/flags")
    expect(page.get_by_role("heading", level=1)).to_have_text("Flags")
    rows = page.locator("#flags-table tbody tr")
    expect(rows).to_have_count(len(FLAGS))
    checkout = rows.filter(has_text="new-checkout")
    expect(checkout).to_contain_text("enabled")
    expect(checkout).to_contain_text("The rewritten checkout service")
    expect(checkout).to_contain_text("on, off")
    expect(checkout).to_contain_text("on 25%, off 75%")
    expect(checkout).to_contain_text("2 rules, the last a split of everyone")
    banner = rows.filter(has_text="banner-colour")
    expect(banner).to_contain_text("disabled")
    expect(banner).to_contain_text("string")
    expect(banner).to_contain_text("none (static)")
    screenshot(page, "dashboard-flags")
    page.get_by_role("link", name="new-checkout").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("new-checkout")
    expect(page.locator("#flag-facts")).to_contain_text("on = true")


def test_disabling_then_enabling_from_the_button_changes_the_stored_flag(
    page: Page, stack: PlaneStack
) -> None:
    sign_in(page, stack.tokens["operate"], "/ui/#/flags/new-checkout")
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text("enabled")
    page.get_by_role("button", name="Disable flag").click()
    expect(page.locator("#flag-toggle-question")).to_contain_text("default variant (off)")
    page.get_by_role("button", name="Cancel").click()
    assert stored(stack, "new-checkout").flag.enabled
    page.get_by_role("button", name="Disable flag").click()
    page.get_by_role("button", name="Yes, disable").click()
    expect(heading).to_contain_text("disabled")
    expect(page.get_by_role("button", name="Enable flag")).to_be_visible()
    after = stored(stack, "new-checkout")
    assert (after.flag.enabled, after.source) == (False, "api")
    page.get_by_role("button", name="Enable flag").click()
    page.get_by_role("button", name="Yes, enable").click()
    expect(heading).to_contain_text("enabled")
    assert stored(stack, "new-checkout").flag.enabled


def test_changing_the_rollout_percent_changes_the_stored_split(
    page: Page, stack: PlaneStack, page_errors: PageErrors
) -> None:
    page_errors.allow(r"status of 400")
    sign_in(page, stack.tokens["operate"], "/ui/#/flags/search-backend")
    percent = page.get_by_label("Percent for new")
    expect(percent).to_have_value("10")
    expect(page.locator("#flag-rollout-rest")).to_contain_text("(legacy) takes the rest: 90%")
    percent.fill("120")
    page.get_by_role("button", name="Change rollout").click()
    page.get_by_role("button", name="Yes, change it").click()
    expect(page.get_by_role("alert")).to_contain_text("percent")
    assert stored(stack, "search-backend").version == 1
    page.get_by_role("button", name="Cancel").click()
    percent.fill("37.5")
    expect(page.locator("#flag-rollout-rest")).to_contain_text("takes the rest: 62.5%")
    page.get_by_role("button", name="Change rollout").click()
    page.get_by_role("button", name="Yes, change it").click()
    expect(page.locator("#flag-facts")).to_contain_text("new 37.5%, legacy 62.5%")
    split = stored(stack, "search-backend").flag.targeting[-1].fractional
    assert split is not None
    assert [(s.variant, s.weight) for s in split] == [("new", 3750), ("legacy", 6250)]


def test_evaluating_shows_the_variant_value_and_reason(page: Page, stack: PlaneStack) -> None:
    sign_in(page, stack.tokens["read"], "/ui/#/flags/new-checkout")
    page.get_by_label("Targeting key").fill("user-7")
    page.get_by_label("Context (JSON)").fill('{"email": "ann@example.com"}')
    page.get_by_role("button", name="Evaluate").click()
    result = page.locator("#flag-evaluation")
    expect(result).to_contain_text("TARGETING_MATCH")
    expect(result.locator("dd").nth(0)).to_have_text("on")
    expect(result.locator("dd").nth(1)).to_have_text("true")

    page.get_by_label("Context (JSON)").fill("{}")
    page.get_by_role("button", name="Evaluate").click()
    split = evaluate(stack, "new-checkout", "user-7")
    expect(result).to_contain_text("SPLIT")
    expect(result.locator("dd").nth(0)).to_have_text(str(split.variant))
    screenshot(page, "dashboard-flag")

    page.get_by_label("Context (JSON)").fill("[1, 2]")
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#evaluate-error")).to_contain_text("a JSON object")
    expect(result).to_have_count(0)


def test_a_read_token_cannot_toggle_and_is_told_so(
    page: Page, stack: PlaneStack, page_errors: PageErrors
) -> None:
    page_errors.allow(r"status of 403")
    sign_in(page, stack.tokens["read"], "/ui/#/flags/banner-colour")
    page.get_by_role("button", name="Enable flag").click()
    page.get_by_role("button", name="Yes, enable").click()
    expect(page.get_by_role("alert").filter(has_text="role")).to_contain_text(
        "Your token's role cannot do this"
    )
    assert not stored(stack, "banner-colour").flag.enabled
