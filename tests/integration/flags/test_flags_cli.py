"""``hybridmesh flags`` from the command line, on a real store: exit codes and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hybridmesh.cli.main import main

FLAGS = """\
flags:
  - key: new-checkout
    description: The rewritten checkout
    variants: {"on": true, "off": false}
    default_variant: "off"
    targeting:
      - when: [{attribute: plan, equals: beta}]
        variant: "on"
  - key: banner
    variants: {plain: Hello, loud: HELLO}
    default_variant: plain
"""


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'mesh.db'}"
    monkeypatch.setenv("HYBRIDMESH_DATABASE_URL", url)
    return url


def test_apply_list_show_evaluate_delete(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(FLAGS)
    assert run_json(capsys, "flags", "validate", str(path)) == {
        "valid": True,
        "flags": ["new-checkout", "banner"],
    }
    assert run_json(capsys, "flags", "apply", str(path))["created"] == ["new-checkout", "banner"]
    assert run_json(capsys, "flags", "apply", str(path))["unchanged"] == ["new-checkout", "banner"]

    listed = run_json(capsys, "flags", "list")
    assert [(f["key"], f["type"], f["rules"]) for f in listed] == [
        ("banner", "string", 0),
        ("new-checkout", "boolean", 1),
    ]
    shown = run_json(capsys, "flags", "show", "new-checkout")
    assert shown["description"] == "The rewritten checkout"
    assert shown["definition"]["targeting"] == [
        {"when": [{"attribute": "plan", "equals": "beta"}], "variant": "on"}
    ]
    code, out, _ = run_cli(capsys, "flags", "show", "new-checkout")
    assert code == 0 and "default_variant: 'off'" in out

    beta = run_json(capsys, "flags", "evaluate", "new-checkout", "--context", "plan=beta")
    assert (beta["value"], beta["variant"], beta["reason"]) == (True, "on", "TARGETING_MATCH")
    other = run_json(capsys, "flags", "evaluate", "new-checkout", "-c", "plan=free", "-c", "age=30")
    assert (other["value"], other["reason"]) == (False, "DEFAULT")
    code, out, _ = run_cli(capsys, "flags", "evaluate", "banner")
    assert code == 0 and out.strip() == 'banner = "Hello" (variant plain, STATIC)'

    assert run_json(capsys, "flags", "delete", "banner") == {"flag": "banner", "deleted": True}
    code, _, err = run_cli(capsys, "flags", "delete", "banner")
    assert code == 1 and "no flag 'banner'" in err
    code, _, err = run_cli(capsys, "flags", "show", "banner")
    assert code == 1 and "no flag 'banner'" in err
    code, _, err = run_cli(capsys, "flags", "evaluate", "banner")
    assert code == 1 and "no flag 'banner'" in err


def test_set_creates_a_flag_and_grows_its_rollout(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    created = run_json(
        capsys,
        "flags",
        "set",
        "new-checkout",
        "--variant",
        "on=true",
        "--variant",
        "off=false",
        "--default",
        "off",
        "--percent",
        "on=25",
    )
    assert created["rollout"] == {"on": 25.0, "off": 75.0} and created["version"] == 1
    assert created["definition"]["variants"] == {"on": True, "off": False}

    def on_for(users: range) -> set[int]:
        return {
            i
            for i in users
            if run_json(capsys, "flags", "evaluate", "new-checkout", "--targeting-key", f"u{i}")[
                "value"
            ]
        }

    users = range(40)
    before = on_for(users)
    grown = run_json(capsys, "flags", "set", "new-checkout", "--percent", "on=60.5")
    # The rollout is replaced, not added to; hundredths of a percent as weights.
    assert grown["definition"]["targeting"] == [
        {"fractional": [{"variant": "on", "weight": 6050}, {"variant": "off", "weight": 3950}]}
    ]
    after = on_for(users)
    assert before <= after and len(after) > len(before)

    off = run_json(capsys, "flags", "set", "new-checkout", "--disable")
    assert off["enabled"] is False and off["version"] == 3
    disabled = run_json(capsys, "flags", "evaluate", "new-checkout", "--targeting-key", "u1")
    assert (disabled["value"], disabled["reason"]) == (False, "DISABLED")
    assert run_json(capsys, "flags", "set", "new-checkout", "--enable")["enabled"] is True

    code, out, _ = run_cli(capsys, "flags", "list")
    assert code == 0 and "new-checkout" in out

    cleared = run_json(capsys, "flags", "set", "new-checkout", "--clear-targeting")
    assert cleared["rules"] == 0 and cleared["rollout"] is None


def test_bad_input_exits_2(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(FLAGS.replace('variant: "on"', "variant: ghost"))
    code, _, err = run_cli(capsys, "flags", "apply", str(path))
    assert code == 2
    assert f"{path}:8: error [targeting.0.variant]: no variant 'ghost'" in err
    code, out, _ = run_cli(capsys, "flags", "validate", str(path), "--json")
    assert code == 2
    [problem] = json.loads(out)["errors"]
    assert (problem["line"], problem["field"]) == (8, "targeting.0.variant")
    assert not Path(db.removeprefix("sqlite:///")).exists()  # nothing was written

    code, _, err = run_cli(capsys, "flags", "set", "fresh", "--percent", "on=5")
    assert code == 2 and "there is no flag 'fresh'" in err
    base = ("flags", "set", "f", "--variant", "on=true", "--variant", "off=false")
    for args, message in [
        (("--default", "off", "--percent", "on=101"), "a percent is 0 to 100"),
        (("--default", "off", "--percent", "on=1.234"), "in steps of 0.01"),
        (("--default", "off", "--percent", "on=60", "--percent", "off=30"), "not 100"),
        (("--default", "nope"), "no variant 'nope'"),
        (("--default", "off", "--variant", "on=text"), "one kind of value"),
        (("--default", "off", "--variant", "broken"), "write NAME=VALUE"),
    ]:
        code, _, err = run_cli(capsys, *base, *args)
        assert code == 2, (args, err)
        assert message in " ".join(err.split()), (args, err)
    code, _, _ = run_cli(capsys, "flags", "list", "--json")
    assert code == 0
    code, _, err = run_cli(capsys, "flags", "evaluate", "f", "-c", "broken")
    assert code == 2


def test_evaluate_with_a_default_of_another_type_exits_2(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(FLAGS)
    run_json(capsys, "flags", "apply", str(path))
    code, out, _ = run_cli(capsys, "flags", "evaluate", "banner", "--default", "true", "--json")
    assert code == 2 and json.loads(out)["error_code"] == "TYPE_MISMATCH"
    missing = run_json(capsys, "flags", "set", "banner", "--percent", "loud=50")
    assert missing["rollout"] == {"loud": 50.0, "plain": 50.0}
    code, out, _ = run_cli(capsys, "flags", "evaluate", "banner", "--json")
    assert code == 0 and json.loads(out)["error_code"] == "TARGETING_KEY_MISSING"
