"""Evaluating flags in process: each flag compiled once, each evaluation a few lookups.

:func:`compile_flag` turns a :class:`~hybridmesh.flags.model.Flag` into a
:class:`CompiledFlag` whose outcomes are built in advance: an evaluation that serves a
fixed variant returns a shared, immutable :class:`Evaluation` (no allocation), conditions
are small closures, and a fractional rule is its cumulative weights. Nothing here does
I/O, awaits or raises on a flag's account.

**Fractional rollout** follows flagd's ``fractional`` operator as flagd computes it since
its high-precision bucketing (flagd PR #1909; the flagd testbed's ``@fractional-v2``
vectors, which the unit tests replay):

- the bucketing value is the flag key followed directly by the targeting key
  (``"new-checkout" + "user-42"``, no separator), as flagd's shorthand ``fractional``
  without an expression;
- its hash is MurmurHash3 x86 32-bit, seed 0, of the UTF-8 bytes, read as unsigned
  (``mmh3.hash(value, signed=False)``);
- the bucket is ``(hash * total_weight) >> 32``, a whole number in ``[0, total)``;
- variants take consecutive ranges of buckets in the order the rule lists them, each as
  wide as its weight; the bucket's range names the variant.

(flagd releases before that change used 100 buckets, ``abs(signed hash) / (2**31 - 1)``,
and assign some users differently; a flagd of that age and this code disagree on them.)

A user's place is ``hash / 2**32``, fixed for a flag; a variant holds the users whose
place falls in its share of ``[0, 1)``. Growing the share of the first (or the last)
variant of a split only widens its range, so the users it had stay on it: with two
variants (``on`` 10 → 20 %, ``off`` the rest) nobody goes back.

**Missing targeting key.** A fractional rule needs the targeting key (``targetingKey`` in
the context, or the ``targeting_key`` argument; a non-empty string). When a rule that
applies has none, the evaluation stops there and serves the flag's *default variant* with
reason ``ERROR`` and error code ``TARGETING_KEY_MISSING``: the user gets the safe side of
the migration, and the caller can see why. (Through OpenFeature, where any error code means
"use the caller's default", the SDK then returns the caller's default value instead.)

Reasons and error codes are OpenFeature's: ``STATIC`` (no targeting rules), ``TARGETING_MATCH``
(a rule's ``variant``), ``SPLIT`` (a fractional rule), ``DEFAULT`` (no rule applied),
``DISABLED`` (the default variant of a disabled flag), ``ERROR`` with ``FLAG_NOT_FOUND`` or
``TYPE_MISMATCH`` (the caller's default value) or ``TARGETING_KEY_MISSING``.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Final

import mmh3
import orjson

from hybridmesh.flags.model import TARGETING_KEY, Condition, Flag, Kind, Rule, Split, kind_of

# Reasons (OpenFeature's names).
STATIC: Final = "STATIC"
TARGETING_MATCH: Final = "TARGETING_MATCH"
SPLIT: Final = "SPLIT"
DEFAULT: Final = "DEFAULT"
DISABLED: Final = "DISABLED"
ERROR: Final = "ERROR"

# Error codes (OpenFeature's names).
FLAG_NOT_FOUND: Final = "FLAG_NOT_FOUND"
TYPE_MISMATCH: Final = "TYPE_MISMATCH"
TARGETING_KEY_MISSING: Final = "TARGETING_KEY_MISSING"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What an evaluation served: the ``value`` of ``variant`` (None when the caller's
    default was served), why (``reason``) and, for an error, its code and message."""

    value: Any
    variant: str | None
    reason: str
    flag_key: str
    error_code: str | None = None
    error_message: str | None = None


def bucket(hash_value: int, total: int) -> int:
    """flagd's bucket of an unsigned 32-bit hash among ``total`` weights."""
    return (hash_value * total) >> 32


def bucketing_hash(flag_key: str, targeting_key: str) -> int:
    """The unsigned MurmurHash3 x86 32-bit hash (seed 0) of flag key + targeting key."""
    return int(mmh3.hash(flag_key + targeting_key, 0, False))


