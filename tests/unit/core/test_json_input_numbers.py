"""JSON from outside: a whole number beyond 64 bits is refused by place, never read as a
float that lost digits (what orjson makes of it); every other number reads as it is."""

from __future__ import annotations

import orjson
import pytest

from hybridmesh.core.serialization import (
    JSON_INT_MAX,
    JSON_INT_MIN,
    JSONNumberError,
    dumps,
    loads_input,
)

RANGE = "(-9223372036854775808 to 18446744073709551615)"


@pytest.mark.parametrize(
    ("text", "places"),
    [
        ('{"n": 18446744073709551616}', ["n"]),
        ('{"n": -9223372036854775809}', ["n"]),
        ('{"a": [1, {"b": 123456789012345678901234567890}]}', ["a[1].b"]),
        (f'{{"x": {"9" * 300}}}', ["x"]),
        ("[99999999999999999999, 1, -99999999999999999999]", ["[0]", "[2]"]),
        ("18446744073709551616", [""]),
    ],
)
def test_a_whole_number_beyond_64_bits_is_refused_naming_its_place(
    text: str, places: list[str]
) -> None:
    with pytest.raises(JSONNumberError) as refused:
        loads_input(text)

    assert [where for where, _ in refused.value.problems] == places
    assert all(RANGE in what for _, what in refused.value.problems)
    assert RANGE in str(refused.value)


def test_the_place_starts_where_the_caller_says() -> None:
    with pytest.raises(JSONNumberError) as refused:
        loads_input(b'{"amount": 18446744073709551616}', "data")

    assert [where for where, _ in refused.value.problems] == ["data.amount"]


def test_this_is_what_it_guards_against() -> None:
    # orjson reads such a number as a float: the digits it cannot hold are gone.
    assert orjson.loads("18446744073709551617") == float(2**64)


@pytest.mark.parametrize(
    "value",
    [
        {"top": JSON_INT_MAX, "bottom": JSON_INT_MIN},
        {"id": "123456789012345678901234567890", "note": "digits in text are text"},
        {"ratio": 1234567890123456789012.5, "tiny": 1e-30},
        [JSON_INT_MAX - 1, 0, -1, 9223372036854775807],
    ],
)
def test_every_other_number_reads_exactly_as_written(value: object) -> None:
    text = dumps(value)

    assert loads_input(text) == value
    assert loads_input(text.encode()) == value


def test_json_that_is_not_json_is_a_plain_value_error() -> None:
    with pytest.raises(ValueError) as refused:
        loads_input("{1: 2}")
    assert not isinstance(refused.value, JSONNumberError)
