"""The CloudEvents Kafka protocol binding: a :class:`CloudEvent` as a Kafka record and back.

Both content modes of the binding (Kafka Protocol Binding for CloudEvents 1.0) are written
and read; the Kafka binding has no batch mode.

**Binary mode** (the default): the data is the record value, as it is; every other attribute
is a header, its value the attribute's text in UTF-8 (not percent-encoded, unlike HTTP):

=================== ========================================================================
header              what it holds
=================== ========================================================================
``ce_specversion``  ``1.0``
``ce_id``           the attribute as it is; so are ``ce_source``, ``ce_type``,
                    ``ce_subject`` and ``ce_dataschema`` (the last two when present)
``ce_time``         RFC 3339 in UTC, ``2024-05-01T12:30:15.123456Z`` (when present)
``ce_<name>``       each extension, ``partitionkey`` included; an integer in decimal, a
                    boolean as ``true`` or ``false``
``content-type``    ``datacontenttype`` when present (never ``ce_datacontenttype``)
``hm_types``        only when needed, see below
=================== ========================================================================

The value is the data: JSON data (``datacontenttype`` absent, ``application/json``,
``*/*+json``) as compact JSON, a string as UTF-8, bytes as they are. An event without data has
no value (``None``: a tombstone in a compacted topic, as the binding says).

A header carries text and nothing says which type it was, so a receiver reads every
extension as a string and the data as the content type implies (JSON for JSON types, a
string for ``text/*``, bytes otherwise). Where that reading would not give the event back,
the record says so in one more header, ``hm_types``: comma-separated ``name=type`` pairs, an
integer or boolean extension as ``retries=int`` or ``replay=bool``, and data that is not of
the type its content type implies as ``data=text`` (a string under ``application/xml``, say)
or ``data=bytes`` (bytes under ``text/*`` or without a content type). Other CloudEvents
readers ignore the header and see the canonical strings, as the CloudEvents type system
intends; :func:`from_kafka` uses it to give back the very event that was sent.

**Structured mode**: ``content-type: application/cloudevents+json; charset=UTF-8`` and the
JSON event format as the value (:meth:`CloudEvent.to_json`; bytes data as ``data_base64``).
Every type is kept, so no ``hm_types`` is needed, and no ``ce_`` headers are written (the
binding allows them, but the SDK core API's ``from_kafka`` takes a record that has any for
binary mode).

**The key.** The binding's key mapper: the ``partitionkey`` extension, in UTF-8, is the
record key, and an event without one has the key ``None``. The mapper must not change the
event (binding 3.1), so in binary mode ``partitionkey`` travels as ``ce_partitionkey`` too, as
the SDK's core API writes it (its 1.x API leaves the header out and sends only the key). On
receipt the event's own ``partitionkey`` (its header, or its member in structured mode)
wins over the key; an event without one takes the key as its ``partitionkey``, as both SDK
APIs do, when the key can be one (UTF-8 text within the extension limits, and room for one
more extension). Any other key is not part of the event and is left alone: a topic keyed by
other means (binary keys, say) still reads. A caller that keys records otherwise and does
not want that passes ``key=None``.

**Reading** detects the mode, for each record, from its headers: a ``content-type`` starting
with ``application/cloudevents`` is structured mode (only the JSON format is read, and the
batch type is refused); otherwise a record with ``ce_`` headers is binary mode; a record with
neither a ``content-type`` nor ``ce_`` headers is read as structured JSON (the binding's
1.0 and 1.0.1 texts said so, Kafka before 0.11 having no headers; it is also what the SDK's
1.x API writes for an event without ``datacontenttype``). In binary mode an empty value is
no data under a JSON content type (no JSON text is empty) and empty data (``b""`` or ``""``)
under any other.

Everything that is not a valid CloudEvent within :mod:`hybridmesh.events.limits` raises
:class:`EventFormatError`, whose problems name the header (``ce_id``, ``content-type``), the
``value`` or the ``key`` in binary mode, and the JSON member in structured mode.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from hybridmesh.core.errors import Problem
from hybridmesh.core.serialization import JSONNumberError, dumpb, loads_input
from hybridmesh.events import limits
from hybridmesh.events.envelope import (
    BATCH_CONTENT_TYPE,
    CONTEXT_ATTRIBUTES,
    SPEC_VERSION,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    EventFormatError,
    ExtensionValue,
    _format_time,
    _is_json,
    _is_text,
    _parse_time,
)
from hybridmesh.events.limits import shown

Mode = Literal["binary", "structured"]

#: The prefix of the header of each attribute in binary mode.
CE_PREFIX = "ce_"
CONTENT_TYPE = "content-type"
#: The ``content-type`` of a structured-mode record.
STRUCTURED_RECORD_CONTENT_TYPE = f"{STRUCTURED_CONTENT_TYPE}; charset=UTF-8"
#: The header naming what binary mode's text cannot say itself (see the module docstring).
TYPES_HEADER = "hm_types"

_STRUCTURED_HEADERS = [(CONTENT_TYPE, STRUCTURED_RECORD_CONTENT_TYPE.encode())]
_SPEC_VERSION_HEADER = (f"{CE_PREFIX}specversion", SPEC_VERSION.encode())
_REQUIRED_HEADERS = tuple(f"{CE_PREFIX}{name}" for name in ("specversion", "id", "source", "type"))
_DATA_HEADERS = frozenset({f"{CE_PREFIX}data", f"{CE_PREFIX}data_base64"})
_TRACE_EXTENSIONS = ("traceparent", "tracestate")
_TRUE, _FALSE = b"true", b"false"


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """What a Kafka producer sends and a consumer receives: ``headers`` as aiokafka's
    ``send(headers=...)`` takes them and ``ConsumerRecord.headers`` gives them."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


