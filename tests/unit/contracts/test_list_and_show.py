"""``hybridmesh contracts list`` and ``show``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.unit.contracts.test_pact_files import sample_pact

from hybridmesh.cli.main import main
from hybridmesh.contracts.pact import write_pact


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["contracts", *args])
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_list_and_show_read_the_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_pact(sample_pact(), tmp_path)
    code, out, _ = cli(capsys, "list", "--dir", str(tmp_path), "--json")
    assert code == 0
    assert json.loads(out) == [
        {
            "file": "order-service-user-service.json",
            "consumer": "order-service",
            "provider": "user-service",
            "http": 1,
            "messages": 1,
            "interactions": ["GET /users/{id} 200", "event user.created"],
        }
    ]
    code, out, _ = cli(capsys, "show", "order-service", "user-service", "--dir", str(tmp_path))
    assert code == 0
    assert "provider states: user 42 exists" in out
    assert "request: GET /users/42?expand=orders" in out
    assert "matcher: response body $.id -> type" in out
    assert "event type: user.created" in out
    code, out, _ = cli(capsys, "show", str(path), "--json")
    assert code == 0
    assert json.loads(out) == json.loads(path.read_text())


def test_show_without_such_a_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "show", "a", "b", "--dir", str(tmp_path))
    assert code == 2
    assert "no contract file" in out + err
    code, out, err = cli(capsys, "show", "a", "b", "c")
    assert code == 2
