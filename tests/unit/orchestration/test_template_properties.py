"""Properties of the template parser, for any string: it answers with pieces or its own
error, it takes a bounded number of steps per character (no backtracking, however
adversarial the string), and what it accepts renders or fails cleanly."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hybridmesh.orchestration import templates
from hybridmesh.orchestration.definitions import SagaDefinition, SagaStep, validate
from hybridmesh.orchestration.templates import (
    Reference,
    TemplateError,
    compiled,
    parse,
    references,
    render,
)

# No explain phase: it traces the test, and the step counter below traces too.
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow],
)

#: Pieces that make strings near the grammar's edges likelier than random text does.
TOKENS = st.sampled_from(
    [
        "{{",
        "}}",
        "{",
        "}",
        " ",
        ".",
        "input",
        "context",
        "steps",
        "execution_id",
        "result",
        "a",
        "0",
        "-",
        "_",
        "[",
        "'",
        "+",
        "é",
        "\n",
        "{{ input.a }}",
        "{{ context.s.a }}",
    ]
)
TEMPLATEISH = st.lists(TOKENS, max_size=40).map("".join)
TEXTS = st.one_of(st.text(max_size=200), TEMPLATEISH)

KEYS = st.sampled_from(["a", "s", "0", "1", "result", "status", "x"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=10,
)
SCOPES = st.fixed_dictionaries(
    {
        "input": st.dictionaries(KEYS, JSON, max_size=3),
        "context": st.dictionaries(KEYS, JSON, max_size=3),
        "steps": st.dictionaries(
            KEYS, st.fixed_dictionaries({"status": st.text(max_size=3), "result": JSON}), max_size=2
        ),
        "execution_id": st.text(max_size=5),
    }
)


def steps_of(work: Callable[[], Any]) -> int:
    """How many lines of the templates module ``work`` runs: the parser's own work, which
    (with the linear scans it asks of ``str``) bounds its time."""
    count = 0
    code_file = templates.__file__

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if frame.f_code.co_filename != code_file:
            return None
        if event == "line":
            count += 1
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        work()
    except TemplateError:
        pass
    finally:
        sys.settrace(previous)
    return count


def parse_steps(text: str) -> int:
    return steps_of(lambda: parse(text))


@SETTINGS
@given(TEXTS)
def test_any_string_parses_or_raises_the_parsers_own_error(text: str) -> None:
    try:
        pieces = parse(text)
    except TemplateError as error:
        assert str(error).startswith(("template ", "error: template "))
        return
    literal = [piece for piece in pieces if isinstance(piece, str)]
    assert all("{{" not in piece for piece in literal)
    if "{{" in text:
        assert all("}}" not in piece for piece in literal)
    assert sum(isinstance(piece, Reference) for piece in pieces) == text.count("{{")
    assert all(piece.root in templates.ROOTS for piece in pieces if isinstance(piece, Reference))


@SETTINGS
@given(TEXTS)
def test_the_parser_takes_a_bounded_number_of_steps_per_character(text: str) -> None:
    assert parse_steps(text) <= 12 * len(text) + 40


#: Strings built to make a backtracking parser take time exponential or quadratic in their
#: length, by how many times they repeat their pattern.
ADVERSARIAL: dict[str, Callable[[int], str]] = {
    "openings": lambda n: "{{" * n,
    "closings": lambda n: "}}" * n,
    "an unclosed long path": lambda n: "{{ a" + ".a" * n,
    "a long path": lambda n: "{{ input" + ".a" * n + " }}",
    "a long name, then a bad character": lambda n: "{{ input." + "a" * n + "! }}",
    "many templates": lambda n: "{{ input.a }}" * n,
    "many half-closed templates": lambda n: "{{ input.a }" * n,
    "single braces": lambda n: "{" * (2 * n + 1),
    "spaces after an opening": lambda n: "{{ " + " " * n,
    "text, then an opening": lambda n: "x" * n + "{{",
    "a template, then closing braces": lambda n: "{{ input.a }}" + "}" * n,
}


def test_adversarial_strings_are_parsed_in_steps_linear_in_their_length() -> None:
    for name, build in ADVERSARIAL.items():
        small, large = build(5_000), build(10_000)
        assert parse_steps(large) <= 12 * len(large) + 40, name
        # Twice the pattern costs at most about twice the steps.
        assert parse_steps(large) <= 2 * parse_steps(small) + 40, name


def test_adversarial_strings_fail_at_the_first_thing_wrong() -> None:
    def failure(text: str) -> str:
        try:
            parse(text)
        except TemplateError as error:
            return error.problems[0].message.split(": ", 1)[1]
        return "parsed"

    n = 10_000
    assert failure(ADVERSARIAL["openings"](n)) == "'{{' at character 1 is not closed by '}}'"
    assert failure(ADVERSARIAL["an unclosed long path"](n)).startswith("'{{' at character 1 ")
    assert failure(ADVERSARIAL["a long name, then a bad character"](n)).endswith(
        "is not a path: a root and names joined by '.', each name letters, digits, '_' or '-'"
    )
    assert failure(ADVERSARIAL["a template, then closing braces"](n)) == (
        "'}}' at character 14 closes no '{{'"
    )
    assert parse(ADVERSARIAL["closings"](n)) == (ADVERSARIAL["closings"](n),)
    assert len(parse(ADVERSARIAL["many templates"](n))) == n
    assert len(references(ADVERSARIAL["a long path"](n))[0].path) == n + 1


@SETTINGS
@given(TEXTS, SCOPES)
def test_a_template_that_parses_renders_or_fails_cleanly(text: str, scope: dict[str, Any]) -> None:
    try:
        parse(text)
    except TemplateError:
        return
    outcomes = []
    for render_it in (lambda: render(text, scope), lambda: _compiled(text)(scope)):
        try:
            outcomes.append(("value", render_it()))
        except TemplateError as error:
            outcomes.append(("error", str(error)))
    assert outcomes[0] == outcomes[1]


def _compiled(text: str) -> Callable[[Any], Any]:
    renderer = compiled(text)
    return renderer if renderer is not None else (lambda scope: text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS, SCOPES)
def test_a_payload_that_validates_renders_or_fails_cleanly(
    text: str, scope: dict[str, Any]
) -> None:
    payload = {"value": text}
    saga = SagaDefinition(
        "s",
        (
            SagaStep("s", "user-service", "first"),
            SagaStep("second", "user-service", "second", payload=payload),
        ),
    )
    problems = validate(saga)  # never raises
    if any(problem.severity == "error" for problem in problems):
        assert any(problem.field == "steps[1].payload.value" for problem in problems)
        return
    renderer = compiled(payload)
    if renderer is None:
        assert "{{" not in text
        return
    try:
        rendered = renderer(scope)
    except TemplateError:
        return
    assert set(rendered) == {"value"}