#: A compiled condition: the attribute it reads, whether that is the targeting key, and
#: the test of a present (not None) value.
_Test = Callable[[Any], bool]


class _Fractional:
    """A fractional rule: cumulative weights and the outcome of each range."""

    __slots__ = ("bounds", "outcomes", "total")

    def __init__(self, splits: tuple[Split, ...], outcomes: tuple[Evaluation, ...]) -> None:
        self.bounds = tuple(accumulate(split.weight for split in splits))
        self.total = self.bounds[-1]
        self.outcomes = outcomes

    def pick(self, prefix: str, targeting_key: str) -> Evaluation:
        hashed = mmh3.hash(prefix + targeting_key, 0, False)
        return self.outcomes[bisect_right(self.bounds, (hashed * self.total) >> 32)]


class CompiledFlag:
    """A flag ready to evaluate; see :meth:`evaluate`."""

    __slots__ = (
        "_copy_values",
        "_disabled",
        "_key_missing",
        "_no_match",
        "_rules",
        "flag",
        "key",
        "kind",
    )

    def __init__(self, flag: Flag) -> None:
        self.flag = flag
        self.key = flag.key
        self.kind: Kind = flag.kind
        # Objects are handed out as copies, so a caller that changes one changes its own.
        self._copy_values = self.kind == "object"
        default = flag.default_variant
        self._disabled = self._outcome(default, DISABLED)
        self._no_match = self._outcome(default, DEFAULT if flag.targeting else STATIC)
        self._key_missing = Evaluation(
            flag.variants[default],
            default,
            ERROR,
            flag.key,
            TARGETING_KEY_MISSING,
            f"flag {flag.key!r} splits users by their targeting key, and the context has none",
        )
        self._rules = tuple(self._rule(rule) for rule in flag.targeting)

    def _outcome(self, variant: str, reason: str) -> Evaluation:
        return Evaluation(self.flag.variants[variant], variant, reason, self.key)

    def _rule(self, rule: Rule) -> tuple[tuple[tuple[str, bool, _Test], ...], Any]:
        conditions = tuple((c.attribute, c.attribute == TARGETING_KEY, _test(c)) for c in rule.when)
        if rule.fractional is not None:
            outcomes = tuple(self._outcome(s.variant, SPLIT) for s in rule.fractional)
            return conditions, _Fractional(rule.fractional, outcomes)
        assert rule.variant is not None
        return conditions, self._outcome(rule.variant, TARGETING_MATCH)

    def evaluate(self, context: Mapping[str, Any], targeting_key: Any = None) -> Evaluation:
        """The variant this flag serves in ``context``. ``targeting_key``, when given,
        stands for the context's ``targetingKey``."""
        result = self._evaluate(context, targeting_key)
        if self._copy_values:
            return Evaluation(
                orjson.loads(orjson.dumps(result.value)),
                result.variant,
                result.reason,
                result.flag_key,
                result.error_code,
                result.error_message,
            )
        return result

    def _evaluate(self, context: Mapping[str, Any], targeting_key: Any) -> Evaluation:
        if not self.flag.enabled:
            return self._disabled
        if targeting_key is None:
            targeting_key = context.get(TARGETING_KEY)
        for conditions, outcome in self._rules:
            for attribute, is_key, test in conditions:
                value = targeting_key if is_key else context.get(attribute)
                if value is None or not test(value):
                    break
            else:
                if outcome.__class__ is Evaluation:
                    return outcome
                if targeting_key.__class__ is not str or not targeting_key:
                    return self._key_missing
                return outcome.pick(self.key, targeting_key)  # type: ignore[no-any-return]
        return self._no_match


def compile_flag(flag: Flag) -> CompiledFlag:
    """``flag`` ready to evaluate."""
    return CompiledFlag(flag)


