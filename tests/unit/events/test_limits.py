"""The limits of every CloudEvent attribute: at the limit an event passes, past it the
error names the attribute, whichever way the event came in."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from hybridmesh.core.errors import ValidationError
from hybridmesh.events import limits
from hybridmesh.events.envelope import MAX_PROBLEMS, CloudEvent, EventFormatError, from_batch
from hybridmesh.events.subjects import validate_pattern, validate_subject

BASE: dict[str, Any] = {
    "specversion": "1.0",
    "id": "evt-1",
    "source": "/orders",
    "type": "order.created",
}


def _problems(call: Callable[[], object]) -> dict[str | None, str]:
    with pytest.raises(EventFormatError) as info:
        call()
    return {p.field: p.message for p in info.value.problems}


LONGEST_TYPE = "t" * 63 + "." + "t" * 64


# -- lengths -----------------------------------------------------------------------------

STRING_LIMITS = [
    ("id", limits.MAX_ID, "é"),
    ("source", limits.MAX_SOURCE, "s"),
    ("subject", limits.MAX_SUBJECT, "😀"),
    ("dataschema", limits.MAX_DATASCHEMA, "d"),
    ("type", limits.MAX_TYPE, "t"),
]


@pytest.mark.parametrize(("attribute", "most", "char"), STRING_LIMITS)
def test_a_string_attribute_at_its_limit_passes_and_one_more_is_refused(
    attribute: str, most: int, char: str
) -> None:
    at_limit = CloudEvent.from_dict({**BASE, attribute: char * most})
    assert getattr(at_limit, attribute) == char * most
    problems = _problems(lambda: CloudEvent.from_dict({**BASE, attribute: char * (most + 1)}))
    assert problems == {attribute: f"must be at most {most} characters (has {most + 1})"}


def test_a_dotted_type_at_the_limit_passes() -> None:
    assert len(LONGEST_TYPE) == limits.MAX_TYPE
    assert CloudEvent.create(LONGEST_TYPE, "/t").type == LONGEST_TYPE


def test_a_huge_type_is_refused_without_echoing_it() -> None:
    """The event that once reset the NATS connection: a 10,000-character type."""
    with pytest.raises(EventFormatError) as info:
        CloudEvent.from_dict({**BASE, "type": "a" * 10_000})
    assert [p.field for p in info.value.problems] == ["type"]
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    "bad",
    [
        "user registered",
        "user.*",
        "order.>",
        "user..registered",
        ".user",
        "user.",
        "user.registered\n",
        "user.\x00",
        "ünï.code",
        "user/registered",
        "user:registered",
    ],
)
def test_a_type_must_be_dotted_ascii_tokens(bad: str) -> None:
    problems = _problems(lambda: CloudEvent.from_dict({**BASE, "type": bad}))
    assert list(problems) == ["type"]
    assert "dot-separated tokens" in problems["type"]


@pytest.mark.parametrize("good", ["a", "order.payment-failed", "com.example.v1_0.Created"])
def test_types_of_letters_digits_dashes_and_underscores_pass(good: str) -> None:
    assert CloudEvent.from_dict({**BASE, "type": good}).type == good
    assert validate_subject(good) == good


def test_patterns_keep_the_same_rules_as_types() -> None:
    assert validate_pattern("order.*.payment-failed") == "order.*.payment-failed"
    with pytest.raises(ValidationError, match="tokens are ASCII"):
        validate_pattern("ünï.*")
    with pytest.raises(ValidationError, match="longer than 128"):
        validate_pattern("a." * 64 + ">")


@pytest.mark.parametrize("attribute", ["id", "source", "subject", "dataschema"])
@pytest.mark.parametrize("control", ["\x00", "\n", "\x7f", "\x85", "\ud800"])
def test_text_attributes_refuse_control_characters_and_lone_surrogates(
    attribute: str, control: str
) -> None:
    problems = _problems(lambda: CloudEvent.from_dict({**BASE, attribute: f"a{control}b"}))
    assert problems == {attribute: "may not contain control characters or lone surrogates"}


@pytest.mark.parametrize("attribute", ["id", "source", "subject", "dataschema"])
def test_text_attributes_take_any_other_unicode(attribute: str) -> None:
    value = 'ünï cödé "✓" 50% 😀'
    assert getattr(CloudEvent.from_dict({**BASE, attribute: value}), attribute) == value


# -- types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attribute",
    ["id", "source", "type", "specversion", "subject", "datacontenttype", "dataschema", "time"],
)
@pytest.mark.parametrize(
    ("value", "named"),
    [(5, "a number"), (1.0, "a number"), (True, "a boolean"), ([], "an array"), ({}, "an object")],
)
def test_a_string_attribute_of_another_json_type_must_be_a_string(
    attribute: str, value: Any, named: str
) -> None:
    problems = _problems(lambda: CloudEvent.from_dict({**BASE, attribute: value}))
    assert attribute in problems
    assert problems[attribute].startswith("must be a string")
    if attribute != "time":
        assert problems[attribute] == f"must be a string, not {named}"


@pytest.mark.parametrize("attribute", ["id", "source", "type", "specversion"])
def test_a_missing_required_attribute_says_missing_and_an_empty_one_says_empty(
    attribute: str,
) -> None:
    absent = {k: v for k, v in BASE.items() if k != attribute}
    assert _problems(lambda: CloudEvent.from_dict(absent)) == {
        attribute: "required attribute is missing"
    }
    problems = _problems(lambda: CloudEvent.from_dict({**BASE, attribute: ""}))
    assert attribute in problems
    if attribute != "specversion":
        assert problems[attribute] == "must not be empty"


def test_binary_mode_reports_the_same_problems() -> None:
    headers = {f"ce-{k}": v for k, v in BASE.items()}
    headers["ce-type"] = "x" * 200
    assert _problems(lambda: CloudEvent.from_binary(headers, b"")) == {
        "type": "must be at most 128 characters (has 200)"
    }


def test_binary_mode_takes_the_data_from_the_body_only() -> None:
    headers = {**{f"ce-{k}": v for k, v in BASE.items()}, "ce-data": "smuggled"}
    assert list(_problems(lambda: CloudEvent.from_binary(headers, b""))) == ["ce-data"]


# -- time --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T12:30:15Z\n",
        "2024-02-30T00:00:00Z",
        "2024-05-01T12:30:15." + "1" * 60 + "Z",
        "yesterday",
    ],
)
def test_time_must_be_an_rfc3339_timestamp(text: str) -> None:
    problems = _problems(lambda: CloudEvent.from_dict({**BASE, "time": text}))
    assert list(problems) == ["time"]
    assert len(problems["time"]) < 120


def test_a_time_that_cannot_convert_to_utc_is_refused() -> None:
    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    problems = _problems(lambda: CloudEvent.create("a.b", "/t", time=early))
    assert problems == {"time": "must be a time that converts to UTC within the years 1 to 9999"}
    assert CloudEvent.create("a.b", "/t", time=datetime(1, 1, 1, tzinfo=UTC)).time is not None


# -- datacontenttype ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "media",
    [
        "application/json",
        "text/plain; charset=utf-8",
        "text/plain;charset=UTF-8",
        "application/vnd.apache.thrift.binary",
        "application/cloudevents+json; charset=utf-8",
        'multipart/mixed; boundary="simple boundary"',
        "application/x-www-form-urlencoded",
    ],
)
def test_a_media_type_passes_as_datacontenttype(media: str) -> None:
    event = CloudEvent.from_dict({**BASE, "datacontenttype": media, "data": "x"})
    assert event.datacontenttype == media


@pytest.mark.parametrize(
    "media",
    [
        "json",
        "application/",
        "/json",
        "application/json/extra",
        "application json",
        "application/json;",
        "application/json; charset",
        "application/json; charset=ü",
        "text/plain\r\nX-Injected: 1",
        "application/jsön",
        "application/json ",
        "-bad/start",
        "a/" + "b" * 300,
    ],
)
def test_datacontenttype_must_be_a_media_type(media: str) -> None:
    problems = _problems(lambda: CloudEvent.from_dict({**BASE, "datacontenttype": media}))
    assert list(problems) == ["datacontenttype"]


def test_binary_mode_checks_the_content_type_as_datacontenttype() -> None:
    headers = {**{f"ce-{k}": v for k, v in BASE.items()}, "Content-Type": "not a media type"}
    assert list(_problems(lambda: CloudEvent.from_binary(headers, b"x"))) == ["datacontenttype"]


# -- extensions --------------------------------------------------------------------------


def test_at_most_32_extensions() -> None:
    ok = {**BASE, **{f"x{i}": i for i in range(limits.MAX_EXTENSIONS)}}
    assert len(CloudEvent.from_dict(ok).extensions) == limits.MAX_EXTENSIONS
    traced = {**ok, "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "tracestate": "a=b"}
    assert len(CloudEvent.from_dict(traced).extensions) == limits.MAX_EXTENSIONS + 2
    too_many = {**traced, "onemore": 1}
    assert _problems(lambda: CloudEvent.from_dict(too_many)) == {
        None: "at most 32 extensions besides traceparent and tracestate (has 33)"
    }


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (limits.MAX_INTEGER, True),
        (limits.MIN_INTEGER, True),
        (limits.MAX_INTEGER + 1, False),
        (limits.MIN_INTEGER - 1, False),
        (10**30, False),
        ("v" * limits.MAX_EXTENSION_VALUE, True),
        ("v" * (limits.MAX_EXTENSION_VALUE + 1), False),
        ("a\nb", False),
        (1.5, False),
        ([1], False),
    ],
)
def test_extension_values(value: Any, ok: bool) -> None:
    if ok:
        assert CloudEvent.from_dict({**BASE, "note": value}).extensions["note"] == value
    else:
        assert list(_problems(lambda: CloudEvent.from_dict({**BASE, "note": value}))) == ["note"]


def test_a_python_mapping_with_a_key_that_is_not_a_string_is_an_error_not_a_crash() -> None:
    problems = _problems(lambda: CloudEvent.from_dict({**BASE, 7: "seven"}))
    assert problems == {None: "extension name 7 is not a string"}


# -- data --------------------------------------------------------------------------------


def test_json_data_up_to_512_kib_encoded_passes() -> None:
    filler = "x" * (limits.MAX_DATA_BYTES - 2)  # the quotes make it exactly the limit
    assert CloudEvent.create("a.b", "/t", filler).data == filler
    problems = _problems(lambda: CloudEvent.create("a.b", "/t", filler + "x"))
    assert problems == {
        "data": f"is {limits.MAX_DATA_BYTES + 1} bytes encoded; at most 524288 (512 KiB)"
    }


def test_bytes_and_text_data_are_bounded_too() -> None:
    most = limits.MAX_DATA_BYTES
    assert CloudEvent.create("a.b", "/t", b"\x00" * most).data == b"\x00" * most
    assert list(_problems(lambda: CloudEvent.create("a.b", "/t", b"\x00" * (most + 1)))) == ["data"]
    text = "é" * (most // 2)  # two bytes each in UTF-8
    assert CloudEvent.create("a.b", "/t", text, datacontenttype="text/plain").data == text
    problems = _problems(
        lambda: CloudEvent.create("a.b", "/t", text + "x", datacontenttype="text/plain")
    )
    assert list(problems) == ["data"]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ({"n": 10**30}, None),
        ({"n": object()}, None),
        ("\ud800", None),
        ("\ud800", "text/plain"),
        (5, "text/plain"),
        ({"n": 1}, "application/xml"),
    ],
)
def test_data_that_cannot_be_encoded_is_an_error_at_validation(
    data: Any, content_type: str | None
) -> None:
    problems = _problems(lambda: CloudEvent.create("a.b", "/t", data, datacontenttype=content_type))
    assert list(problems) == ["data"]


# -- answers stay small ------------------------------------------------------------------


def test_at_most_100_problems_are_listed() -> None:
    batch = b"[" + b",".join([b"{}"] * 500) + b"]"
    with pytest.raises(EventFormatError) as info:
        from_batch(batch)
    problems = info.value.problems
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1].message == f"and {500 * 4 - MAX_PROBLEMS} more problems"


def test_an_idempotent_consumer_name_is_bounded() -> None:
    # The name is part of every receipt's key: it follows the one name rule, whose length
    # cap keeps the key within a PostgreSQL index entry whatever the event.
    from hybridmesh.core.names import MAX_NAME_LENGTH
    from hybridmesh.events.idempotency import IdempotentConsumer

    store: Any = object()
    assert IdempotentConsumer(store, "c" * MAX_NAME_LENGTH).name
    with pytest.raises(ValidationError, match="consumer"):
        IdempotentConsumer(store, "c" * (MAX_NAME_LENGTH + 1))


def test_a_batch_with_the_same_source_and_id_twice_is_refused_naming_the_later_index() -> None:
    again = {**BASE, "data": {"n": 2}}
    other = {**BASE, "id": "evt-2"}
    problems = _problems(lambda: from_batch(json.dumps([BASE, other, again, again])))
    message = "the same source and id as [0]: a batch holds each event once"
    assert problems == {"[2].id": message, "[3].id": message}
    same_id_other_source = {**BASE, "source": "/elsewhere"}
    assert len(from_batch(json.dumps([BASE, same_id_other_source]))) == 2
