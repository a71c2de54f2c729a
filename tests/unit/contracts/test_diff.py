"""``hybridmesh contracts diff``: a new recording against the committed contracts."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from hybridmesh.cli.main import main
from hybridmesh.contracts.pact import (
    Body,
    HttpInteraction,
    HttpRequest,
    HttpResponse,
    Matcher,
    Pact,
    ProviderState,
    RuleGroup,
    write_pact,
)


def get_user(user_id: str, name: str = "Ada") -> HttpInteraction:
    return HttpInteraction(
        "GET /users/{id} returns 200",
        HttpRequest("GET", f"/users/{user_id}", headers={"Accept": ["application/json"]}),
        HttpResponse(
            200,
            headers={"Content-Type": ["application/json"]},
            body=Body({"id": user_id, "name": name, "tags": ["a"]}, "application/json"),
            matching_rules={"body": {"$.id": RuleGroup((Matcher("type"),))}},
        ),
    )


def delete_user() -> HttpInteraction:
    return HttpInteraction(
        "DELETE /users/{id} returns 204",
        HttpRequest("DELETE", "/users/5"),
        HttpResponse(204),
    )


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(["contracts", *args])
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out + err


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    committed, recorded = tmp_path / "contracts", tmp_path / "recorded"
    committed_pact = Pact("order-service", "user-service", [get_user("7"), delete_user()])
    # A person named the provider state and the interaction in the committed file.
    committed_pact.interactions[0].provider_states = [ProviderState("user 7 exists")]
    committed_pact.interactions[0].description = "a user"
    write_pact(committed_pact, committed)
    return committed, recorded


def test_a_recording_with_only_new_examples_is_the_same(
    folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    committed, recorded = folders
    # Another id (a matcher covers it), no provider state, the recorder's description.
    write_pact(Pact("order-service", "user-service", [delete_user(), get_user("93")]), recorded)
    code, output = cli(capsys, "diff", "--dir", str(committed), "--new", str(recorded))
    assert code == 0, output
    assert "no differences" in output


def test_changes_are_listed_with_their_fields_and_exit_1(
    folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    committed, recorded = folders
    changed = get_user("93", name="Ann")
    assert changed.response.body is not None
    changed.response.body.content["email"] = "ann@example.com"
    changed.response.headers = {"Content-Type": ["application/hal+json"]}
    added = HttpInteraction(
        "POST /users returns 201", HttpRequest("POST", "/users"), HttpResponse(201)
    )
    write_pact(Pact("order-service", "user-service", [changed, added]), recorded)
    code, output = cli(capsys, "diff", "--dir", str(committed), "--new", str(recorded))
    assert code == 1
    assert "order-service-user-service.json (order-service -> user-service)" in output
    assert "- DELETE /users/{id} 204: removed" in output
    assert "+ POST /users 201: added" in output
    assert (
        "~ GET /users/{id} 200: changed: response.headers.content-type, "
        "response.body.email, response.body.name" in output
    )
    assert "1 added, 1 removed, 1 changed" in output

    code, output = cli(capsys, "diff", "--dir", str(committed), "--new", str(recorded), "--json")
    assert code == 1
    report = json.loads(output)
    assert report["same"] is False
    by_change = {c["change"]: c for c in report["changes"]}
    assert by_change["changed"]["fields"] == [
        "response.headers.content-type",
        "response.body.email",
        "response.body.name",
    ]
    assert by_change["added"]["interaction"] == "POST /users 201"


def test_a_new_matcher_is_a_change(
    folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    committed, recorded = folders
    loosened = copy.deepcopy(get_user("7"))
    loosened.response.matching_rules["body"]["$.tags"] = RuleGroup((Matcher("type"),))
    write_pact(Pact("order-service", "user-service", [loosened, delete_user()]), recorded)
    code, output = cli(capsys, "diff", "--dir", str(committed), "--new", str(recorded))
    assert code == 1
    assert "response.matchingRules.body.$.tags" in output


def test_a_missing_recording_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = cli(capsys, "diff", "--new", str(tmp_path / "nowhere"))
    assert code == 2
    assert "no folder" in output