# -- writing ---------------------------------------------------------------------------------


def to_kafka(event: CloudEvent, mode: Mode = "binary") -> KafkaRecord:
    """``event`` (validated first) as a Kafka record in ``mode``; raises
    :class:`EventFormatError` for an event that is not valid."""
    event.validate()
    key = event.partition_key
    record_key = None if key is None else key.encode()
    if mode == "binary":
        headers, value = _binary(event)
        return KafkaRecord(record_key, value, headers)
    if mode == "structured":
        return KafkaRecord(record_key, event.to_json(), list(_STRUCTURED_HEADERS))
    raise ValueError(f"mode must be 'binary' or 'structured', not {mode!r}")


def _binary(event: CloudEvent) -> tuple[list[tuple[str, bytes]], bytes | None]:
    headers = [
        _SPEC_VERSION_HEADER,
        ("ce_id", event.id.encode()),
        ("ce_source", event.source.encode()),
        ("ce_type", event.type.encode()),
    ]
    if event.time is not None:
        headers.append(("ce_time", _format_time(event.time).encode()))
    if event.subject is not None:
        headers.append(("ce_subject", event.subject.encode()))
    if event.dataschema is not None:
        headers.append(("ce_dataschema", event.dataschema.encode()))
    types: list[str] = []
    for name, extension in event.extensions.items():
        if isinstance(extension, str):
            headers.append((CE_PREFIX + name, extension.encode()))
        elif isinstance(extension, bool):
            headers.append((CE_PREFIX + name, _TRUE if extension else _FALSE))
            types.append(f"{name}=bool")
        else:  # an integer (an IntEnum's str() may be its name: int() first)
            headers.append((CE_PREFIX + name, str(int(extension)).encode()))
            types.append(f"{name}=int")
    content_type = event.datacontenttype
    if content_type is not None:
        headers.append((CONTENT_TYPE, content_type.encode()))
    value, data_type = _data_value(event.data, content_type)
    if data_type is not None:
        types.append(f"data={data_type}")
    if types:
        headers.append((TYPES_HEADER, ",".join(types).encode()))
    return headers, value


def _data_value(data: Any, content_type: str | None) -> tuple[bytes | None, str | None]:
    """The record value of ``data`` (valid under ``content_type``), with the ``hm_types``
    word for it when the content type alone would have it read as another type."""
    if data is None:
        return None, None
    if isinstance(data, bytes):
        return data, "bytes" if content_type is None or _is_text(content_type) else None
    if _is_json(content_type):
        return dumpb(data), None
    return data.encode(), None if _is_text(content_type) else "text"


# -- reading ---------------------------------------------------------------------------------


