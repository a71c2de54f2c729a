"""Reading YAML with the line of every key, as both definition loaders do."""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

import pytest

from hybridmesh.core import _yaml_compose
from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.yaml_source import (
    DEFAULT_LIMITS,
    Lines,
    YamlLimits,
    YamlReader,
    parse_yaml,
    read_yaml,
    yaml_files,
)


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


# ---------------------------------------------------------------------- refused, with lines


@pytest.fixture(params=["libyaml", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each case runs on libyaml's parser and on PyYAML's own, its fallback."""
    if request.param == "python":
        monkeypatch.setattr(_yaml_compose, "_CParser", None)
    return str(request.param)


def refused(data: str | bytes, limits: YamlLimits = DEFAULT_LIMITS) -> Problem:
    """The one problem reading ``data`` as ``f.yaml`` raises; it is on one line."""
    with pytest.raises(ValidationError) as caught:
        parse_yaml(data, "f.yaml", limits)
    (problem,) = caught.value.problems
    assert problem.file == "f.yaml"
    assert "\n" not in str(problem)
    return problem


def laughs(levels: int) -> str:
    """A document whose last key stands for 9**levels strings, written in a few lines."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_the_line_where_it_passes_the_limit(parser: str) -> None:
    reader = YamlReader()

    with pytest.raises(ValidationError) as caught:
        reader.parse(laughs(9), "bomb.yaml")

    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == ("bomb.yaml", 7)  # 9**7 > 1,000,000
    assert "counting each alias as every node it repeats" in problem.message
    assert reader.events < 200  # it stopped where the limit was passed, expanding nothing


def test_aliases_count_every_node_they_repeat_each_time_they_are_used(parser: str) -> None:
    text = "base: &b {x: 1, y: [2, 3]}\nfirst: *b\nsecond: *b\n"
    reader = YamlReader()

    (document,) = reader.parse(text, "f.yaml")

    # the root, then three keys and their values; the mapping at b is 7 nodes (itself,
    # its two keys, 1, the list and its two items), which both aliases repeat.
    assert reader.nodes == 1 + 3 + 7 * 3
    assert document.data["second"] == {"x": 1, "y": [2, 3]}
    assert refused(text, YamlLimits(max_nodes=reader.nodes - 1)).line == 3


def test_an_alias_is_located_where_it_is_written_and_not_walked_again(parser: str) -> None:
    (document,) = parse_yaml("base: &b\n  x: 1\nother: *b\n", "f.yaml")

    assert document.lines.locations() == {(): 1, ("base",): 1, ("base", "x"): 2, ("other",): 3}
    assert document.lines.line_of(("other", "x")) == 3


def test_merge_keys_merge_and_may_be_overridden(parser: str) -> None:
    text = "base: &b {x: 1, y: 2}\nmine:\n  <<: *b\n  y: 3\n"

    (document,) = parse_yaml(text, "f.yaml")

    assert document.data["mine"] == {"x": 1, "y": 3}


def test_a_chain_of_merges_longer_than_pythons_recursion_limit_is_read(parser: str) -> None:
    # PyYAML merges when it constructs, breadth first: "use" would be merged before the
    # chain it names, through 1,200 nested calls. Merged as each mapping ends, none nests.
    chain = ["  a0: &a0 {k0: 0}"]
    chain += [f"  a{i}: &a{i} {{<<: *a{i - 1}, k{i}: {i}}}" for i in range(1, 1_200)]
    text = "defs:\n" + "\n".join(chain) + "\nuse: {<<: *a1199}\n"
    limits = YamlLimits(max_nodes=10**7, max_total_nodes=10**7)

    (document,) = parse_yaml(text, "f.yaml", limits)

    assert document.data["use"] == {f"k{i}": i for i in range(1_200)}
    assert refused(text).message.startswith("more than 1000000 nodes")  # 1,200² merged keys


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a: &a [1, *a]\n", 1, "the alias *a is inside the value it names"),
        ("a: 1\nb: *nowhere\n", 2, "the alias *nowhere names no anchor before it"),
        ("a: &x 1\nb: &x 2\n", 2, "the anchor &x is defined twice"),
        ("a: 1\n? [b, c]\n: d\n", 2, "a mapping key must be a scalar"),
        ("l: &l [1]\n*l : 2\n", 2, "a mapping key must be a scalar"),
    ],
)
def test_recursive_undefined_or_doubled_anchors_and_collection_keys_are_refused(
    parser: str, text: str, line: int, message: str
) -> None:
    problem = refused(text)

    assert (problem.line, problem.message) == (line, message)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("x: " + "[" * 10_000 + "]" * 10_000 + "\n", id="flow lists"),
        pytest.param("x: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n", id="flow mappings"),
        pytest.param("x:\n" + "- " * 10_000 + "a\n", id="block lists"),
        pytest.param(
            "x:\n" + "".join(" " * (i + 1) + "-\n" for i in range(1_000)), id="indented lists"
        ),
        pytest.param(
            "".join(" " * i + f"k{i}:\n" for i in range(1_000)) + " " * 1_000 + "v\n",
            id="indented mappings",
        ),
    ],
)
def test_deep_nesting_is_refused_at_its_line_without_recursion(parser: str, text: str) -> None:
    problem = refused(text)

    assert problem.message == "nested deeper than 64 levels: refused"
    assert problem.line is not None and problem.line <= 66


