"""Payload templates: whole-string values keep their type, embedded ones become text."""

from __future__ import annotations

from typing import Any

import pytest

from hybridmesh.core.errors import ValidationError
from hybridmesh.orchestration.plan import RetrySpec
from hybridmesh.orchestration.steps import classify
from hybridmesh.orchestration.templates import (
    Reference,
    TemplateError,
    compiled,
    has_templates,
    parse,
    references,
    render,
)

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


@pytest.mark.parametrize(
    "template",
    [
        "{{ 1+1 }}",
        "{{ input['x'] }}",
        "{{ nothere.x }}",
        "{{ }}",
        "a {{ input.order_id",
        "{{ a }} }}",
    ],
)
def test_a_template_that_does_not_parse_is_an_error_never_sent_as_text(template: str) -> None:
    with pytest.raises(TemplateError):
        render({"value": template}, SCOPE)
    renderer = compiled({"value": template, "order": "{{ input.order_id }}"})
    assert renderer is not None
    with pytest.raises(TemplateError):
        renderer(SCOPE)


def test_a_template_error_is_a_validation_error_so_the_step_is_not_retried() -> None:
    with pytest.raises(TemplateError) as failed:
        render("{{ input.nope }}", SCOPE)

    assert isinstance(failed.value, ValidationError)
    assert classify(failed.value, RetrySpec(max_attempts=3)).retryable is False


def test_text_without_an_opening_brace_pair_is_sent_as_written() -> None:
    payload = {"json": '{"a": {"b": 1}}', "braces": "}} {", "single": "{x}"}

    assert not has_templates(payload)
    assert render(payload, SCOPE) == payload
    assert parse('{"a": {"b": 1}}') == ('{"a": {"b": 1}}',)


def test_a_template_is_parsed_into_text_and_references() -> None:
    assert parse("order {{input.order_id}} for {{ context.reserve-inventory.id }}!") == (
        "order ",
        Reference(("input", "order_id")),
        " for ",
        Reference(("context", "reserve-inventory", "id")),
        "!",
    )
    assert [str(r) for r in references(" {{ steps.a.result }} ")] == ["steps.a.result"]


def test_a_path_that_is_not_a_list_index_names_nothing_in_a_list() -> None:
    scope = {"input": {"items": ["a", "b"]}}

    assert render("{{ input.items.1 }}", scope) == "b"
    for path in ("input.items.2", "input.items.x", "input.items.²", "input.items." + "9" * 5000):
        with pytest.raises(TemplateError, match="nothing at"):
            render("{{ " + path + " }}", scope)