def from_kafka(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
) -> CloudEvent:
    """The CloudEvent a Kafka record holds, in either mode (detected from its headers).

    Raises :class:`EventFormatError`, naming the header, value or member at fault, for
    anything that is not a valid CloudEvent: missing ``ce_`` headers, a header that is not
    UTF-8, another specversion, a value that is not the JSON it should be, attributes beyond
    hybridmesh's limits, a batch. Nothing else, whatever the bytes."""
    content_type: str | None = None
    types: str | None = None
    attributes: list[tuple[str, bytes]] = []  # the ce_ headers, read in binary mode only
    for name, raw in headers:
        lower = name.lower()
        if lower[:3] == CE_PREFIX:
            attributes.append((lower, raw))
        elif lower == CONTENT_TYPE:
            if content_type is not None:
                raise _error("appears more than once", CONTENT_TYPE)
            content_type = _text(CONTENT_TYPE, raw)
        elif lower == TYPES_HEADER:
            if types is not None:
                raise _error("appears more than once", TYPES_HEADER)
            types = _text(TYPES_HEADER, raw)
    media = "" if content_type is None else content_type.split(";", 1)[0].strip().lower()
    if media.startswith("application/cloudevents"):
        if media == STRUCTURED_CONTENT_TYPE:
            return _from_structured(key, value)
        if media == BATCH_CONTENT_TYPE:
            raise _error("the Kafka binding has no batch mode: one event per record", CONTENT_TYPE)
        raise _error(
            f"event format {shown(media)} is not supported; use {STRUCTURED_CONTENT_TYPE}",
            CONTENT_TYPE,
        )
    if attributes:
        return _from_binary(key, value, attributes, content_type, types)
    if content_type is None:
        return _from_headerless(key, value)
    raise _error(
        f"content-type {shown(content_type)} without ce_ headers is not a CloudEvent: binary "
        "mode needs ce_specversion, ce_id, ce_source and ce_type headers, structured mode a "
        f"content-type of {STRUCTURED_CONTENT_TYPE}",
        CONTENT_TYPE,
    )


def _error(message: str, field: str | None = None) -> EventFormatError:
    return EventFormatError([Problem(message, field=field)])


def _text(header: str, raw: bytes) -> str:
    """A header's value as text; raises :class:`EventFormatError` naming it otherwise (a
    Kafka header may also have no value: ``None``)."""
    try:
        return raw.decode()
    except UnicodeDecodeError as error:
        raise _error(f"is not UTF-8 (a bad byte at {error.start})", header) from None
    except AttributeError:
        raise _error(f"must have a value (bytes), not {shown(raw)}", header) from None


def _from_structured(key: bytes | None, value: bytes | None) -> CloudEvent:
    if value is None:
        raise _error("structured mode needs the event as the record value; it has none", "value")
    try:
        obj = loads_input(value)
    except JSONNumberError as error:
        problems = [Problem(what, field=at or None) for at, what in error.problems]
        raise EventFormatError(problems) from None
    except ValueError as error:
        raise _error(f"is not JSON: {shown(str(error), 120)}", "value") from None
    if isinstance(obj, dict) and obj.get("partitionkey") is None:
        keyed = _key_text(key, obj.keys() - CONTEXT_ATTRIBUTES - {"data", "data_base64"})
        if keyed is not None:
            obj["partitionkey"] = keyed
    return CloudEvent.from_dict(obj)


def _from_headerless(key: bytes | None, value: bytes | None) -> CloudEvent:
    try:
        return _from_structured(key, value)
    except EventFormatError as error:
        why = Problem(
            "no content-type and no ce_ headers: the value was read as a structured-mode "
            "JSON event, and it is not one",
            field=CONTENT_TYPE,
        )
        raise EventFormatError([why, *error.problems]) from None


def _key_text(key: bytes | None, extensions: Iterable[str]) -> str | None:
    """The record key as the ``partitionkey`` of an event with ``extensions`` (their
    names) and none of its own, or None when it cannot be one."""
    if key is None:
        return None
    try:
        text = key.decode()
    except (UnicodeDecodeError, AttributeError):
        return None
    counted = sum(name not in _TRACE_EXTENSIONS for name in extensions)
    if limits.extension_value(text) is not None or counted >= limits.MAX_EXTENSIONS:
        return None
    return text


def _from_binary(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    content_type: str | None,
    types: str | None,
) -> CloudEvent:
    """The event of a binary-mode record; ``headers`` are its ``ce_`` ones, names in lower
    case."""
    attributes: dict[str, str] = {}
    for name, raw in headers:
        if name[3:] in attributes:
            raise _error("appears more than once", name)
        if name in _DATA_HEADERS:
            raise _error("in binary mode the data is the record value, not a header", name)
        attributes[name[3:]] = _text(name, raw)
    missing = [h for h in _REQUIRED_HEADERS if h[3:] not in attributes]
    if missing:
        raise EventFormatError([Problem("required header is missing", field=h) for h in missing])
    content_type = _datacontenttype(content_type, attributes.pop("datacontenttype", None))
    typed = _types(types, attributes)
    problems: list[Problem] = []
    time = _header_time(attributes.pop("time", None), problems)
    data = _data(value, content_type, typed.pop("data", None), problems)
    extensions = _extensions(attributes, typed, problems)
    if "partitionkey" not in extensions:
        keyed = _key_text(key, extensions)
        if keyed is not None:
            extensions["partitionkey"] = keyed
    event = CloudEvent(
        type=attributes["type"],
        source=attributes["source"],
        id=attributes["id"],
        time=time,
        subject=attributes.get("subject"),
        datacontenttype=content_type,
        dataschema=attributes.get("dataschema"),
        data=data,
        extensions=extensions,
        specversion=attributes["specversion"],
    )
    try:
        event.validate()
    except EventFormatError as error:
        problems.extend(_in_record(p) for p in error.problems)
    if problems:
        raise EventFormatError(problems)
    return event


