"""What ``registry validate|load`` and ``definitions validate|load`` make of YAML that is hostile
or empty: exit 2 and one line naming the file (and the line), never a traceback, and soon,
whatever the file nests, aliases or weighs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hybridmesh.cli.main import main
from hybridmesh.core.yaml_source import DEFAULT_LIMITS

SERVICES = Path(__file__).resolve().parents[3] / "examples" / "tanqory" / "services"

Run = Callable[..., tuple[int, str, str]]

COMMANDS = {
    "registry validate": ("registry", "validate"),
    "registry load": ("registry", "load"),
    "definitions validate": ("definitions", "validate", "--services", str(SERVICES)),
    "definitions load": ("definitions", "load"),
}


def laughs() -> bytes:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [
        f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]"
        for p, k in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    return ("\n".join(lines) + "\nname: x\n").encode()


#: Name: (content, line of the error, what the error says).
CASES: dict[str, tuple[bytes, int | None, str]] = {
    "alias bomb": (
        laughs(),
        7,
        "more than 1000000 nodes, counting each alias as every node it repeats: refused",
    ),
    "10,000 nested flow lists": (
        b"name: x\nx: " + b"[" * 10_000 + b"]" * 10_000 + b"\n",
        2,
        "nested deeper than 64 levels: refused",
    ),
    "10,000 nested block lists": (
        b"name: x\nx:\n" + b"- " * 10_000 + b"a\n",
        3,
        "nested deeper than 64 levels: refused",
    ),
    "900 indented lists": (
        b"name: x\nx:\n" + b"".join(b" " * (i + 1) + b"-\n" for i in range(900)),
        66,
        "nested deeper than 64 levels: refused",
    ),
    "latin-1": (
        b"name: caf\xe9\n",
        1,
        "not UTF-8: byte 0xe9 at offset 9 is not valid UTF-8; save the file as UTF-8",
    ),
    "a NUL byte": (b"name: a\x00b\n", 1, "control character U+0000 at column 8"),
    "a key given twice": (
        b"name: aa\nname: bb\n",
        2,
        "the key 'name' is given twice in one mapping, at lines 1 and 2",
    ),
}

NOTHING = {
    "registry validate": "no service definitions found",
    "registry load": "no service definitions found",
    "definitions validate": "no saga or workflow definitions found",
    "definitions load": "no saga or workflow definitions found",
}


@pytest.fixture
def run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Run]:
    monkeypatch.setenv("HYBRIDMESH_DATABASE_URL", f"sqlite:///{tmp_path / 'mesh.db'}")
    monkeypatch.delenv("HYBRIDMESH_EVENTS_URL", raising=False)

    def call(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as done:
            main(list(args))
        out, err = capsys.readouterr()
        return int(done.value.code or 0), out, err

    yield call


def refused(run: Run, command: str, path: Path) -> str:
    """The one line ``command`` printed for ``path``, after exiting 2."""
    code, out, err = run(*COMMANDS[command], str(path))
    assert "Traceback" not in out + err
    assert (code, out) == (2, "")
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err.rstrip("\n")


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_hostile_yaml_exits_2_with_one_line_at_its_file_and_line(
    run: Run, tmp_path: Path, command: str, case: str
) -> None:
    content, line, message = CASES[case]
    path = tmp_path / "input.yaml"
    path.write_bytes(content)

    assert refused(run, command, path).startswith(f"{path}:{line}: error: {message}")


@pytest.mark.parametrize(
    "content", [b"", b"# nothing yet\n", b"---\n"], ids=["empty", "comment", "---"]
)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_path_that_defines_nothing_exits_2(
    run: Run, tmp_path: Path, command: str, content: bytes
) -> None:
    path = tmp_path / "input.yaml"
    path.write_bytes(content)
    empty = tmp_path / "empty"
    empty.mkdir()

    assert refused(run, command, path) == f"{path}: error: {NOTHING[command]}"
    assert refused(run, command, empty) == f"{empty}: error: no *.yaml or *.yml files found"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_files_and_folders_over_the_size_limits_are_refused_unread(
    run: Run, tmp_path: Path, command: str
) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as stream:  # sparse, and NULs: reading it would be another error
        stream.truncate(DEFAULT_LIMITS.max_file_bytes + 1)
    folder = tmp_path / "many"
    folder.mkdir()
    share = DEFAULT_LIMITS.max_total_bytes // 4 - 1
    for index in range(5):
        with (folder / f"part-{index}.yaml").open("wb") as stream:
            stream.truncate(share)

    assert refused(run, command, big) == (
        f"{big}: error: the file is {DEFAULT_LIMITS.max_file_bytes + 1} bytes, more than the "
        f"limit of {DEFAULT_LIMITS.max_file_bytes}: refused"
    )
    assert refused(run, command, folder) == (
        f"{folder}: error: its YAML files hold {5 * share} bytes, more than the limit of "
        f"{DEFAULT_LIMITS.max_total_bytes} in all: refused"
    )


def test_a_utf8_byte_order_mark_is_accepted(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(
        b"\xef\xbb\xbfname: svc-a\narchitecture: microservice\nbase_url: http://a.local\n"
        b"version: v1\n"
    )

    code, out, err = run("registry", "validate", str(path))

    assert (code, err) == (0, "")
    assert "valid: 1 service(s)" in out


@pytest.mark.parametrize("case", ["alias bomb", "10,000 nested block lists", "a key given twice"])
def test_an_execution_input_is_read_within_the_same_rules(
    run: Run, tmp_path: Path, case: str
) -> None:
    content, line, message = CASES[case]
    path = tmp_path / "input.yaml"
    path.write_bytes(content)

    code, out, err = run("saga", "start", "any-saga", "--input", str(path))

    assert (code, out, err) == (2, "", f"{path}:{line}: error: {message}\n")


def test_an_execution_input_of_deeply_nested_json_is_refused(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text('{"a": ' + "[" * 10_000 + "]" * 10_000 + "}")

    code, out, err = run("saga", "start", "any-saga", "--input", str(path))

    assert (code, out) == (2, "")
    assert err.startswith(f"{path}: error: not valid JSON: ") and err.count("\n") == 1
