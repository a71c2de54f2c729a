"""Loading service definitions from YAML: shapes of files, errors with file/line/field,
and the consistency warnings."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.names import NAME_RULE
from hybridmesh.registry import (
    ALL_SERVICES,
    Architecture,
    DependencyType,
    PatternType,
    ServiceRegistry,
    inspect_definitions,
    load_definitions,
    sync_cycles,
)

REFERENCE = Path(__file__).resolve().parents[3] / "examples" / "tanqory" / "services"

REFERENCE_NAMES = [
    "analytics-reporting",
    "content-creation",
    "content-delivery",
    "content-management",
    "content-workflow",
    "data-transformations",
    "inventory-management",
    "legacy-erp",
    "notification-services",
    "order-processing",
    "payment-service",
    "product-catalog",
    "shipping-service",
    "user-service",
]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the ``occurrence``-th line of ``path`` that contains ``needle``."""
    seen = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in {path}")


def service(
    name: str,
    *,
    architecture: str = "microservice",
    dependencies: str = "[]",
    consumers: str = "[]",
) -> str:
    """A valid definition as a YAML mapping (no leading indentation)."""
    return (
        f"name: {name}\n"
        f"architecture: {architecture}\n"
        f"base_url: http://{name}.local:8080\n"
        f"version: v1\n"
        f"dependencies: {dependencies}\n"
        f"consumers: {consumers}\n"
    )


def only_error(result_errors: list[Problem]) -> Problem:
    assert len(result_errors) == 1, [str(e) for e in result_errors]
    return result_errors[0]


# --------------------------------------------------------------------------- reference folder


def test_reference_folder_loads_every_service_without_errors_or_warnings() -> None:
    result = load_definitions(REFERENCE)

    assert result.ok
    assert result.errors == []
    assert result.warnings == []
    assert sorted(d.name for d in result.definitions()) == REFERENCE_NAMES
    assert len(list(REFERENCE.glob("*.yaml"))) == 14


def test_reference_definitions_carry_what_the_yaml_says() -> None:
    registry = ServiceRegistry.from_path(REFERENCE)

    erp = registry.get("legacy-erp")
    assert erp.architecture is Architecture.TRADITIONAL_MONOLITH
    assert erp.base_url == "https://internal.tanqory.com/erp"
    assert erp.lifecycle == "deprecated"
    assert erp.pattern_types() == [PatternType.REST, PatternType.BATCH]
    assert erp.resilience is not None
    assert erp.resilience.max_concurrent == 4
    assert erp.resilience.rate_limit == 20

    notifications = registry.get("notification-services")
    assert [c.service for c in notifications.consumers] == [ALL_SERVICES]

    order = registry.get("order-processing")
    assert ("legacy-erp", DependencyType.SYNC) in [(d.service, d.type) for d in order.dependencies]


def test_reference_services_know_the_file_and_line_they_came_from() -> None:
    result = load_definitions(REFERENCE)
    by_name = {s.definition.name: s for s in result.services}

    erp = by_name["legacy-erp"]
    path = Path(erp.file)
    assert path.name == "legacy-erp.yaml"
    assert erp.line == line_of(path, "name: legacy-erp")
    assert erp.line_of("architecture") == line_of(path, "architecture:")
    assert erp.line_of("resilience", "timeout") == line_of(path, "timeout: 30")


# --------------------------------------------------------------------------- file shapes


def test_a_single_file_can_be_loaded_directly(tmp_path: Path) -> None:
    path = write(tmp_path, "one.yaml", service("svc-a"))

    result = load_definitions(path)

    assert [d.name for d in result.definitions()] == ["svc-a"]
    assert result.services[0].file == str(path)
    assert result.services[0].line == 1


def test_a_file_may_hold_a_list_of_services(tmp_path: Path) -> None:
    text = "- " + service("svc-a").replace("\n", "\n  ").rstrip() + "\n"
    text += "- " + service("svc-b").replace("\n", "\n  ").rstrip() + "\n"
    path = write(tmp_path, "list.yaml", text)

    result = load_definitions(path)

    assert [d.name for d in result.definitions()] == ["svc-a", "svc-b"]
    assert [s.line for s in result.services] == [
        line_of(path, "name: svc-a"),
        line_of(path, "name: svc-b"),
    ]


