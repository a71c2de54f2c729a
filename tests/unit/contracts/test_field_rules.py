"""Which recorded values become matchers: the built-in rules and the user's contracts.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridmesh.contracts.pact import Matcher
from hybridmesh.contracts.recorder import recorder_from_settings
from hybridmesh.contracts.rules import UUID_REGEX, FieldRules, datetime_format, load_field_rules
from hybridmesh.core.errors import InvalidSettingError, ValidationError
from hybridmesh.core.settings import Settings

BODY = {
    "id": 17,
    "uuid": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "name": "Ada",
    "createdAt": "2026-03-01T09:30:12.345Z",
    "born": "1815-12-10",
    "active": True,
    "orders": [
        {"order_id": "A-1", "placed_at": "2026-03-01T09:30:12+01:00", "total": 12.5},
        {"order_id": "A-2", "placed_at": "2026-03-02T10:00:00+01:00", "total": 3.0},
    ],
    "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
}


def matchers(rules: dict[str, object]) -> dict[str, tuple[Matcher, ...]]:
    return {path: group.matchers for path, group in rules.items()}  # type: ignore[attr-defined]


def test_the_built_in_rules_generalise_ids_uuids_and_times() -> None:
    found = matchers(FieldRules.none().generalise(BODY, ["order-service", "user-service"]))
    assert found == {
        "$.born": (Matcher("date", {"format": "yyyy-MM-dd"}),),
        "$.createdAt": (Matcher("datetime", {"format": "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"}),),
        "$.id": (Matcher("type"),),
        "$.orders[*].order_id": (Matcher("type"),),
        "$.orders[*].placed_at": (Matcher("datetime", {"format": "yyyy-MM-dd'T'HH:mm:ssXXX"}),),
        "$.traceId": (Matcher("type"),),
        "$.uuid": (Matcher("regex", {"regex": UUID_REGEX}),),
    }


@pytest.mark.parametrize(
    ("sample", "fmt"),
    [
        ("2026-03-01T09:30:12Z", "yyyy-MM-dd'T'HH:mm:ss'Z'"),
        ("2026-03-01 09:30:12.123456-05:00", "yyyy-MM-dd HH:mm:ss.SSSSSSXXX"),
        ("2026-03-01", None),
        ("yesterday", None),
    ],
)
def test_a_datetime_format_follows_the_sample(sample: str, fmt: str | None) -> None:
    assert datetime_format(sample) == fmt


def test_user_rules_apply_to_the_services_they_name(tmp_path: Path) -> None:
    file = tmp_path / "contracts.yaml"
    file.write_text(
        "services:\n"
        "  user-service:\n"
        "    $.name: type\n"
        "    $.orders: {match: type, min: 1}\n"
        "  billing:\n"
        "    $.active: boolean\n"
    )
    rules = load_field_rules(file)
    found = matchers(rules.generalise(BODY, ["order-service", "user-service"]))
    assert found["$.name"] == (Matcher("type"),)
    # A rule on the list covers what is inside it: no rule of its own for its items.
    assert found["$.orders"] == (Matcher("type", {"min": 1}),)
    assert not any(path.startswith("$.orders[") for path in found)
    assert "$.active" not in found  # billing is not part of this interaction


def test_a_missing_rules_file_holds_no_rules(tmp_path: Path) -> None:
    assert load_field_rules(tmp_path / "contracts.yaml").by_service == {}


def test_a_malformed_rules_file_is_refused_at_file_line_and_field(tmp_path: Path) -> None:
    file = tmp_path / "contracts.yaml"
    file.write_text(
        "services:\n"
        "  user-service:\n"
        "    $.name: typo\n"
        "    name: type\n"
        "    $.code: {match: regex, regex: '(unclosed'}\n"
    )
    with pytest.raises(ValidationError) as refused:
        load_field_rules(file)
    found = [(p.file, p.line, p.field) for p in refused.value.problems]
    assert found == [
        (str(file), 3, "services.user-service.$.name.match"),
        (str(file), 4, "services.user-service.name"),
        (str(file), 5, "services.user-service.$.code.regex"),
    ]
    assert "unknown matcher 'typo'" in refused.value.problems[0].message


def test_a_rules_setting_naming_no_file_is_refused(tmp_path: Path) -> None:
    settings = Settings(
        contracts_record=str(tmp_path / "recorded"),
        contracts_rules=str(tmp_path / "missing.yaml"),
    )
    with pytest.raises(InvalidSettingError) as refused:
        recorder_from_settings(settings)
    assert refused.value.problems[0].field == "HYBRIDMESH_CONTRACTS_RULES"


def test_the_rules_setting_is_used_by_the_processs_recorder(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("services:\n  user-service:\n    $.name: type\n")
    settings = Settings(contracts_record=str(tmp_path / "recorded"), contracts_rules=str(rules))
    recorder = recorder_from_settings(settings)
    assert recorder is not None
    assert recorder.rules.by_service == {"user-service": {"$.name": Matcher("type")}}
    assert recorder_from_settings(settings) is recorder  # one per process and folder
    assert recorder_from_settings(Settings(contracts_record=None)) is None
