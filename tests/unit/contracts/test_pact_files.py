"""Pact V4 files: written and read back unchanged, read when Pact's own tools wrote them,
accepted by Pact's own loader, and refused at file:line:field when malformed."""

from __future__ import annotations

import json
from pathlib import Path

import pact_ffi
import pytest
from pact import Pact as PactDsl
from pact import match

from hybridmesh.cli.main import main
from hybridmesh.contracts.pact import (
    Body,
    HttpInteraction,
    HttpRequest,
    HttpResponse,
    Matcher,
    MessageInteraction,
    Pact,
    ProviderState,
    RuleGroup,
    dumps_pact,
    parse_pact,
    read_pact,
    read_pacts,
    write_pact,
)
from hybridmesh.core.errors import ValidationError


def sample_pact() -> Pact:
    get_user = HttpInteraction(
        "GET /users/{id} returns 200",
        HttpRequest(
            "GET",
            "/users/42",
            query={"expand": ["orders"]},
            headers={"Accept": ["application/json"]},
            matching_rules={
                "path": {"": RuleGroup((Matcher("regex", {"regex": "^/users/[^/]+$"}),))}
            },
        ),
        HttpResponse(
            200,
            headers={"Content-Type": ["application/json"]},
            body=Body({"id": 42, "name": "Ada"}, "application/json"),
            matching_rules={"body": {"$.id": RuleGroup((Matcher("type"),))}},
        ),
        [ProviderState("user 42 exists", {"id": 42})],
    )
    created = MessageInteraction(
        "a user.created event from user-service",
        Body({"user": 42}, "application/json"),
        {"type": "user.created", "source": "/user-service", "id": "e1", "specversion": "1.0"},
        {"metadata": {"id": RuleGroup((Matcher("type"),))}},
    )
    return Pact("order-service", "user-service", [get_user, created])


def test_a_written_pact_reads_back_the_same(tmp_path: Path) -> None:
    pact = sample_pact()
    path = write_pact(pact, tmp_path / "contracts")
    assert path.name == "order-service-user-service.json"
    data = json.loads(path.read_text())
    assert data["metadata"]["pactSpecification"] == {"version": "4.0"}
    assert [i["type"] for i in data["interactions"]] == [
        "Synchronous/HTTP",
        "Asynchronous/Messages",
    ]
    again = read_pact(path)
    assert again.to_json() == pact.to_json()
    assert dumps_pact(again) == path.read_text()
    assert [i.identity for i in again.interactions] == ["GET /users/{id} 200", "event user.created"]


def test_keys_the_model_does_not_use_are_kept(tmp_path: Path) -> None:
    data = json.loads(dumps_pact(sample_pact()))
    data["interactions"][0]["pending"] = True
    data["interactions"][0]["comments"] = {"text": ["named by the payments team"]}
    data["interactions"][0]["response"]["generators"] = {"body": {"$.id": {"type": "Uuid"}}}
    data["metadata"]["pactRust"] = {"ffi": "0.5.12"}
    file = tmp_path / "a-b.json"
    file.write_text(json.dumps(data))
    assert read_pact(file).to_json() == data


def test_a_pact_written_by_pact_python_is_read(tmp_path: Path) -> None:
    dsl = PactDsl("checkout", "inventory").with_specification("V4")
    (
        dsl.upon_receiving("a stock query")
        .given("sku A-1 is stocked")
        .with_request("GET", "/stock/A-1")
        .with_query_parameter("warehouse", "north")
        .will_respond_with(200)
        .with_body(
            {
                "sku": match.str("A-1"),
                "count": match.int(3),
                "id": match.uuid("c6a5e1e4-3d1f-4b5e-9f1a-2b3c4d5e6f70"),
            },
            content_type="application/json",
        )
    )
    (
        dsl.upon_receiving("a stock.changed event", "Async")
        .with_body({"sku": match.str("A-1")}, content_type="application/json")
        .with_metadata({"type": "stock.changed"})
    )
    dsl.write_file(tmp_path, overwrite=True)
    (pact,) = read_pacts(tmp_path)
    assert (pact.consumer, pact.provider) == ("checkout", "inventory")
    http, message = pact.interactions
    assert isinstance(http, HttpInteraction) and isinstance(message, MessageInteraction)
    assert http.provider_states == [ProviderState("sku A-1 is stocked")]
    assert http.request.query == {"warehouse": ["north"]}
    assert http.response.body is not None and http.response.body.content["count"] == 3
    rules = http.response.matching_rules["body"]
    assert rules["$.count"].matchers == (Matcher("integer"),)
    assert rules["$.id"].matchers[0].match == "regex"
    assert message.event_type == "stock.changed"
    assert message.matching_rules["body"]["$.sku"].matchers == (Matcher("type"),)