def not_found(key: str, default: Any) -> Evaluation:
    """The caller's ``default`` for a flag that does not exist."""
    return Evaluation(default, None, ERROR, key, FLAG_NOT_FOUND, f"no flag {key!r}")


def type_mismatch(flag: CompiledFlag, default: Any, wanted: str | None = None) -> Evaluation:
    """The caller's ``default`` for a flag whose values are not of the kind asked for."""
    asked = wanted or kind_of(default) or type(default).__name__
    return Evaluation(
        default,
        None,
        ERROR,
        flag.key,
        TYPE_MISMATCH,
        f"flag {flag.key!r} serves a {flag.kind}, and a {asked} was asked for",
    )


#: The kind of a caller's default, by its exact type (the hot path's lookup; subclasses
#: fall back to :func:`kind_of`).
KIND_OF_TYPE: Final[dict[type, Kind]] = {
    bool: "boolean",
    str: "string",
    int: "number",
    float: "number",
    dict: "object",
    list: "object",
}


# -- conditions ----------------------------------------------------------------------------


def _test(condition: Condition) -> _Test:
    op = condition.op
    operand = condition.operand(op)
    make = _MAKERS[op]
    return make(operand)


def _is_number(value: Any) -> bool:
    return value.__class__ is not bool and isinstance(value, int | float)


def _same(expected: Any) -> _Test:
    if isinstance(expected, bool):
        return lambda value: value is expected
    if isinstance(expected, str):
        return lambda value: isinstance(value, str) and value == expected
    return lambda value: _is_number(value) and value == expected


def _equals(expected: Any) -> _Test:
    return _same(expected)


def _not_equals(expected: Any) -> _Test:
    same = _same(expected)
    return lambda value: not same(value)


def _member(values: tuple[Any, ...]) -> _Test:
    strings = frozenset(v for v in values if isinstance(v, str))
    booleans = frozenset(v for v in values if isinstance(v, bool))
    numbers = frozenset(v for v in values if _is_number(v))

    def test(value: Any) -> bool:
        if isinstance(value, str):
            return value in strings
        if isinstance(value, bool):
            return value in booleans
        return _is_number(value) and value in numbers

    return test


def _in(values: tuple[Any, ...]) -> _Test:
    return _member(values)


def _not_in(values: tuple[Any, ...]) -> _Test:
    member = _member(values)
    return lambda value: not member(value)


def _starts_with(prefix: str) -> _Test:
    return lambda value: isinstance(value, str) and value.startswith(prefix)


def _ends_with(suffix: str) -> _Test:
    return lambda value: isinstance(value, str) and value.endswith(suffix)


def _matches(pattern: str) -> _Test:
    search = re.compile(pattern).search
    return lambda value: isinstance(value, str) and search(value) is not None


def _lt(bound: float) -> _Test:
    return lambda value: _is_number(value) and value < bound


def _lte(bound: float) -> _Test:
    return lambda value: _is_number(value) and value <= bound


def _gt(bound: float) -> _Test:
    return lambda value: _is_number(value) and value > bound


def _gte(bound: float) -> _Test:
    return lambda value: _is_number(value) and value >= bound


_MAKERS: dict[str, Callable[[Any], _Test]] = {
    "equals": _equals,
    "not_equals": _not_equals,
    "in": _in,
    "not_in": _not_in,
    "starts_with": _starts_with,
    "ends_with": _ends_with,
    "matches": _matches,
    "lt": _lt,
    "lte": _lte,
    "gt": _gt,
    "gte": _gte,
}


__all__ = [
    "DEFAULT",
    "DISABLED",
    "ERROR",
    "FLAG_NOT_FOUND",
    "KIND_OF_TYPE",
    "SPLIT",
    "STATIC",
    "TARGETING_KEY_MISSING",
    "TARGETING_MATCH",
    "TYPE_MISMATCH",
    "CompiledFlag",
    "Evaluation",
    "bucket",
    "bucketing_hash",
    "compile_flag",
    "not_found",
    "type_mismatch",
]