def test_nesting_up_to_the_limit_is_read(parser: str) -> None:
    (document,) = parse_yaml("[" * 64 + "]" * 64, "f.yaml")

    data = document.data
    for _ in range(63):
        (data,) = data
    assert data == []
    assert refused("[" * 5 + "]" * 5, YamlLimits(max_depth=4)).line == 1


def test_aliases_that_nest_the_data_deeper_than_the_limit_are_refused(parser: str) -> None:
    # Each line is one level deeper than the one before, as data, but not as text.
    lines = ["a0: &a0 [x]", *(f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 100))]

    problem = refused("\n".join(lines) + "\n")

    assert (problem.line, problem.message) == (64, "nested deeper than 64 levels: refused")


@pytest.mark.parametrize("escape", ["\\ud800", "\\udc00\\ud800", "\\ud83d\\ude00", "\\U00110000"])
def test_escapes_of_what_is_not_a_character_are_invalid_yaml(parser: str, escape: str) -> None:
    problem = refused(f'ok: 1\nbad: "{escape}"\n')

    assert problem.line == 2
    assert problem.message.startswith("invalid YAML: ")


def test_bytes_that_are_not_utf8_are_named_with_their_offset_and_line(parser: str) -> None:
    problem = refused(b"name: a\ntitle: caf\xe9\n")

    assert problem.line == 2
    assert problem.message == (
        "not UTF-8: byte 0xe9 at offset 18 is not valid UTF-8; save the file as UTF-8"
    )
    assert "UTF-16" in refused("name: a\n".encode("utf-16")).message


def test_a_utf8_byte_order_mark_is_accepted(parser: str) -> None:
    (document,) = parse_yaml(b"\xef\xbb\xbfname: caf\xc3\xa9\n", "f.yaml")

    assert document.data == {"name": "café"}


@pytest.mark.parametrize(
    ("data", "line", "code"),
    [
        (b"name: a\x00b\n", 1, "U+0000"),
        (b"a: 1\nb: \x1b[31m\n", 2, "U+001B"),
        ("a: 1\nb: \ud800\n", 2, "U+D800"),
        (b"a: \x7f\n", 1, "U+007F"),
    ],
)
def test_control_characters_are_refused_at_their_line(
    parser: str, data: str | bytes, line: int, code: str
) -> None:
    problem = refused(data)

    assert problem.line == line
    assert problem.message.startswith(f"control character {code} at column")


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        ("name: aa\nname: bb\n", "name", (1, 2)),
        ("svc:\n  a: 1\n  b: 2\n  a: 3\n", "a", (2, 4)),
        ("- {x: 1, y: 2, x: 3}\n", "x", (1, 1)),
        ("1: one\n0x1: also one\n", "0x1", (1, 2)),
        ("a: 1\n'a': 2\n", "a", (1, 2)),
        ("base: &b {k: 1}\nm:\n  <<: *b\n  <<: *b\n", "<<", (3, 4)),
    ],
)
def test_a_key_given_twice_in_one_mapping_is_refused_naming_both_lines(
    parser: str, text: str, key: str, lines: tuple[int, int]
) -> None:
    problem = refused(text)

    assert problem.line == lines[1]
    assert problem.message == (
        f"the key {key!r} is given twice in one mapping, at lines {lines[0]} and {lines[1]}"
    )


def test_the_same_key_in_different_mappings_is_fine(parser: str) -> None:
    first, second = parse_yaml("a: {name: x}\nb: {name: y}\n---\na: 2\n", "f.yaml")

    assert (first.data, second.data) == ({"a": {"name": "x"}, "b": {"name": "y"}}, {"a": 2})


