"""Payload templates: whole-string values keep their type, embedded ones become text."""

from __future__ import annotations

from typing import Any

import pytest

from hybridmesh.core.errors import ValidationError
from hybridmesh.orchestration.templates import compiled, has_templates, render

SCOPE: dict[str, Any] = {
    "input": {"order_id": "O-1", "items": [{"sku": "A", "quantity": 2}], "total": 12.5},
    "context": {"reserve-inventory": {"reservation_id": "R-9"}, "user_id": "U-1"},
    "execution_id": "ex-1",
}

PAYLOAD = {
    "order": "{{ input.order_id }}",
    "items": "{{input.items}}",
    "first_sku": "{{ input.items.0.sku }}",
    "total": "{{ input.total }}",
    "note": "order {{ input.order_id }} for {{ context.user_id }} ({{ input.total }})",
    "reservation": ["{{ context.reserve-inventory.reservation_id }}", "plain"],
    "fixed": 3,
}

EXPECTED = {
    "order": "O-1",
    "items": [{"sku": "A", "quantity": 2}],
    "first_sku": "A",
    "total": 12.5,
    "note": "order O-1 for U-1 (12.5)",
    "reservation": ["R-9", "plain"],
    "fixed": 3,
}


def test_render_replaces_templates_keeping_types_of_whole_values() -> None:
    assert render(PAYLOAD, SCOPE) == EXPECTED


def test_a_compiled_payload_renders_the_same() -> None:
    renderer = compiled(PAYLOAD)
    assert renderer is not None
    assert renderer(SCOPE) == EXPECTED
    assert compiled(PAYLOAD) is renderer  # compiled once


def test_payloads_without_templates_are_left_alone() -> None:
    plain = {"a": [1, "x"], "b": {"c": "d"}}
    assert not has_templates(plain)
    assert compiled(plain) is None
    assert render(plain, SCOPE) == plain


def test_a_path_that_names_nothing_is_an_error_naming_it() -> None:
    with pytest.raises(ValidationError, match=r"nothing at 'input\.customer'"):
        render({"c": "{{ input.customer.id }}"}, SCOPE)
    renderer = compiled({"c": "{{ context.user_id.x }}"})
    assert renderer is not None
    with pytest.raises(ValidationError, match=r"nothing at 'context\.user_id\.x'"):
        renderer(SCOPE)
