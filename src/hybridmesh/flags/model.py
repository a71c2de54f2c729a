"""Feature flags as people write them: variants, a default, and ordered targeting rules.

A flag serves one of its ``variants`` (name -> JSON value, all of one type: boolean,
string, number or object). Its ``targeting`` rules are tried in order; the first whose
``when`` conditions all hold decides, either with one ``variant`` or with a ``fractional``
split of the users by weight. When no rule decides, or the flag is disabled, the flag
serves its ``default_variant``::

    key: new-checkout
    description: The rewritten checkout service, behind the legacy one
    variants: {"on": true, "off": false}
    default_variant: "off"
    targeting:
      - when: [{attribute: email, ends_with: "@example.com"}]
        variant: "on"
      - fractional:
          - {variant: "on", weight: 10}
          - {variant: "off", weight: 90}

Models are strict: unknown keys are refused, strings, booleans and whole numbers are not
coerced from one another. Checks that span fields (a variant that a rule names must exist,
weights must not all be 0, ...) are made by :func:`flag_problems`, which gives each problem
its place in the flag, so a file's reader can name the line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    model_validator,
)

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.limits import check_pattern
from hybridmesh.core.names import Name
from hybridmesh.core.serialization import dumpb
from hybridmesh.core.yaml_lines import Location

#: The largest weight, and the largest sum of a split's weights (flagd's: the product of
#: a 32-bit hash and the sum must fit in 64 signed bits).
MAX_WEIGHT = 2**31 - 1
#: Most rules a flag may have, conditions a rule may have, variants a flag may have.
MAX_RULES = 100
MAX_CONDITIONS = 32
MAX_VARIANTS = 64
#: Bytes of one variant's value as JSON.
MAX_VALUE_BYTES = 65_536
#: The context attribute that names who is being evaluated (OpenFeature's and flagd's).
TARGETING_KEY = "targetingKey"

#: The kinds of value a flag serves, as OpenFeature's typed calls ask for them.
Kind = Literal["boolean", "string", "number", "object"]

#: The conditions a rule may use, by the key that introduces them.
OPERATORS = (
    "equals",
    "not_equals",
    "in",
    "not_in",
    "starts_with",
    "ends_with",
    "matches",
    "lt",
    "lte",
    "gt",
    "gte",
)

_VARIANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_BOOLEAN_WORDS = "on, off, yes, no, true and false"


def kind_of(value: Any) -> Kind | None:
    """The kind of a variant's value, or None for a value no flag serves (None, a date)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict | list):
        return "object"
    return None


