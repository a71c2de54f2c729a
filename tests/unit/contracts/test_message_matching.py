"""Message contracts matched against published CloudEvents, as the Pact file model reads
them: the rule groups of ``matchingRules.body``, their ``combine`` included."""

from __future__ import annotations

import json

import pytest

from hybridmesh.contracts.pact import parse_pact
from hybridmesh.contracts.verify import verify_messages


def _contract(combine: str) -> str:
    """notification-services expects user.registered with an id that is a number or a
    ``U-`` id, as its ``combine`` says."""
    return json.dumps(
        {
            "consumer": {"name": "notification-services"},
            "provider": {"name": "user-service"},
            "interactions": [
                {
                    "type": "Asynchronous/Messages",
                    "description": "a user registered",
                    "metadata": {"type": "user.registered"},
                    "contents": {"content": {"id": "U-1"}, "contentType": "application/json"},
                    "matchingRules": {
                        "body": {
                            "$.id": {
                                "combine": combine,
                                "matchers": [
                                    {"match": "integer"},
                                    {"match": "regex", "regex": "^U-\\d+$"},
                                ],
                            }
                        }
                    },
                }
            ],
            "metadata": {"pactSpecification": {"version": "4.0"}},
        }
    )


def _published(user_id: object) -> list[dict[str, object]]:
    return [{"type": "user.registered", "source": "/user-service", "data": {"id": user_id}}]


@pytest.mark.parametrize(("user_id", "ok"), [("U-7", True), (7, True), ("seven", False)])
def test_an_or_group_holds_when_one_of_its_matchers_does(user_id: object, ok: bool) -> None:
    contract = parse_pact(_contract("OR"))
    [result] = verify_messages("user-service", [contract], _published(user_id))
    assert result.ok is ok


def test_an_and_group_needs_every_matcher() -> None:
    contract = parse_pact(_contract("AND"))
    [result] = verify_messages("user-service", [contract], _published("U-7"))
    assert not result.ok
    assert [str(m) for m in result.mismatches] == [
        '$.id: not an integer (expected "U-1", got "U-7")'
    ]