def test_keys_and_values_longer_than_their_limits_are_refused(parser: str) -> None:
    limits = YamlLimits(max_key_chars=8, max_scalar_chars=16)

    assert parse_yaml("k" * 8 + ": " + "v" * 16 + "\n", "f.yaml", limits)
    key = refused("a: 1\n? " + "k" * 9 + "\n: v\n", limits)
    value = refused("a: 1\nb: " + "v" * 17 + "\n", limits)
    assert (key.line, key.message) == (
        2,
        "a key of 9 characters, more than the limit of 8: refused",
    )
    assert (value.line, value.message) == (
        2,
        "a value of 17 characters, more than the limit of 16: refused",
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("when: 2020-13-45\n", "cannot read this timestamp value"),
        ("n: !!int " + "9" * 5_000 + "\n", "cannot read this int value"),
        ("t: !!timestamp soon\n", "cannot read this timestamp value"),
        ("x: !shiny thing\n", "could not determine a constructor for the tag '!shiny'"),
        ("m: {<<: 3}\n", "expected a mapping or list of mappings for merging"),
    ],
)
def test_values_a_tag_cannot_convert_are_invalid_yaml_at_their_line(
    parser: str, text: str, reason: str
) -> None:
    problem = refused("ok: 1\n" + text)

    assert problem.line == 2
    assert problem.message.startswith("invalid YAML: ")
    assert reason in problem.message


def test_an_empty_file_has_no_documents_and_an_empty_document_is_null(parser: str) -> None:
    assert parse_yaml("", "f.yaml") == []
    assert parse_yaml("# nothing\n", "f.yaml") == []
    assert [d.data for d in parse_yaml("---\n", "f.yaml")] == [None]
    assert [d.data for d in parse_yaml("a: 1\n---\n---\nb: 2\n", "f.yaml")] == [
        {"a": 1},
        None,
        {"b": 2},
    ]


# ---------------------------------------------------------------------------- files, folders


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as stream:
        stream.truncate(DEFAULT_LIMITS.max_file_bytes + 1)  # sparse: NULs, were it read

    with pytest.raises(ValidationError) as caught:
        read_yaml(path)

    (problem,) = caught.value.problems
    assert (problem.file, problem.line) == (str(path), None)
    assert problem.message == (
        f"the file is {DEFAULT_LIMITS.max_file_bytes + 1} bytes, more than the limit of "
        f"{DEFAULT_LIMITS.max_file_bytes}: refused"
    )


def test_what_is_not_a_regular_file_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # opening it to read would wait for a writer

    with pytest.raises(ValidationError, match="not a regular file"):
        read_yaml(fifo)


def reader_problems(root: Path, limits: YamlLimits) -> tuple[list[str], list[Problem]]:
    problems: list[Problem] = []
    read = [path.name for path, _ in YamlReader(limits).documents(root, problems)]
    return read, problems


def test_a_folder_over_the_total_size_or_file_count_is_refused_before_any_file_is_read(
    tmp_path: Path,
) -> None:
    for name in ("a.yaml", "b.yaml", "c.yml"):
        (tmp_path / name).write_text("x: 1234567\n")  # 11 bytes each

    assert reader_problems(tmp_path, YamlLimits(max_total_bytes=33))[0] == [
        "a.yaml",
        "b.yaml",
        "c.yml",
    ]
    read, (problem,) = reader_problems(tmp_path, YamlLimits(max_total_bytes=32))
    assert read == []
    assert problem.file == str(tmp_path)
    assert problem.message == (
        "its YAML files hold 33 bytes, more than the limit of 32 in all: refused"
    )
    read, (problem,) = reader_problems(tmp_path, YamlLimits(max_files=2))
    assert (read, problem.message) == ([], "more than 2 YAML files: refused")


def test_the_nodes_of_all_files_count_against_one_total_which_ends_the_load(
    tmp_path: Path,
) -> None:
    for name in ("a.yaml", "b.yaml", "c.yaml"):
        (tmp_path / name).write_text("x: [1, 2, 3]\n")  # 6 nodes each

    read, (problem,) = reader_problems(tmp_path, YamlLimits(max_total_nodes=14))

    assert read == ["a.yaml", "b.yaml"]
    assert (problem.file, problem.line) == (str(tmp_path / "c.yaml"), 1)
    assert problem.message.startswith("the files read hold more than 14 nodes in all")


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("x: [\n")
    (tmp_path / "b.yaml").write_text("x: 1\n")

    read, (problem,) = reader_problems(tmp_path, DEFAULT_LIMITS)

    assert read == ["b.yaml"]
    assert problem.file == str(tmp_path / "a.yaml")


def test_a_missing_path_and_a_folder_without_yaml_are_one_problem_each(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")

    assert [p.message for p in reader_problems(tmp_path / "nope", DEFAULT_LIMITS)[1]] == [
        "no such file or folder"
    ]
    assert [p.message for p in reader_problems(tmp_path, DEFAULT_LIMITS)[1]] == [
        "no *.yaml or *.yml files found"
    ]


def test_a_folder_tree_is_walked_without_recursion(tmp_path: Path) -> None:
    folder = tmp_path
    for _ in range(200):
        folder = folder / "d"
        folder.mkdir()
    (folder / "deep.yaml").write_text("x: 1\n")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 60)  # fewer frames than folders to walk
    try:
        found = yaml_files(tmp_path)
    finally:
        sys.setrecursionlimit(limit)

    assert found == [folder / "deep.yaml"]