def test_a_file_may_hold_a_services_list(tmp_path: Path) -> None:
    items = "".join(
        "  - " + service(n).replace("\n", "\n    ").rstrip() + "\n" for n in ("svc-a", "svc-b")
    )
    path = write(tmp_path, "services.yaml", "services:\n" + items)

    result = load_definitions(path)

    assert [d.name for d in result.definitions()] == ["svc-a", "svc-b"]
    assert result.services[1].line == line_of(path, "name: svc-b")
    assert result.services[1].line_of("version") == line_of(path, "version: v1", occurrence=2)


def test_a_file_may_hold_several_yaml_documents(tmp_path: Path) -> None:
    text = "---\n" + service("svc-a") + "---\n" + service("svc-b") + "---\n" + service("svc-c")
    path = write(tmp_path, "multi.yaml", text)

    result = load_definitions(path)

    assert [d.name for d in result.definitions()] == ["svc-a", "svc-b", "svc-c"]
    assert [s.line for s in result.services] == [
        line_of(path, "name: svc-a"),
        line_of(path, "name: svc-b"),
        line_of(path, "name: svc-c"),
    ]


def test_a_folder_is_read_recursively_yaml_and_yml_alike(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", service("svc-a"))
    (tmp_path / "nested").mkdir()
    write(tmp_path / "nested", "b.yml", service("svc-b"))
    write(tmp_path, "notes.txt", "not a definition: [")

    result = load_definitions(tmp_path)

    assert sorted(d.name for d in result.definitions()) == ["svc-a", "svc-b"]


def test_a_services_key_that_is_not_a_list_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "services:\n  svc-a: {}\n")

    error = only_error(inspect_definitions(path).errors)

    assert error.file == str(path)
    assert error.line == 1
    assert error.field == "services"


# --------------------------------------------------------------------------- errors


def test_unknown_architecture_names_the_file_the_line_of_the_key_and_the_field(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        """
        # a comment first, so the key is not on line 1 or 2
        name: svc-a
        architecture: mainframe
        base_url: http://svc-a.local
        version: v1
        """,
    )

    error = only_error(inspect_definitions(path).errors)

    assert error.file == str(path)
    assert error.line == line_of(path, "architecture:") == 3
    assert error.field == "architecture"
    assert "mainframe" in error.message
    assert str(error).startswith(f"{path}:3: error [architecture]: ")


def test_unknown_pattern_type_names_the_pattern_item_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        """
        name: svc-a
        architecture: microservice
        base_url: http://svc-a.local
        version: v1
        integration_patterns:
          - type: carrier-pigeon
            description: slow
          - type: rest
        """,
    )

    error = only_error(inspect_definitions(path).errors)

    assert error.field == "integration_patterns.0.type"
    assert error.line == line_of(path, "type: carrier-pigeon")
    assert "carrier-pigeon" in error.message
    assert str(error) == f"{path}:{error.line}: error [integration_patterns.0.type]: " + (
        error.message
    )


def test_unknown_pattern_type_in_a_later_item_names_its_index(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        service("svc-a") + "integration_patterns:\n  - type: rest\n  - type: smoke-signals\n",
    )

    error = only_error(inspect_definitions(path).errors)

    assert error.field == "integration_patterns.1.type"
    assert error.line == line_of(path, "smoke-signals")


def test_missing_required_field_is_reported_with_the_service_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        """
        # header
        name: svc-a
        architecture: microservice
        base_url: http://svc-a.local
        """,
    )

    error = only_error(inspect_definitions(path).errors)

    assert error.field == "version"
    assert error.file == str(path)
    assert error.line == line_of(path, "name: svc-a")
    assert "missing" in error.message


def test_each_missing_field_is_its_own_error(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "name: svc-a\n")

    errors = inspect_definitions(path).errors

    assert sorted(e.field or "" for e in errors) == ["architecture", "base_url", "version"]
    assert {e.line for e in errors} == {1}


