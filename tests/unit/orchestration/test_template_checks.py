"""Templates in definitions are checked when the definition is: their syntax, their roots,
and that a step they name has completed by the time they are rendered."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridmesh.orchestration.loader import load_definitions

SAGA = """\
saga_type: s
steps:
  - step_id: first
    service_name: user-service
    operation: first
    payload: {{value: "{first}"}}
  - step_id: second
    service_name: user-service
    operation: second
    payload: {{value: "{second}"}}
    compensation_operation: undo-second
    compensation_payload: {{value: "{undo}"}}
  - step_id: third
    service_name: user-service
    operation: third
"""

WORKFLOW = """\
workflow_id: w
workflow_type: t
name: W
description: ''
consistency_strategy: eventual
timeout_ms: 60000
steps:
  - step_id: a
    step_name: A
    service_info: {{service_name: user-service}}
    operation: {{endpoint: /a}}
  - step_id: b
    step_name: B
    service_info: {{service_name: user-service}}
    operation: {{endpoint: /b}}
    dependencies: [a]
  - step_id: c
    step_name: C
    service_info: {{service_name: user-service}}
    operation: {{endpoint: /c}}
  - step_id: d
    step_name: D
    service_info: {{service_name: user-service}}
    operation:
      endpoint: /d
      payload: {{value: "{d}"}}
    dependencies: [b]
    compensation: {{endpoint: /undo-d, payload: {{value: "{undo}"}}}}
"""


def saga(tmp_path: Path, first: str = "x", second: str = "x", undo: str = "x") -> Path:
    path = tmp_path / "saga.yaml"
    path.write_text(SAGA.format(first=first, second=second, undo=undo), encoding="utf-8")
    return path


def workflow(tmp_path: Path, d: str = "x", undo: str = "x") -> Path:
    path = tmp_path / "workflow.yaml"
    path.write_text(WORKFLOW.format(d=d, undo=undo), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    loaded = load_definitions(path)
    return [str(p) for p in (*loaded.errors, *loaded.warnings)]


@pytest.mark.parametrize(
    "template",
    [
        "{{ input.order_id }}",
        "{{ context.user_id }}",
        "{{ context.first.id }}",
        "{{ steps.first.result.id }}",
        "{{ steps.first.status }}",
        "{{ steps }}",
        "{{ execution_id }}",
        "order {{ input.order_id }} of {{ context.first.items.0.sku }}",
        "{not a template}} {",
    ],
)
def test_templates_that_name_what_is_there_are_valid(tmp_path: Path, template: str) -> None:
    assert problems(saga(tmp_path, second=template)) == []


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "{{ nothere.x }}",
            "template '{{ nothere.x }}': unknown root 'nothere'; a path starts with input, "
            "context, steps, execution_id",
        ),
        (
            "{{ 1+1 }}",
            "template '{{ 1+1 }}': '1+1' is not a path: a root and names joined by '.', each "
            "name letters, digits, '_' or '-'",
        ),
        ("{{ input['x'] }}", "template \"{{ input['x'] }}\": \"input['x']\" is not a path"),
        ("{{ input. x }}", "is not a path"),
        ("{{ input..x }}", "is not a path"),
        ("{{ }}", "template '{{ }}': '{{ }}' names nothing; write a path such as input.order_id"),
        ("a {{ input.x", "template 'a {{ input.x': '{{' at character 3 is not closed by '}}'"),
        ("{{ input.x {{ input.y }}", "'{{' at character 1 is not closed by '}}'"),
        ("{{ input.x }} }}", "template '{{ input.x }} }}': '}}' at character 15 closes no '{{'"),
        ("{{ execution_id.x }}", "execution_id is a string: nothing is under it"),
        (
            "{{ steps.nowhere.result }}",
            "{{ steps.nowhere.result }}: no step 'nowhere' in this saga",
        ),
        ("{{ steps.first.output }}", "a step has 'status' and 'result', not 'output'"),
        (
            "{{ context.third.y }}",
            "{{ context.third.y }}: step 'third' has not run when this step runs: it comes "
            "after this step",
        ),
        ("{{ steps.second.result }}", "step 'second' has not run when this step runs: it is this"),
    ],
)
def test_a_template_that_cannot_resolve_names_file_line_and_field(
    tmp_path: Path, template: str, message: str
) -> None:
    path = saga(tmp_path, second=template)

    (problem,) = problems(path)
    assert problem.startswith(f"{path}:10: error [steps[1].payload.value]: ")
    assert message in problem


def test_a_workflow_step_names_only_its_dependencies_direct_or_through_others(
    tmp_path: Path,
) -> None:
    assert problems(workflow(tmp_path, d="{{ context.a.id }} {{ steps.b.result }}")) == []

    path = workflow(tmp_path, d="{{ context.c.id }}")
    assert problems(path) == [
        f"{path}:26: error [steps[3].operation.payload.value]: {{{{ context.c.id }}}}: step "
        "'c' has not run when this step runs: it is not among this step's dependencies, "
        "direct or through others"
    ]


def test_a_compensation_may_name_what_ran_before_its_step_and_is_warned_of_its_own_answer(
    tmp_path: Path,
) -> None:
    assert problems(saga(tmp_path, undo="{{ context.first.id }}")) == []
    assert problems(workflow(tmp_path, undo="{{ context.a.id }}")) == []

    path = saga(tmp_path, undo="{{ context.second.id }}")
    assert problems(path) == [
        f"{path}:12: warning [steps[1].compensation_payload.value]: {{{{ context.second.id }}}}:"
        " the step's own answer; its compensation also runs when the step gave none (a "
        "timeout), and then this template names nothing"
    ]
    path = saga(tmp_path, undo="{{ context.third.id }}")
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:12: error [steps[1].compensation_payload.value]: ")


def test_the_reference_definitions_use_only_templates_that_resolve() -> None:
    examples = Path(__file__).resolve().parents[3] / "examples" / "tanqory" / "definitions"

    loaded = load_definitions(examples)

    assert (loaded.errors, loaded.warnings) == ([], [])
    assert len(loaded.definitions) == 3
