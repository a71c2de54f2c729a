"""Properties of the shared YAML reader, on any input: it answers with the documents or with a
ValidationError at the file (and the line, where there is one), never anything else; what it
accepts is exactly what was written; and its work is bounded by the size of the input and
the limits, however the input nests or aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.core.yaml_trees import Model, documents

from hybridmesh.core import _yaml_compose
from hybridmesh.core.errors import ValidationError
from hybridmesh.core.yaml_source import YamlDocument, YamlLimits, YamlReader

#: Small enough that generated inputs pass them often.
LIMITS = YamlLimits(max_nodes=60, max_depth=5, max_key_chars=40, max_scalar_chars=200)

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(params=["libyaml", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each property holds on libyaml's parser and on PyYAML's own."""
    if request.param == "python":
        monkeypatch.setattr(_yaml_compose, "_CParser", None)
    return str(request.param)


def read(data: str | bytes, limits: YamlLimits = LIMITS) -> tuple[YamlReader, Any]:
    """The reader after reading ``data``, and its documents or the ValidationError."""
    reader = YamlReader(limits)
    try:
        return reader, reader.parse(data, "in.yaml")
    except ValidationError as refused:
        return reader, refused


def expanded(value: Any, most: int) -> int:
    """How many nodes ``value`` holds, aliases repeated (counting stops past ``most``)."""
    count = 0
    pending = [value]
    while pending and count <= most:
        item = pending.pop()
        count += 1
        if isinstance(item, dict):
            count += len(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return count


def depth(value: Any) -> int:
    """How many lists and mappings ``value`` nests, aliases repeated."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, (dict, list)):
            level += 1
            deepest = max(deepest, level)
            inside: Iterator[Any] = iter(item.values() if isinstance(item, dict) else item)
            pending.extend((child, level) for child in inside)
    return deepest


def check_answer(reader: YamlReader, answer: Any, size: int) -> None:
    """Documents within the limits, or a refusal at the file on one line; and work in
    proportion to the input either way."""
    assert reader.events <= 3 * size + 8
    if isinstance(answer, ValidationError):
        (problem,) = answer.problems
        assert problem.file == "in.yaml"
        assert problem.line is None or 1 <= problem.line <= size + 2
        assert "\n" not in str(problem)
        return
    assert isinstance(answer, list)
    assert reader.nodes <= LIMITS.max_nodes
    for document in answer:
        assert isinstance(document, YamlDocument)
        assert expanded(document.data, LIMITS.max_nodes) <= LIMITS.max_nodes
        assert depth(document.data) <= LIMITS.max_depth


@PROPERTY
@given(data=st.binary(max_size=300))
def test_any_bytes_give_documents_or_a_validation_error(parser: str, data: bytes) -> None:
    reader, answer = read(data)

    check_answer(reader, answer, len(data))


@PROPERTY
@given(text=st.text(max_size=300))
def test_any_text_gives_documents_or_a_validation_error(parser: str, text: str) -> None:
    reader, answer = read(text)

    check_answer(reader, answer, len(text))


#: Characters YAML gives meaning to, so that generated text is often nearly valid YAML.
YAMLISH = st.text(
    alphabet=st.sampled_from(list("-:?[]{},&*!|>'\"%@`#\n ab1.<=~\t\\")), max_size=300
)


@PROPERTY
@given(text=YAMLISH)
def test_yaml_punctuation_gives_documents_or_a_validation_error(parser: str, text: str) -> None:
    reader, answer = read(text)

    check_answer(reader, answer, len(text))


@PROPERTY
@given(model=documents())
def test_generated_documents_are_read_exactly_or_refused(parser: str, model: Model) -> None:
    reader, answer = read(model.text)

    check_answer(reader, answer, len(model.text))
    if model.refused_by(LIMITS.max_nodes, LIMITS.max_depth):
        assert isinstance(answer, ValidationError), model
        (problem,) = answer.problems
        assert problem.line is not None
        return
    assert not isinstance(answer, ValidationError), (model, answer)
    (document,) = answer
    assert document.data == model.data
    assert reader.nodes == model.nodes


@PROPERTY
@given(model=documents(), copies=st.integers(min_value=1, max_value=40))
def test_repeating_a_document_costs_in_proportion_to_its_length(
    parser: str, model: Model, copies: int
) -> None:
    one = model.text if model.text.startswith("---") else "---\n" + model.text
    text = one * copies
    limits = YamlLimits(max_nodes=10**9, max_total_nodes=10**9, max_depth=LIMITS.max_depth)

    reader, answer = read(text, limits)

    assert reader.events <= 3 * len(text) + 8
    if not isinstance(answer, ValidationError):
        assert len(answer) == copies
        assert reader.nodes == model.nodes * copies
