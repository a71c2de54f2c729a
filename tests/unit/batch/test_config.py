"""Batch targets from YAML: what a worker's legacy schedules and formats come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridmesh.batch import BatchTarget, load_batch_targets
from hybridmesh.core.errors import ValidationError


def test_targets_load_with_their_schedules_and_formats(tmp_path: Path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(
        "targets:\n"
        "  - target: legacy-erp\n"
        "    operation: customer-sync\n"
        "    schedule: '0 2 * * *'\n"
        "    fields: [customer_id, email]\n"
        "  - target: legacy-erp\n"
        "    format: http\n"
        "    endpoint: http://erp.internal/batch\n"
        "    limit: 500\n"
    )
    first, second = load_batch_targets(path)
    assert first == BatchTarget(
        "legacy-erp", "customer-sync", schedule="0 2 * * *", fields=("customer_id", "email")
    )
    assert first.cron is not None and str(first.cron) == "0 2 * * *"
    assert (second.operation, second.format, second.limit) == ("*", "http", 500)


def test_a_plain_list_and_an_empty_file_work(tmp_path: Path) -> None:
    listed = tmp_path / "list.yaml"
    listed.write_text("- target: erp\n  format: xml\n")
    assert [t.format for t in load_batch_targets(listed)] == ["xml"]
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_batch_targets(empty) == []


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "targets:\n"
        "  - target: erp\n"
        "    format: http\n"
        "  - target: erp\n"
        "    schedul: '0 2 * * *'\n"
        "  - target: erp\n"
        "    schedule: '99 * * * *'\n"
    )
    with pytest.raises(ValidationError) as raised:
        load_batch_targets(path)
    lines = str(raised.value).splitlines()
    assert any("bad.yaml:2" in line and "[targets[0].endpoint]" in line for line in lines)
    assert any("bad.yaml:5" in line and "[targets[1].schedul]" in line for line in lines)
    assert any("bad.yaml:7" in line and "[targets[2].schedule]" in line for line in lines)


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("limit: .inf", "limit", "must be a whole number"),
        ("limit: .nan", "limit", "must be a whole number"),
        ("limit: 2.5", "limit", "must be a whole number"),
        ("limit: true", "limit", "must be a whole number"),
        ("limit: '10'", "limit", "must be a whole number"),
        ("limit: 99999999999999999999", "limit", "must be at most 1000000"),
        ("limit: 0", "limit", "must be at least 1"),
        (
            "endpoint: 'http://a b/'",
            "endpoint",
            "'http://a b/' is not an http(s) URL: it contains ' '",
        ),
        ("endpoint: 'http://erp/batch?x=1'", "endpoint", "a URL here has no query or fragment"),
    ],
)
def test_a_bad_limit_or_endpoint_names_file_line_and_field(
    tmp_path: Path, line: str, field: str, message: str
) -> None:
    path = tmp_path / "targets.yaml"
    endpoint = "" if field == "endpoint" else "    endpoint: http://erp/b\n"
    path.write_text(f"targets:\n  - target: legacy-erp\n    format: http\n{endpoint}    {line}\n")
    where = (str(path), 5 if endpoint else 4, f"targets[0].{field}")

    with pytest.raises(ValidationError) as refused:
        load_batch_targets(path)

    (problem,) = refused.value.problems
    assert (problem.file, problem.line, problem.field) == where
    assert message in problem.message


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        (
            b"targets:\n  - target: erp\n    format: xml\n    format: csv\n",
            4,
            "the key 'format' is given twice in one mapping, at lines 3 and 4",
        ),
        (b"- target: caf\xe9\n", 1, "not UTF-8: byte 0xe9 at offset 13"),
        (b"- target: erp\n---\n- target: crm\n", 3, "expected one YAML document"),
        (b"t: " + b"[" * 5_000 + b"]" * 5_000, 1, "nested deeper than 64 levels"),
    ],
)
def test_targets_are_read_within_the_rules_of_every_yaml_input(
    tmp_path: Path, content: bytes, line: int, message: str
) -> None:
    path = tmp_path / "targets.yaml"
    path.write_bytes(content)

    with pytest.raises(ValidationError) as raised:
        load_batch_targets(path)

    (problem,) = raised.value.problems
    assert (problem.file, problem.line) == (str(path), line)
    assert problem.message.startswith(message)