def test_unknown_key_names_the_key_and_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", service("svc-a") + "colour: blue\n")

    error = only_error(inspect_definitions(path).errors)

    assert error.field == "colour"
    assert error.line == line_of(path, "colour:")
    assert "unknown" in error.message


def test_unknown_nested_key_names_its_full_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        service("svc-a") + "capabilities:\n  synchronous: true\n  teleport: true\n",
    )

    error = only_error(inspect_definitions(path).errors)

    assert error.field == "capabilities.teleport"
    assert error.line == line_of(path, "teleport:")


def test_a_whole_number_beyond_64_bits_in_an_implementation_is_an_error(tmp_path: Path) -> None:
    # Stored as JSON, which cannot hold it: refused here rather than failing on save.
    path = write(
        tmp_path,
        "bad.yaml",
        service("svc-a")
        + "integration_patterns:\n  - type: rest\n    implementation:\n"
        + "      limits: {max_rows: 99999999999999999999}\n",
    )

    error = only_error(inspect_definitions(path).errors)

    assert error.field == "integration_patterns.0.implementation"
    assert error.line == line_of(path, "implementation:")
    assert error.message == (
        "limits.max_rows: must be a whole number within 64 bits "
        "(-9223372036854775808 to 18446744073709551615)"
    )


@pytest.mark.parametrize("url", ["ftp://x", "http://", "not a url"])
def test_malformed_base_url_names_the_base_url_line(tmp_path: Path, url: str) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        f"name: svc-a\narchitecture: microservice\nversion: v1\nbase_url: '{url}'\n",
    )

    error = only_error(inspect_definitions(path).errors)

    assert error.field == "base_url"
    assert error.line == 4
    assert url in error.message


def test_well_formed_base_url_loses_its_trailing_slash(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ok.yaml",
        "name: svc-a\narchitecture: microservice\nversion: v1\nbase_url: https://a.b:8443/api/\n",
    )

    (definition,) = load_definitions(path).definitions()

    assert definition.base_url == "https://a.b:8443/api"


def test_invalid_yaml_names_the_line_of_the_problem(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        """
        name: svc-a
        architecture: microservice
        base_url: http://svc-a.local
          version: v1
        """,
    )

    result = inspect_definitions(path)
    error = only_error(result.errors)

    assert result.services == []
    assert error.file == str(path)
    assert error.line == 4
    assert "invalid YAML" in error.message
    assert str(error).startswith(f"{path}:4: error: invalid YAML")


def test_invalid_yaml_in_one_file_does_not_hide_errors_in_another(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: [unclosed\n")
    write(tmp_path, "b.yaml", service("svc-b") + "colour: red\n")

    errors = inspect_definitions(tmp_path).errors

    assert sorted(Path(e.file or "").name for e in errors) == ["a.yaml", "b.yaml"]


def test_a_document_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "- just a string\n")

    error = only_error(inspect_definitions(path).errors)

    assert error.line == 1
    assert "mapping" in error.message


def test_invalid_name_is_an_error_on_the_name_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        "architecture: microservice\nname: Bad_Name\nbase_url: http://x\nversion: v1\n",
    )

    error = only_error(inspect_definitions(path).errors)

    assert error.field == "name"
    assert error.line == 2


def test_duplicate_name_across_two_files_names_the_first_location(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", "# first\n" + service("svc-a"))
    second = write(tmp_path, "b.yaml", "# one\n# two\n" + service("svc-a"))

    result = inspect_definitions(tmp_path)
    error = only_error(result.errors)

    assert error.file == str(second)
    assert error.line == line_of(second, "name: svc-a") == 3
    assert error.field == "name"
    assert f"{first}:{line_of(first, 'name: svc-a')}" in error.message
    assert "duplicate" in error.message
    with pytest.raises(ValidationError):
        load_definitions(tmp_path)


def test_duplicate_name_inside_one_file_names_the_first_location(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "---\n" + service("svc-a") + "---\n" + service("svc-a"))

    error = only_error(inspect_definitions(path).errors)

    assert error.line == line_of(path, "name: svc-a", occurrence=2)
    assert f"{path}:{line_of(path, 'name: svc-a')}" in error.message


def test_dependency_on_an_unknown_service_names_the_field_and_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.yaml",
        """
        name: svc-a
        architecture: microservice
        base_url: http://svc-a.local
        version: v1
        dependencies:
          - service: ghost
            type: sync
        """,
    )

    error = only_error(inspect_definitions(path).errors)

    assert error.file == str(path)
    assert error.field == "dependencies.0.service"
    assert error.line == line_of(path, "service: ghost")
    assert "ghost" in error.message