def _datacontenttype(header: str | None, attribute: str | None) -> str | None:
    """``content-type`` is ``datacontenttype`` in binary mode; a ``ce_datacontenttype`` (some
    writers add one) is taken when it agrees or stands alone."""
    if attribute is None or header is None or attribute == header:
        return header if header is not None else attribute
    raise _error(
        f"says {shown(attribute)} but content-type says {shown(header)}", "ce_datacontenttype"
    )


def _types(types: str | None, attributes: Mapping[str, str]) -> dict[str, str]:
    """``hm_types`` as {name: type}; raises :class:`EventFormatError` when it is malformed."""
    if types is None:
        return {}
    typed: dict[str, str] = {}
    for pair in types.split(","):
        name, _, kind = pair.partition("=")
        expected = ("text", "bytes") if name == "data" else ("int", "bool")
        if kind not in expected or name in typed:
            raise _error(f"{shown(pair)} is not name=type once per name", TYPES_HEADER)
        if name != "data" and (name not in attributes or name in CONTEXT_ATTRIBUTES):
            raise _error(f"names {shown(name)}, which is no extension header", TYPES_HEADER)
        typed[name] = kind
    return typed


def _header_time(text: str | None, problems: list[Problem]) -> datetime | None:
    if text is None:
        return None
    try:
        return _parse_time(text)
    except ValueError as error:
        problems.append(Problem(str(error), field="ce_time"))
        return None


def _data(
    value: bytes | None, content_type: str | None, kind: str | None, problems: list[Problem]
) -> Any:
    """The data a binary-mode value holds, as ``kind`` (from ``hm_types``) or the content
    type says; a problem on ``value`` when it is not what they say."""
    if value is None:
        return None
    if kind == "bytes":
        return value
    if kind is None and _is_json(content_type):
        if not value:
            return None
        try:
            return loads_input(value, "value")
        except JSONNumberError as error:
            problems.extend(Problem(what, field=at) for at, what in error.problems)
        except ValueError as error:
            message = f"is not JSON, as content-type {shown(content_type or 'absent')} says"
            problems.append(Problem(f"{message}: {shown(str(error), 120)}", field="value"))
        return None
    if kind == "text" or _is_text(content_type):
        try:
            return value.decode()
        except UnicodeDecodeError:
            if kind == "text":
                problems.append(Problem("is not UTF-8 text, as hm_types says", field="value"))
                return None
    return value


def _integer(text: str) -> int | None:
    """A 32-bit integer in decimal (short enough for ``int`` to read at once)."""
    return int(text) if _INTEGER(text) else None


def _boolean(text: str) -> bool | None:
    return {"true": True, "false": False}.get(text)


_INTEGER = re.compile(r"-?[0-9]{1,10}").fullmatch
_DECODERS: dict[str, Callable[[str], ExtensionValue | None]] = {"int": _integer, "bool": _boolean}


def _extensions(
    attributes: Mapping[str, str], typed: Mapping[str, str], problems: list[Problem]
) -> dict[str, ExtensionValue]:
    extensions: dict[str, ExtensionValue] = {}
    for name, text in attributes.items():
        if name in CONTEXT_ATTRIBUTES:
            continue
        kind = typed.get(name)
        if kind is None:
            extensions[name] = text
            continue
        decoded = _DECODERS[kind](text)
        if decoded is None:
            what = "a 32-bit integer" if kind == "int" else "true or false"
            message = f"{shown(text)} is not {what}, as hm_types says"
            problems.append(Problem(message, field=CE_PREFIX + name))
            decoded = text
        extensions[name] = decoded
    return extensions


def _in_record(problem: Problem) -> Problem:
    """A problem of the event located in the record: ``ce_subject``, ``content-type``."""
    name = problem.field
    if name is None:
        return problem
    if name == "datacontenttype":
        where = CONTENT_TYPE
    elif name == "data":
        where = "value"
    else:
        where = CE_PREFIX + name
    return Problem(problem.message, field=where)


__all__ = ["KafkaRecord", "Mode", "from_kafka", "to_kafka"]
