"""The OpenFeature provider, through the OpenFeature SDK's own API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from tests.waiting import eventually

from hybridmesh.flags import Flag, FlagClient, FlagStore, parse_flags
from hybridmesh.flags.provider import HybridmeshProvider
from hybridmesh.store import open_store

FLAGS = """\
flags:
  - key: new-checkout
    variants: {"on": true, "off": false}
    default_variant: "off"
    targeting:
      - when: [{attribute: plan, equals: beta}]
        variant: "on"
      - fractional:
          - {variant: "on", weight: 50}
          - {variant: "off", weight: 50}
  - key: color
    variants: {red: "#f00", blue: "#00f"}
    default_variant: blue
  - key: limit
    variants: {low: 10, high: 2.5}
    default_variant: low
    targeting:
      - when: [{attribute: plan, equals: pro}]
        variant: high
  - key: layout
    variants: {grid: {cols: 3}}
    default_variant: grid
  - key: retired
    enabled: false
    variants: {"on": true, "off": false}
    default_variant: "off"
"""


@pytest.fixture
def flags() -> FlagClient:
    return FlagClient.from_flags(item.flag for item in parse_flags(FLAGS, "flags.yaml"))


@pytest.fixture
def client(flags: FlagClient) -> Iterator[Any]:
    api.set_provider_and_wait(HybridmeshProvider(flags))
    try:
        yield api.get_client()
    finally:
        api.clear_providers()


def test_metadata(client: Any) -> None:
    assert api.get_provider_metadata().name == "hybridmesh"


def test_a_split_by_targeting_key_and_a_targeting_match(client: Any) -> None:
    seen = {
        client.get_boolean_value("new-checkout", False, EvaluationContext(f"user-{i}"))
        for i in range(50)
    }
    assert seen == {True, False}
    details = client.get_boolean_details("new-checkout", False, EvaluationContext("user-1"))
    again = client.get_boolean_details("new-checkout", True, EvaluationContext("user-1"))
    assert details.reason == "SPLIT" and details.error_code is None
    assert (details.value, details.variant) == (again.value, again.variant)
    assert details.variant == ("on" if details.value else "off")

    beta = client.get_boolean_details(
        "new-checkout", False, EvaluationContext(None, {"plan": "beta"})
    )
    assert (beta.value, beta.variant, beta.reason) == (True, "on", "TARGETING_MATCH")


def test_the_same_user_gets_what_the_flag_client_gives(client: Any, flags: FlagClient) -> None:
    for i in range(200):
        ours = flags.evaluate("new-checkout", {"targetingKey": f"u{i}"})
        theirs = client.get_boolean_details("new-checkout", False, EvaluationContext(f"u{i}"))
        assert (theirs.value, theirs.variant) == (ours.value, ours.variant)


def test_errors_give_the_callers_default_with_their_code(client: Any) -> None:
    missing = client.get_boolean_details("nope", True)
    assert (missing.value, missing.reason, missing.error_code) == (
        True,
        "ERROR",
        ErrorCode.FLAG_NOT_FOUND,
    )
    wrong = client.get_string_details("new-checkout", "fallback", EvaluationContext("u1"))
    assert (wrong.value, wrong.error_code) == ("fallback", ErrorCode.TYPE_MISMATCH)
    no_key = client.get_boolean_details("new-checkout", True)
    assert (no_key.value, no_key.error_code) == (True, ErrorCode.TARGETING_KEY_MISSING)
    assert no_key.variant == "off"  # what the flag itself would serve


def test_typed_values_and_reasons(client: Any) -> None:
    color = client.get_string_details("color", "none")
    assert (color.value, color.variant, color.reason) == ("#00f", "blue", "STATIC")
    assert client.get_integer_value("limit", 0) == 10
    assert client.get_float_value("limit", 0.0) == 10.0
    assert isinstance(client.get_float_value("limit", 0.0), float)
    pro = EvaluationContext(None, {"plan": "pro"})
    assert client.get_float_value("limit", 0.0, pro) == 2.5
    not_whole = client.get_integer_details("limit", 7, pro)
    assert (not_whole.value, not_whole.error_code) == (7, ErrorCode.TYPE_MISMATCH)
    assert client.get_object_value("layout", {}) == {"cols": 3}
    retired = client.get_boolean_details("retired", True)
    assert (retired.value, retired.reason) == (False, "DISABLED")


def test_a_client_not_started_is_not_ready() -> None:
    client = FlagClient(None)
    with pytest.raises(Exception, match="start the FlagClient"):
        api.set_provider_and_wait(HybridmeshProvider(client))
    try:
        details = api.get_client().get_boolean_details("new-checkout", True)
        assert details.value is True and details.error_code is not None
    finally:
        api.clear_providers()


async def test_a_change_in_the_store_is_announced(sqlite_url: str) -> None:
    store = await open_store(sqlite_url)
    await store.upgrade()
    writer = FlagStore(store)
    await writer.apply(parse_flags(FLAGS, "flags.yaml"))
    flags = await FlagClient(store, poll_seconds=0.05).start()
    changed: list[list[str]] = []

    def on_change(details: EventDetails) -> None:
        changed.append(list(details.flags_changed or []))

    api.set_provider_and_wait(HybridmeshProvider(flags))
    client = api.get_client()
    client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    try:
        assert client.get_string_value("color", "none") == "#00f"
        spec = (await writer.get("color")).flag.definition()
        await writer.put(Flag.model_validate({**spec, "default_variant": "red"}))
        await eventually(lambda: client.get_string_value("color", "none") == "#f00")
        await eventually(lambda: changed == [["color"]])
    finally:
        client.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
        api.clear_providers()
        await flags.close()
        await store.close()