def test_consumer_that_is_not_registered_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.yaml",
        service("svc-a", consumers="[{service: svc-b, type: sync}, {service: ghost, type: sync}]")
        + "---\n"
        + service("svc-b", dependencies="[{service: svc-a, type: sync}]"),
    )

    error = only_error(inspect_definitions(path).errors)

    assert error.field == "consumers.1.service"
    assert error.line == line_of(path, "consumers:")


def test_all_services_consumer_is_accepted_and_satisfies_every_dependent(tmp_path: Path) -> None:
    write(
        tmp_path,
        "hub.yaml",
        service("notify", consumers=f"[{{service: {ALL_SERVICES}, type: async}}]"),
    )
    write(tmp_path, "a.yaml", service("svc-a", dependencies="[{service: notify, type: async}]"))

    result = load_definitions(tmp_path)

    assert result.errors == []
    assert result.warnings == []


# --------------------------------------------------------------------------- warnings


def test_dependency_not_listed_as_consumer_on_the_other_side_is_a_warning(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", service("svc-a", dependencies="[{service: svc-b, type: sync}]"))
    write(tmp_path, "b.yaml", service("svc-b"))

    result = load_definitions(tmp_path)

    assert result.errors == []
    warning = only_error(result.warnings)
    assert warning.severity == "warning"
    assert warning.file == str(a)
    assert warning.line == line_of(a, "dependencies:")
    assert warning.field == "dependencies.0"
    assert "svc-a depends on svc-b" in warning.message
    assert str(warning).startswith(f"{a}:{warning.line}: warning [dependencies.0]: ")


def test_consumer_not_listing_this_service_as_a_dependency_is_a_warning(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", service("svc-a"))
    b = write(tmp_path, "b.yaml", service("svc-b", consumers="[{service: svc-a, type: sync}]"))

    result = load_definitions(tmp_path)

    warning = only_error(result.warnings)
    assert warning.file == str(b)
    assert warning.field == "consumers.0"
    assert warning.line == line_of(b, "consumers:")
    assert "svc-b lists svc-a as a consumer" in warning.message


def test_matching_dependency_and_consumer_raise_no_warning(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", service("svc-a", dependencies="[{service: svc-b, type: sync}]"))
    write(tmp_path, "b.yaml", service("svc-b", consumers="[{service: svc-a, type: sync}]"))

    result = load_definitions(tmp_path)

    assert result.warnings == []


def _ring(tmp_path: Path, kind: str) -> None:
    ring = [("svc-a", "svc-b", "svc-c"), ("svc-b", "svc-c", "svc-a"), ("svc-c", "svc-a", "svc-b")]
    for name, nxt, prev in ring:
        write(
            tmp_path,
            f"{name}.yaml",
            service(
                name,
                dependencies=f"[{{service: {nxt}, type: {kind}}}]",
                consumers=f"[{{service: {prev}, type: {kind}}}]",
            ),
        )


def test_sync_cycle_is_warned_once(tmp_path: Path) -> None:
    _ring(tmp_path, "sync")

    result = load_definitions(tmp_path)

    assert result.errors == []
    warning = only_error(result.warnings)
    assert warning.severity == "warning"
    assert warning.field == "dependencies"
    assert "svc-a -> svc-b -> svc-c -> svc-a" in warning.message
    assert Path(warning.file or "").name == "svc-a.yaml"
    assert sync_cycles(result.definitions()) == [["svc-a", "svc-b", "svc-c"]]


@pytest.mark.parametrize("kind", ["async", "batch"])
def test_cycles_that_are_not_synchronous_are_not_warned(tmp_path: Path, kind: str) -> None:
    _ring(tmp_path, kind)

    result = load_definitions(tmp_path)

    assert result.errors == []
    assert result.warnings == []
    assert sync_cycles(result.definitions()) == []


def test_warnings_are_not_computed_while_there_are_errors(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", service("svc-a", dependencies="[{service: svc-b, type: sync}]"))
    write(tmp_path, "b.yaml", service("svc-b") + "colour: red\n")

    result = inspect_definitions(tmp_path)

    assert result.errors
    assert result.warnings == []


# --------------------------------------------------------------------------- raise vs inspect


def test_load_raises_with_every_problem_while_inspect_returns_them(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: svc-a\narchitecture: mainframe\nbase_url: ftp://x\n")
    write(tmp_path, "b.yaml", "name: [oops\n")

    inspected = inspect_definitions(tmp_path)
    assert not inspected.ok
    assert len(inspected.errors) == 4  # architecture, base_url, version, invalid YAML

    with pytest.raises(ValidationError) as caught:
        load_definitions(tmp_path)

    assert caught.value.problems == inspected.errors
    text = str(caught.value)
    for problem in inspected.errors:
        assert str(problem) in text
    assert "[architecture]" in text
    assert "[base_url]" in text
    assert "[version]" in text


def test_registry_from_path_raises_validation_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", service("svc-a") + "colour: red\n")

    with pytest.raises(ValidationError):
        ServiceRegistry.from_path(tmp_path)


def test_missing_path_is_an_error_not_an_exception_when_inspecting(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    result = inspect_definitions(missing)

    error = only_error(result.errors)
    assert error.file == str(missing)
    assert result.services == []
    with pytest.raises(ValidationError, match="no such file"):
        load_definitions(missing)


def test_a_folder_without_yaml_files_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "readme.txt", "nothing here")

    error = only_error(inspect_definitions(tmp_path).errors)

    assert "no *.yaml" in error.message


def test_an_empty_yaml_file_defines_nothing(tmp_path: Path) -> None:
    write(tmp_path, "empty.yaml", "# nothing yet\n")
    write(tmp_path, "a.yaml", service("svc-a"))

    result = load_definitions(tmp_path)

    assert [d.name for d in result.definitions()] == ["svc-a"]


# --------------------------------------------------------------------------- the name rule


def test_a_ten_thousand_character_name_is_refused_on_its_line_with_the_rule(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "long.yaml", "# a long one\n" + service("x" * 10_000))

    error = only_error(inspect_definitions(path).errors)

    assert (error.field, error.line) == ("name", 2)
    assert "it has 10000 characters, more than 63" in error.message
    assert error.message.endswith(f"a name is {NAME_RULE}")
    assert len(str(error)) < 400  # the name is quoted short, so the message stays one line


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("ab-", "it ends with '-'"),
        ("-ab", "it starts with '-', not a letter"),
        ("Bad_Name", "it contains 'B' (use lower case)"),
        ("x" * 64, "it has 64 characters, more than 63"),
    ],
)
def test_a_bad_name_says_why_and_states_the_rule(tmp_path: Path, name: str, reason: str) -> None:
    path = write(tmp_path, "bad.yaml", service(name))

    error = only_error(inspect_definitions(path).errors)

    assert error.field == "name"
    assert reason in error.message
    assert NAME_RULE in error.message


@pytest.mark.parametrize("name", ["a", "x" * 63])
def test_names_of_one_and_of_sixty_three_characters_are_valid(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, "ok.yaml", service(name))

    assert [d.name for d in load_definitions(path).definitions()] == [name]


def test_a_dependency_on_a_name_that_breaks_the_rule_names_its_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "svc.yaml",
        service("svc-a", dependencies="[{service: Svc_B, type: sync}]"),
    )

    error = only_error(inspect_definitions(path).errors)

    assert error.field == "dependencies.0.service"
    assert "it contains 'S' (use lower case)" in error.message


@pytest.mark.parametrize(
    "text",
    ["", "# nothing yet\n", "---\n", "---\n---\n", "services: []\n", "[]\n"],
    ids=["empty", "comment", "one empty document", "two empty documents", "no services", "[]"],
)
def test_a_path_that_defines_no_service_at_all_is_an_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "empty.yaml", text)

    for root in (path, tmp_path):
        error = only_error(inspect_definitions(root).errors)
        assert (error.file, error.line, error.message) == (
            str(root),
            None,
            "no service definitions found",
        )
        with pytest.raises(ValidationError, match="no service definitions found"):
            load_definitions(root)


def test_empty_documents_among_services_are_fine(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "---\n" + service("svc-a") + "---\n---\n" + service("svc-b"))

    result = load_definitions(path)

    assert [d.name for d in result.definitions()] == ["svc-a", "svc-b"]


def test_a_key_given_twice_in_a_service_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "name: aa\nname: bb\n" + service("svc-a").split("\n", 1)[1])

    error = only_error(inspect_definitions(path).errors)

    assert (error.file, error.line) == (str(path), 2)
    assert error.message == "the key 'name' is given twice in one mapping, at lines 1 and 2"