def _variant_name(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(
            f"YAML reads {_BOOLEAN_WORDS} unquoted as booleans: quote the variant name "
            f'("{"on" if value else "off"}")'
        )
    return value


def _check_variant_name(value: str) -> str:
    if not _VARIANT.fullmatch(value):
        raise ValueError(
            f"{value[:40]!r} is not a variant name: 1 to 63 letters, digits, '_', '.' or "
            "'-', starting with a letter or digit"
        )
    return value


def _attribute(value: str) -> str:
    if not 1 <= len(value) <= 256:
        raise ValueError("an attribute name has 1 to 256 characters")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _scalar(value: Any) -> str | bool | float:
    if isinstance(value, str | bool):
        return value
    if isinstance(value, int | float):
        return _number(value)
    raise ValueError("must be a string, a number, or true or false")


def _json_value(value: Any) -> Any:
    """A variant's value: JSON (no None at the top, no dates, finite numbers), bounded."""
    problem = _json_problem(value, 0)
    if problem is not None:
        raise ValueError(problem)
    if len(dumpb(value)) > MAX_VALUE_BYTES:
        raise ValueError(f"a variant's value may take at most {MAX_VALUE_BYTES} bytes as JSON")
    return value


def _json_problem(value: Any, depth: int) -> str | None:
    if depth > 32:
        return "a variant's value may nest at most 32 levels"
    if value is None:
        return "a variant's value may not be null" if depth == 0 else None
    if isinstance(value, bool | str | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "numbers must be finite"
    if isinstance(value, list):
        for item in value:
            problem = _json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"object keys must be strings, not {key!r}: quote it"
            problem = _json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    return (
        f"a variant's value is JSON (true/false, a string, a number, a list or a mapping), "
        f"not a {type(value).__name__}: quote it"
    )


VariantName = Annotated[
    StrictStr, BeforeValidator(_variant_name), AfterValidator(_check_variant_name)
]
AttributeName = Annotated[StrictStr, AfterValidator(_attribute)]
# One message for a value of the wrong type, rather than one per member of a union.
Number = Annotated[int | float, PlainValidator(_number)]
Scalar = Annotated[str | bool | int | float, PlainValidator(_scalar)]
Regex = Annotated[StrictStr, AfterValidator(check_pattern)]
Weight = Annotated[StrictInt, Field(ge=0, le=MAX_WEIGHT)]
VariantValue = Annotated[Any, AfterValidator(_json_value)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Condition(_Model):
    """One test of a context attribute; a rule's ``when`` holds when all of its hold.

    Exactly one operator is given. An attribute the context lacks (or holds as null)
    fails every test, negated ones included. ``equals``/``not_equals``/``in``/``not_in``
    compare values of the same kind (``1`` is not ``"1"``, ``true`` is not ``1``);
    ``starts_with``/``ends_with``/``matches`` (a regular expression found anywhere, as
    Python's ``re.search``) hold only for strings, ``lt``/``lte``/``gt``/``gte`` only for
    numbers.
    """

    attribute: AttributeName
    equals: Scalar | None = None
    not_equals: Scalar | None = None
    in_: tuple[Scalar, ...] | None = Field(None, alias="in", min_length=1, max_length=10_000)
    not_in: tuple[Scalar, ...] | None = Field(None, min_length=1, max_length=10_000)
    starts_with: StrictStr | None = None
    ends_with: StrictStr | None = None
    matches: Regex | None = None
    lt: Number | None = None
    lte: Number | None = None
    gt: Number | None = None
    gte: Number | None = None

    @model_validator(mode="after")
    def _one(self) -> Condition:
        given = [op for op in OPERATORS if self.operand(op) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one operator: {', '.join(OPERATORS)}")
        return self

    def operand(self, op: str) -> Any:
        return getattr(self, "in_" if op == "in" else op)

    @property
    def op(self) -> str:
        return next(op for op in OPERATORS if self.operand(op) is not None)


class Split(_Model):
    """One variant's share of a fractional rule: ``weight`` out of the rule's sum."""

    variant: VariantName
    weight: Weight = 1


class Rule(_Model):
    """When every condition of ``when`` holds (an empty ``when`` always does), serve
    ``variant``, or split the users over ``fractional`` by their targeting key."""

    when: tuple[Condition, ...] = Field((), max_length=MAX_CONDITIONS)
    variant: VariantName | None = None
    fractional: tuple[Split, ...] | None = Field(None, min_length=1, max_length=MAX_VARIANTS)

    @model_validator(mode="after")
    def _one(self) -> Rule:
        if (self.variant is None) == (self.fractional is None):
            raise ValueError("give exactly one of variant, fractional")
        return self


class Flag(_Model):
    """A feature flag. See the module's documentation for what each field does."""

    key: Name
    description: StrictStr = Field("", max_length=2000)
    enabled: StrictBool = True
    variants: dict[VariantName, VariantValue] = Field(min_length=1, max_length=MAX_VARIANTS)
    default_variant: VariantName
    targeting: tuple[Rule, ...] = Field((), max_length=MAX_RULES)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Flag:
        # A file's reader checks these itself, to name the line of each problem.
        if isinstance(info.context, Mapping) and info.context.get("defer_checks"):
            return self
        problems = flag_problems(self)
        if problems:
            raise ValueError("; ".join(f"{_dotted(loc)}: {message}" for loc, message in problems))
        return self

    @property
    def kind(self) -> Kind:
        """The kind of value the flag serves (every variant's)."""
        found = kind_of(self.variants[self.default_variant])
        assert found is not None  # checked by _json_value
        return found

    def definition(self) -> dict[str, Any]:
        """The flag as JSON-ready data, as written in a file: ``in`` for the operator, no
        field left at its default except ``enabled``."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
        return {"key": data.pop("key"), "enabled": self.enabled, **data}


def flag_problems(flag: Flag) -> list[tuple[Location, str]]:
    """What is wrong with ``flag`` across its fields, each with its place in the flag."""
    problems: list[tuple[Location, str]] = []
    names = flag.variants
    known = ", ".join(names)
    if flag.default_variant not in names:
        problems.append(
            (("default_variant",), f"no variant {flag.default_variant!r} (the variants: {known})")
        )
    problems += _kind_problems(flag)
    last = len(flag.targeting) - 1
    for index, rule in enumerate(flag.targeting):
        at: Location = ("targeting", index)
        if not rule.when and index != last:
            problems.append(
                (
                    at,
                    "a rule without 'when' always decides, so the rules after it would never "
                    "be tried: make it the last rule",
                )
            )
        if rule.variant is not None and rule.variant not in names:
            problems.append(
                ((*at, "variant"), f"no variant {rule.variant!r} (the variants: {known})")
            )
        if rule.fractional is not None:
            problems += _split_problems(rule.fractional, names, known, (*at, "fractional"))
    return problems


def _kind_problems(flag: Flag) -> list[tuple[Location, str]]:
    kinds = {name: kind_of(value) for name, value in flag.variants.items()}
    first = next(iter(kinds))
    expected = kinds.get(flag.default_variant) or kinds[first]
    wrong = [name for name, kind in kinds.items() if kind != expected]
    reference = flag.default_variant if flag.default_variant in kinds else first
    return [
        (
            ("variants", name),
            f"every variant serves one kind of value: {name!r} is a {kinds[name]}, "
            f"{reference!r} a {expected}",
        )
        for name in wrong
    ]


def _split_problems(
    splits: tuple[Split, ...], names: Mapping[str, Any], known: str, at: Location
) -> list[tuple[Location, str]]:
    problems: list[tuple[Location, str]] = []
    seen: set[str] = set()
    for index, split in enumerate(splits):
        if split.variant not in names:
            problems.append(
                ((*at, index, "variant"), f"no variant {split.variant!r} (the variants: {known})")
            )
        elif split.variant in seen:
            problems.append(
                ((*at, index, "variant"), f"variant {split.variant!r} is given twice in one split")
            )
        seen.add(split.variant)
    total = sum(split.weight for split in splits)
    if total == 0:
        problems.append((at, "the weights are all 0: give at least one a weight"))
    elif total > MAX_WEIGHT:
        problems.append((at, f"the weights add up to {total}, more than {MAX_WEIGHT}"))
    return problems


def _dotted(loc: Location) -> str:
    return ".".join(str(part) for part in loc)


def with_rollout(
    rules: list[Any], shares: list[tuple[str, Decimal]], default_variant: str
) -> list[Any]:
    """``rules`` (as YAML writes them) ending with a split of everyone by ``shares``
    (variant, percent), the default variant taking what they leave; a split of everyone
    already last is replaced. Weights are the percents themselves when they are whole, else
    hundredths of a percent (flagd's weights are whole numbers).
    :class:`ValidationError` when the shares cannot make a split."""
    names = [name for name, _ in shares]
    if len(set(names)) != len(names):
        raise ValidationError([Problem("a variant is named twice", field="percent")])
    total = sum((share for _, share in shares), Decimal(0))
    rest = 100 - total
    if rest < 0:
        raise ValidationError(
            [Problem(f"the percents add up to {total}, over 100", field="percent")]
        )
    if default_variant in names and rest:
        raise ValidationError(
            [
                Problem(
                    f"the percents add up to {total}, not 100: leave the default variant "
                    f"({default_variant}) out and it takes the rest",
                    field="percent",
                )
            ]
        )
    parts = [*shares, (default_variant, rest)] if rest else shares
    scale = 1 if all(share == int(share) for _, share in parts) else 100
    split = [Split(variant=name, weight=int(share * scale)) for name, share in parts]
    rollout = Rule(fractional=tuple(split)).model_dump(
        mode="json", exclude_none=True, exclude_defaults=True
    )
    if rules and not rules[-1].get("when") and "fractional" in rules[-1]:
        return [*rules[:-1], rollout]
    return [*rules, rollout]


__all__ = [
    "MAX_WEIGHT",
    "OPERATORS",
    "TARGETING_KEY",
    "Condition",
    "Flag",
    "Kind",
    "Rule",
    "Split",
    "flag_problems",
    "kind_of",
    "with_rollout",
]
