"""Flags files and the flag model: what is accepted, and errors naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridmesh.core.errors import ValidationError
from hybridmesh.flags import Flag, load_flags, parse_flags

GOOD = """\
flags:
  - key: new-checkout
    description: The rewritten checkout, behind the legacy one
    variants: {"on": true, "off": false}
    default_variant: "off"
    targeting:
      - when:
          - {attribute: email, ends_with: "@example.com"}
          - {attribute: country, in: [TH, SG]}
        variant: "on"
      - fractional:
          - {variant: "on", weight: 10}
          - {variant: "off", weight: 90}
  - key: banner
    enabled: false
    variants:
      plain: {text: Hello, color: null}
      loud: {text: HELLO}
    default_variant: plain
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ValidationError) as raised:
        parse_flags(text, "flags.yaml")
    return [str(p) for p in raised.value.problems]


def test_a_good_file_is_read_with_each_flags_line() -> None:
    checkout, banner = parse_flags(GOOD, "flags.yaml")
    assert (checkout.flag.key, checkout.line, banner.line) == ("new-checkout", 2, 14)
    assert checkout.flag.targeting[0].when[1].operand("in") == ("TH", "SG")
    assert checkout.flag.kind == "boolean" and banner.flag.kind == "object"
    assert banner.flag.enabled is False
    # The stored form reads back as the same flag.
    assert Flag.model_validate(checkout.flag.definition()) == checkout.flag


def test_a_single_flag_or_a_list_is_a_file_too(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("key: a\nvariants: {x: 1}\ndefault_variant: x\n")
    (tmp_path / "b.yml").write_text('- key: b\n  variants: {x: "1"}\n  default_variant: x\n')
    assert [f.flag.key for f in load_flags(tmp_path)] == ["a", "b"]


def test_unknown_keys_and_wrong_types_are_refused_at_their_line() -> None:
    text = """\
flags:
  - key: checkout
    variants: {"on": true, "off": false}
    default_variant: "off"
    colour: red
    enabled: "yes"
    targeting:
      - when: [{attribute: plan, equal: pro}]
        variant: "on"
      - fractional:
          - {variant: "on", weight: 2.5}
          - {variant: "off", weight: -1}
"""
    assert problems_of(text) == [
        "flags.yaml:6: error [enabled]: must be true or false",
        "flags.yaml:8: error [targeting.0.when.0.equal]: unknown field",
        "flags.yaml:11: error [targeting.1.fractional.0.weight]: must be a whole number",
        "flags.yaml:12: error [targeting.1.fractional.1.weight]: must be at least 0",
        "flags.yaml:5: error [colour]: unknown field",
    ]


def test_what_spans_fields_is_checked_at_its_line() -> None:
    text = """\
key: checkout
variants:
  "on": true
  "off": 0
default_variant: missing
targeting:
  - fractional:
      - {variant: "on", weight: 0}
      - {variant: nope, weight: 0}
  - when: [{attribute: plan, equals: pro}]
    variant: ghost
"""
    assert problems_of(text) == [
        "flags.yaml:5: error [default_variant]: no variant 'missing' (the variants: on, off)",
        "flags.yaml:4: error [variants.off]: every variant serves one kind of value: 'off' is a "
        "number, 'on' a boolean",
        "flags.yaml:7: error [targeting.0]: a rule without 'when' always decides, so the rules "
        "after it would never be tried: make it the last rule",
        "flags.yaml:9: error [targeting.0.fractional.1.variant]: no variant 'nope' "
        "(the variants: on, off)",
        "flags.yaml:7: error [targeting.0.fractional]: the weights are all 0: give at least "
        "one a weight",
        "flags.yaml:11: error [targeting.1.variant]: no variant 'ghost' (the variants: on, off)",
    ]
    text = 'key: k\nvariants:\n  a: true\n  b: "x"\ndefault_variant: a\n'
    assert problems_of(text) == [
        "flags.yaml:4: error [variants.b]: every variant serves one kind of value: 'b' is a "
        "string, 'a' a boolean"
    ]


def test_conditions_take_exactly_one_operator_of_the_right_type() -> None:
    base = "key: k\nvariants: {a: 1}\ndefault_variant: a\ntargeting:\n  - variant: a\n    when:\n"
    cases = {
        "      - {attribute: x, equals: 1, in: [1]}": "[targeting.0.when.0]: give exactly one "
        "operator",
        "      - {attribute: x}": "[targeting.0.when.0]: give exactly one operator",
        "      - {attribute: x, lt: a}": "[targeting.0.when.0.lt]: must be a number",
        "      - {attribute: x, equals: [1]}": "[targeting.0.when.0.equals]: must be a string, "
        "a number, or true or false",
        "      - {attribute: x, matches: '(['}": "[targeting.0.when.0.matches]: is not a regular "
        "expression",
        "      - {attribute: x, in: []}": "[targeting.0.when.0.in]: must have at least 1 item",
        "      - {attribute: x, starts_with: 1}": "[targeting.0.when.0.starts_with]: must be a "
        "string",
        "      - {attribute: '', equals: 1}": "[targeting.0.when.0.attribute]",
    }
    for condition, expected in cases.items():
        [problem] = problems_of(base + condition + "\n")
        assert problem.startswith("flags.yaml:7: error ") and expected in problem, problem


def test_unquoted_on_and_off_are_explained() -> None:
    text = "key: k\nvariants: {on: true, off: false}\ndefault_variant: off\n"
    found = problems_of(text)
    assert found[0].startswith("flags.yaml:2: error [variants]: YAML reads on, off")
    assert found[-1].startswith("flags.yaml:3: error [default_variant]: YAML reads on, off")
    assert 'quote the variant name ("off")' in found[-1]


def test_a_variant_value_must_be_json() -> None:
    text = "key: k\nvariants: {a: 2024-01-01}\ndefault_variant: a\n"
    [problem] = problems_of(text)
    assert problem.startswith("flags.yaml:2: error [variants.a]: a variant's value is JSON")
    text = "key: k\nvariants: {a: null}\ndefault_variant: a\n"
    assert problems_of(text) == [
        "flags.yaml:2: error [variants.a]: a variant's value may not be null"
    ]


def test_keys_are_names_and_unique_across_files(tmp_path: Path) -> None:
    [problem] = problems_of("key: New_Checkout\nvariants: {a: 1}\ndefault_variant: a\n")
    assert problem.startswith("flags.yaml:1: error [key]: 'New_Checkout' is not a valid name")
    (tmp_path / "a.yaml").write_text("key: k\nvariants: {a: 1}\ndefault_variant: a\n")
    (tmp_path / "b.yaml").write_text("\n\nkey: k\nvariants: {a: 2}\ndefault_variant: a\n")
    with pytest.raises(ValidationError) as raised:
        load_flags(tmp_path)
    [problem] = raised.value.problems
    assert str(problem) == (
        f"{tmp_path / 'b.yaml'}:3: error [key]: duplicate flag 'k'; first defined at "
        f"{tmp_path / 'a.yaml'}:1"
    )


def test_a_flag_built_in_code_is_checked_whole() -> None:
    with pytest.raises(ValueError, match=r"targeting\.0\.variant: no variant 'x'"):
        Flag.model_validate(
            {
                "key": "k",
                "variants": {"a": 1},
                "default_variant": "a",
                "targeting": [{"variant": "x"}],
            }
        )


def test_an_empty_file_defines_no_flag(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ValidationError, match="defines no flag"):
        load_flags(path)