def test_an_alias_bomb_in_a_registry_file_is_one_error_at_its_line(tmp_path: Path) -> None:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [
        f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]"
        for p, k in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    path = write(tmp_path, "bomb.yaml", "\n".join(lines) + "\n" + service("svc-a"))

    error = only_error(inspect_definitions(path).errors)

    assert (error.file, error.line) == (str(path), 7)
    assert "counting each alias as every node it repeats" in error.message


def test_a_service_repeated_by_an_alias_is_a_duplicate_at_the_alias(tmp_path: Path) -> None:
    body = textwrap.indent(service("svc-a"), "    ").lstrip()
    path = write(tmp_path, "a.yaml", f"services:\n  - &one\n    {body}  - *one\n")

    error = only_error(inspect_definitions(path).errors)

    assert error.line == line_of(path, "*one")
    assert error.message.startswith("duplicate service 'svc-a'")


def sync_service(name: str, *callees: str) -> str:
    """A service that calls ``callees`` synchronously and is consumed by every service."""
    calls = ", ".join(f"{{service: {callee}, type: sync}}" for callee in callees)
    return service(
        name, dependencies=f"[{calls}]", consumers=f"[{{service: {ALL_SERVICES}, type: sync}}]"
    )


def test_synchronous_cycles_are_one_per_group_however_many_cycles_it_has(
    tmp_path: Path,
) -> None:
    # 30 services that all call one another hold more cycles than could ever be listed.
    names = [f"svc-{i:02}" for i in range(30)]
    for name in names:
        write(tmp_path, f"{name}.yaml", sync_service(name, *(o for o in names if o != name)))

    result = load_definitions(tmp_path)

    (warning,) = result.warnings
    assert warning.message == "cycle of synchronous dependencies: svc-00 -> svc-01 -> svc-00"
    assert sync_cycles(result.definitions()) == [["svc-00", "svc-01"]]


def test_each_group_of_synchronous_cycles_is_warned_with_a_shortest_cycle(
    tmp_path: Path,
) -> None:
    calls = {"a": ["b"], "b": ["c", "a"], "c": ["a"], "x": ["y"], "y": ["x"], "z": ["z"], "n": []}
    for name, callees in calls.items():
        write(tmp_path, f"{name}.yaml", sync_service(f"svc-{name}", *(f"svc-{c}" for c in callees)))

    result = load_definitions(tmp_path)

    assert sync_cycles(result.definitions()) == [["svc-a", "svc-b"], ["svc-x", "svc-y"], ["svc-z"]]
    assert [w.message.split(": ")[1] for w in result.warnings] == [
        "svc-a -> svc-b -> svc-a",
        "svc-x -> svc-y -> svc-x",
        "svc-z -> svc-z",
    ]