def test_pacts_ffi_loads_a_written_file(tmp_path: Path) -> None:
    path = write_pact(sample_pact(), tmp_path)
    model = pact_ffi.lib.pactffi_parse_pact_json(path.read_bytes())
    assert model != pact_ffi.ffi.NULL
    try:
        found = pact_ffi.PactInteractionIterator(
            pact_ffi.lib.pactffi_pact_model_interaction_iterator(model)
        )
        assert len(list(found)) == 2
    finally:
        pact_ffi.lib.pactffi_pact_model_delete(model)


MALFORMED = """{
  "consumer": {"name": "order-service"},
  "provider": {"name": "user-service"},
  "interactions": [
    {
      "type": "Synchronous/HTTP",
      "description": "GET /users/{id} returns 200",
      "request": {"method": "GET", "path": "/users/1"},
      "response": {
        "status": 200,
        "matchingRules": {
          "body": {
            "$.id": {"combine": "AND", "matchers": [{"match": "sameish"}]}
          }
        }
      }
    },
    {
      "type": "Synchronous/HTTP",
      "description": "POST /users returns 201",
      "request": {"method": "POST", "path": "users"},
      "response": {"status": "created"}
    }
  ],
  "metadata": {"pactSpecification": {"version": "4.0"}}
}
"""


def test_a_malformed_file_is_refused_at_file_line_and_field(tmp_path: Path) -> None:
    file = tmp_path / "order-service-user-service.json"
    file.write_text(MALFORMED)
    with pytest.raises(ValidationError) as refused:
        read_pact(file)
    found = [(p.line, p.field) for p in refused.value.problems]
    assert found == [
        (13, "interactions[0].response.matchingRules.body.$.id.matchers[0].match"),
        (21, "interactions[1].request.path"),
        (22, "interactions[1].response.status"),
    ]
    assert str(refused.value.problems[2]).startswith(f"{file}:22: error [")
    assert "'created'" in refused.value.problems[2].message


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        (
            '{"consumer": {"name": "a"},\n "provider": {}, "interactions": [],\n'
            ' "metadata": {"pactSpecification": {"version": "4.0"}}}',
            2,
            "provider.name",
            "non-empty",
        ),
        (
            '{"consumer": {"name": "a"}, "provider": {"name": "b"}, "interactions": [],\n'
            ' "metadata": {"pactSpecification": {"version": "3.0.0"}}}',
            2,
            "metadata.pactSpecification.version",
            "V4",
        ),
        (
            '{"consumer": {"name": "a"}, "provider": {"name": "b"},\n "interactions": [\n'
            '  {"type": "Synchronous/Messages", "description": "x"}],\n'
            ' "metadata": {"pactSpecification": {"version": "4.0"}}}',
            3,
            "interactions[0].type",
            "Asynchronous/Messages",
        ),
        ('{"consumer": {"name": "a"},,}', 1, None, "not JSON"),
    ],
)
def test_each_kind_of_mistake_is_named(text: str, line: int, field: str | None, words: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_pact(text, "x.json")
    (problem,) = refused.value.problems
    assert (problem.file, problem.line, problem.field) == ("x.json", line, field)
    assert words in problem.message


def test_the_cli_exits_2_naming_the_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "order-service-user-service.json").write_text(MALFORMED)
    with pytest.raises(SystemExit) as exited:
        main(["contracts", "list", "--dir", str(tmp_path)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "order-service-user-service.json:22: error [interactions[1].response.status]" in err
