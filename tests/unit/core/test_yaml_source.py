"""Reading YAML with the line of every key, as both definition loaders do."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridmesh.core.errors import ValidationError
from hybridmesh.core.yaml_source import Lines, parse_yaml, read_yaml, yaml_files


def test_every_key_and_item_has_its_line_in_every_document(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text("name: a\nsteps:\n  - id: x\n    timeout: 5\n---\nname: b\n")

    first, second = read_yaml(path)

    assert first.data == {"name": "a", "steps": [{"id": "x", "timeout": 5}]}
    assert first.lines.line_of(("steps", 0, "timeout")) == 4
    step = first.lines.under(("steps", 0))
    assert step is not None
    assert step.locations() == {(): 3, ("id",): 3, ("timeout",): 4}
    assert (second.data, second.lines.line_of(("name",))) == ({"name": "b"}, 6)  # of the file


def test_a_location_without_a_line_takes_the_nearest_enclosing_one() -> None:
    (document,) = parse_yaml("name: a\nsteps:\n  - id: x\n", "f.yaml")

    assert document.lines.line_of(("steps", 0, "payload", "sku")) == 3
    assert document.lines.under(("steps", 0, "payload")) is None
    assert Lines(7).line_of(("steps",)) == 7


def test_bad_yaml_is_one_problem_at_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: a\nsteps: [\n")

    with pytest.raises(ValidationError) as caught:
        read_yaml(path)

    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == (str(path), 3)
    assert problem.message.startswith("invalid YAML")


def test_a_folder_gives_its_yaml_files_recursively_in_name_order(tmp_path: Path) -> None:
    for name in ("b.yml", "a/z.yaml", "a/notes.txt", "c.yaml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")

    assert [p.relative_to(tmp_path).as_posix() for p in yaml_files(tmp_path)] == [
        "a/z.yaml",
        "b.yml",
        "c.yaml",
    ]
    assert yaml_files(tmp_path / "c.yaml") == [tmp_path / "c.yaml"]
