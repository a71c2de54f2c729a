"""CloudEvents 1.0: the envelope every event on the bus travels in.

:class:`CloudEvent` holds the context attributes (``id``, ``source``, ``specversion``,
``type``, ``subject``, ``time``, ``datacontenttype``, ``dataschema``), the ``data`` and the
extensions. hybridmesh uses three extensions: ``traceparent`` and ``tracestate`` (the W3C
distributed tracing extension) and ``partitionkey`` (events with the same key are handled in
order within a consumer group).

Three wire forms, as the CloudEvents JSON format and HTTP binding define them:

- structured mode: one JSON object (``application/cloudevents+json``);
- batch mode: a JSON array of such objects (``application/cloudevents-batch+json``);
- HTTP binary mode: attributes in ``ce-*`` headers, the data as the body.

Everything that decodes raises :class:`EventFormatError` naming the offending attribute.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.ids import uuid7
from hybridmesh.core.serialization import JSONNumberError, dumpb, loads, loads_input
from hybridmesh.events import limits
from hybridmesh.events.limits import shown

SPEC_VERSION = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
JSON_CONTENT_TYPE = "application/json"

#: Context attributes defined by the specification (everything else is an extension).
CONTEXT_ATTRIBUTES = frozenset(
    {"id", "source", "specversion", "type", "subject", "time", "datacontenttype", "dataschema"}
)
_REQUIRED = ("id", "source", "specversion", "type")
_STORED_KNOWN = CONTEXT_ATTRIBUTES | {"data", "data_base64"}
_DATA_MEMBERS = ("data", "data_base64")
_RESERVED = CONTEXT_ATTRIBUTES | frozenset(_DATA_MEMBERS)
#: The bus adds these to events that lack them, so they do not count towards the limit.
_TRACE_EXTENSIONS = ("traceparent", "tracestate")
#: (name, most characters, optional) of the attributes that are text.
_TEXT_ATTRIBUTES = (
    ("id", limits.MAX_ID, False),
    ("source", limits.MAX_SOURCE, False),
    ("subject", limits.MAX_SUBJECT, True),
    ("dataschema", limits.MAX_DATASCHEMA, True),
)
_COMMON_MEDIA_TYPES = frozenset({JSON_CONTENT_TYPE, "application/octet-stream", "text/plain"})
_forbidden = limits.FORBIDDEN.search
_event_type = limits.TYPE.fullmatch
_extension_name = limits.EXTENSION_NAME.fullmatch
#: At most this many problems are listed; the rest are counted in one more.
MAX_PROBLEMS = 100
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
#: Characters a ``ce-*`` header value may carry unencoded (printable ASCII but space, '"', '%').
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')

ExtensionValue = str | int | bool


class EventFormatError(ValidationError):
    """Input that is not a valid CloudEvent; each problem names the attribute.

    At most :data:`MAX_PROBLEMS` are listed (the last one counts the rest), so an answer
    about a huge input stays small."""

    def __init__(self, problems: Sequence[Problem] | str) -> None:
        if not isinstance(problems, str) and len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            problems = [*problems[:MAX_PROBLEMS], Problem(f"and {more} more problems")]
        super().__init__(problems)


def _problem(message: str, attribute: str | None = None, index: int | None = None) -> Problem:
    if index is None:
        return Problem(message, field=attribute)
    return Problem(message, field=f"[{index}].{attribute}" if attribute else f"[{index}]")


def _at(problem: Problem, index: int | None) -> Problem:
    """``problem`` located in the batch item ``index`` (unchanged when not in a batch)."""
    if index is None:
        return problem
    where = f"[{index}].{problem.field}" if problem.field else f"[{index}]"
    return replace(problem, field=where)


def _format_time(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    text = value.astimezone(UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def _parse_time(value: object) -> datetime:
    """An RFC 3339 timestamp; raises ``ValueError`` saying what is wrong."""
    if not isinstance(value, str):
        raise ValueError("must be a string (an RFC 3339 timestamp)")
    if len(value) > limits.MAX_TIME or not _TIME.fullmatch(value):
        raise ValueError(f"{shown(value)} is not an RFC 3339 timestamp")
    text = value.replace("z", "Z").replace("Z", "+00:00").replace("t", "T")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{shown(value)} is not a valid date and time") from None


def _is_json(content_type: str | None) -> bool:
    if content_type is None or content_type == JSON_CONTENT_TYPE:  # nearly every event
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json") or media == "text/json"


def _is_text(content_type: str | None) -> bool:
    return content_type is not None and content_type.strip().lower().startswith("text/")


def _time_problem(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        return "must be a datetime"
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        return "must be a time that converts to UTC within the years 1 to 9999"
    return None


def _quick_extension_value(value: object) -> str | None:
    if type(value) is str:
        if 0 < len(value) <= limits.MAX_EXTENSION_VALUE and not _forbidden(value):
            return None
    elif type(value) is bool:
        return None
    return limits.extension_value(value)


def _data_problems(data: Any, content_type: str | None) -> tuple[str | None, str | None]:
    """(what is wrong with ``datacontenttype``, with ``data``) given each other: the data
    must encode as the content type says, within :data:`limits.MAX_DATA_BYTES`."""
    if data is None:
        return None, None
    if isinstance(data, bytes):
        if content_type is not None and _is_json(content_type):
            return "bytes data needs a non-JSON datacontenttype", None
        size = len(data)
    elif _is_json(content_type):
        try:
            size = len(dumpb(data))
        except (TypeError, ValueError) as error:  # orjson's errors subclass TypeError
            return None, f"cannot be encoded as JSON: {shown(str(error), 80)}"
    elif isinstance(data, str):
        try:
            size = len(data.encode())
        except UnicodeEncodeError:
            return None, "is not valid Unicode (it holds a lone surrogate)"
    else:
        return None, "must be a string or bytes when datacontenttype is not JSON"
    if size > limits.MAX_DATA_BYTES:
        return None, f"is {size} bytes encoded; at most {limits.MAX_DATA_BYTES} (512 KiB)"
    return None, None


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One event. Construct with :meth:`create`, or directly when every attribute is known.

    ``data`` is any JSON value when ``datacontenttype`` is JSON (the default), ``bytes`` or
    (for ``text/*``) a string otherwise. ``time`` is a timezone-aware datetime. Extension
    names are 1 to 20 lower-case letters or digits; values are strings, integers or booleans.
    """

    type: str
    source: str
    id: str
    time: datetime | None = None
    subject: str | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    data: Any = None
    extensions: Mapping[str, ExtensionValue] = field(default_factory=dict)
    specversion: str = SPEC_VERSION
    #: Set once :meth:`validate` has passed, so an event is checked once on its way through
    #: the bus rather than at every layer. Not part of equality.
    _valid: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def create(
        cls,
        type: str,
        source: str,
        data: Any = None,
        *,
        id: str | None = None,
        subject: str | None = None,
        time: datetime | None = None,
        partition_key: str | None = None,
        datacontenttype: str | None = None,
        dataschema: str | None = None,
        extensions: Mapping[str, ExtensionValue] | None = None,
    ) -> CloudEvent:
        """A new event with a time-ordered id (UUID v7) and the current time; validated."""
        ext = dict(extensions or {})
        if partition_key is not None:
            ext["partitionkey"] = partition_key
        if datacontenttype is None and data is not None:
            datacontenttype = (
                "application/octet-stream" if isinstance(data, bytes) else JSON_CONTENT_TYPE
            )
        event = cls(
            type=type,
            source=source,
            id=id or uuid7(),
            time=time or datetime.now(UTC),
            subject=subject,
            datacontenttype=datacontenttype,
            dataschema=dataschema,
            data=data,
            extensions=ext,
        )
        event.validate()
        return event

    # -- accessors -------------------------------------------------------------------------

    @property
    def partition_key(self) -> str | None:
        """The ``partitionkey`` extension: events sharing it are handled in order."""
        value = self.extensions.get("partitionkey")
        return None if value is None else str(value)

    @property
    def traceparent(self) -> str | None:
        value = self.extensions.get("traceparent")
        return None if value is None else str(value)

    def with_extensions(self, **extensions: ExtensionValue | None) -> CloudEvent:
        """A copy with extensions set (a value of None removes one)."""
        merged = dict(self.extensions)
        for name, value in extensions.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        return replace(self, extensions=merged, _valid=False)

    def problems(self) -> list[Problem]:
        """Everything wrong with this event (empty when valid); the limits are those of
        :mod:`hybridmesh.events.limits`. Each check is a quick test first, and only an
        attribute that fails it is looked at again to say why: this runs on every event
        published."""
        found: list[Problem] = []
        for name, most, optional in _TEXT_ATTRIBUTES:
            value = getattr(self, name)
            if (value is None and optional) or (
                type(value) is str and 0 < len(value) <= most and not _forbidden(value)
            ):
                continue
            found.append(_problem(limits.free_text(value, most) or "is not valid", name))
        value = self.specversion
        if value != SPEC_VERSION:
            wrong = limits.free_text(value, 3) if type(value) is not str else None
            found.append(
                _problem(wrong or f"unsupported specversion {shown(value)}; use 1.0", "specversion")
            )
        value = self.type
        if not (type(value) is str and len(value) <= limits.MAX_TYPE and _event_type(value)):
            found.append(_problem(limits.event_type(value) or "is not valid", "type"))
        if self.time is not None and (
            type(self.time) is not datetime or self.time.tzinfo is not UTC
        ):
            wrong = _time_problem(self.time)
            if wrong is not None:
                found.append(_problem(wrong, "time"))
        value = self.datacontenttype
        if value is not None and (type(value) is not str or value not in _COMMON_MEDIA_TYPES):
            wrong = limits.media_type(value)
            if wrong is not None:
                found.append(_problem(wrong, "datacontenttype"))
        extensions = self.extensions
        if not isinstance(extensions, Mapping):
            found.append(_problem("extensions must be a mapping of names to values"))
            extensions = {}
        counted = len(extensions)
        if counted > limits.MAX_EXTENSIONS:  # then look closer: the trace ones are free
            counted -= sum(name in extensions for name in _TRACE_EXTENSIONS)
        if counted > limits.MAX_EXTENSIONS:
            found.append(
                _problem(
                    f"at most {limits.MAX_EXTENSIONS} extensions besides traceparent and "
                    f"tracestate (has {counted})"
                )
            )
        for name, value in extensions.items():
            if type(name) is str and _extension_name(name) and name not in _RESERVED:
                wrong = _quick_extension_value(value)
                if wrong is not None:
                    found.append(_problem(wrong, name))
            elif not isinstance(name, str):
                found.append(_problem(f"extension name {shown(name)} is not a string"))
            elif name in _RESERVED:
                found.append(_problem("an extension may not reuse a reserved name", name))
            else:
                found.append(
                    _problem(
                        "extension names are 1-20 lower-case letters or digits",
                        name if len(name) <= 40 else name[:40] + "…",
                    )
                )
        if found and any(p.field == "datacontenttype" for p in found):
            return found  # how to encode the data depends on it
        if self.data is not None:
            wrong_type, wrong_data = _data_problems(self.data, self.datacontenttype)
            if wrong_type is not None:
                found.append(_problem(wrong_type, "datacontenttype"))
            if wrong_data is not None:
                found.append(_problem(wrong_data, "data"))
        return found

    def validate(self) -> CloudEvent:
        """Return self, or raise :class:`EventFormatError` listing every problem."""
        if self._valid:
            return self
        found = self.problems()
        if found:
            raise EventFormatError(found)
        object.__setattr__(self, "_valid", True)
        return self

    # -- structured mode -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON-format object (structured mode)."""
        return self._json_object(native_time=False)

    def _json_object(self, *, native_time: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        if self.subject is not None:
            out["subject"] = self.subject
        time = self.time
        if time is not None:
            # The encoder writes an aware UTC datetime as RFC 3339 itself, faster.
            utc = native_time and time.tzinfo is UTC
            out["time"] = time if utc else _format_time(time)
        if self.datacontenttype is not None:
            out["datacontenttype"] = self.datacontenttype
        if self.dataschema is not None:
            out["dataschema"] = self.dataschema
        out.update(self.extensions)
        if isinstance(self.data, bytes):
            out["data_base64"] = base64.b64encode(self.data).decode("ascii")
        elif self.data is not None:
            if _is_json(self.datacontenttype):
                out["data"] = self.data
            else:
                out["data"] = str(self.data)
        return out

    def to_json(self) -> bytes:
        """Structured mode, encoded."""
        return dumpb(self._json_object(native_time=True), utc_z=True)

    @classmethod
    def from_dict(cls, obj: Any, *, index: int | None = None) -> CloudEvent:
        """Parse a JSON-format object; raises :class:`EventFormatError` listing every
        problem (within a batch, ``index`` locates them: ``[1].type``)."""
        if not isinstance(obj, Mapping):
            raise EventFormatError([_problem("a CloudEvent must be a JSON object", None, index)])
        # JSON format 2.2: a null value MUST be treated as if the member were absent.
        obj = {k: v for k, v in obj.items() if v is not None}
        missing = [name for name in _REQUIRED if name not in obj]
        problems = [Problem("required attribute is missing", field=name) for name in missing]
        time: datetime | None = None
        if "time" in obj:
            try:
                time = _parse_time(obj["time"])
            except ValueError as error:
                problems.append(Problem(str(error), field="time"))
        if "data" in obj and "data_base64" in obj:
            problems.append(Problem("has both data and data_base64", field="data"))
        data: Any = obj.get("data")
        if "data_base64" in obj:
            try:
                if not isinstance(obj["data_base64"], str):
                    raise ValueError("not a string")
                data = base64.b64decode(obj["data_base64"], validate=True)
            except ValueError:
                problems.append(Problem("is not a base64 string", field="data_base64"))
                data = None
        event = cls(
            type=obj.get("type"),  # problems() checks each type
            source=obj.get("source"),
            id=obj.get("id"),
            time=time,
            subject=obj.get("subject"),
            datacontenttype=obj.get("datacontenttype"),
            dataschema=obj.get("dataschema"),
            data=data,
            extensions={
                k: v
                for k, v in obj.items()
                if k not in CONTEXT_ATTRIBUTES and k not in _DATA_MEMBERS
            },
            specversion=obj.get("specversion"),
        )
        problems += [p for p in event.problems() if p.field not in missing]
        if problems:
            raise EventFormatError([_at(p, index) for p in problems])
        object.__setattr__(event, "_valid", True)
        return event

    @classmethod
    def from_json(cls, body: bytes | str) -> CloudEvent:
        """Parse structured mode; raises :class:`EventFormatError` for bad JSON too."""
        return cls.from_dict(_load_json(body))

    @classmethod
    def from_stored(cls, body: bytes | str) -> CloudEvent:
        """Parse an event that this library validated and wrote itself (a backend's log).

        Skips re-validating what :meth:`validate` already checked before the event was
        stored; anything unexpected falls back to :meth:`from_json`, which raises
        :class:`EventFormatError` for a body that is not a CloudEvent after all.
        """
        obj = _load_json(body)
        if not isinstance(obj, dict) or "data_base64" in obj or None in obj.values():
            return cls.from_json(body)
        try:
            extensions = {k: v for k, v in obj.items() if k not in _STORED_KNOWN}
            text = obj.get("time")
            event = cls(
                type=obj["type"],
                source=obj["source"],
                id=obj["id"],
                time=datetime.fromisoformat(text) if text is not None else None,
                subject=obj.get("subject"),
                datacontenttype=obj.get("datacontenttype"),
                dataschema=obj.get("dataschema"),
                data=obj.get("data"),
                extensions=extensions,
                specversion=obj["specversion"],
                _valid=True,
            )
        except (KeyError, TypeError, ValueError):
            return cls.from_json(body)
        return event

    # -- HTTP binary mode ------------------------------------------------------------------

    def to_binary(self) -> tuple[dict[str, str], bytes]:
        """HTTP binary mode: ``ce-*`` headers and the data as the body."""
        headers: dict[str, str] = {}
        for name, value in self.to_dict().items():
            if name in ("data", "data_base64", "datacontenttype"):
                continue
            text = str(value).lower() if isinstance(value, bool) else str(value)
            headers[f"ce-{name}"] = quote(text, safe=_HEADER_SAFE)
        if self.datacontenttype is not None:
            headers["Content-Type"] = self.datacontenttype
        elif isinstance(self.data, bytes):
            headers["Content-Type"] = "application/octet-stream"
        elif self.data is not None:
            headers["Content-Type"] = JSON_CONTENT_TYPE
        if self.data is None:
            body = b""
        elif isinstance(self.data, bytes):
            body = self.data
        elif _is_json(self.datacontenttype):
            body = dumpb(self.data)
        else:
            body = str(self.data).encode()
        return headers, body

    @classmethod
    def from_binary(cls, headers: Mapping[str, str], body: bytes) -> CloudEvent:
        """Parse HTTP binary mode (header names case-insensitive)."""
        attrs: dict[str, Any] = {}
        for key, value in headers.items():
            lower = key.lower()
            if lower[3:] in _DATA_MEMBERS and lower.startswith("ce-"):
                raise EventFormatError(
                    [_problem("in binary mode the data is the body, not a header", lower)]
                )
            if lower.startswith("ce-"):
                try:
                    attrs[lower[3:]] = unquote(value, errors="strict")
                except UnicodeDecodeError:
                    raise EventFormatError(
                        [_problem("header value is not percent-encoded UTF-8", lower[3:])]
                    ) from None
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        if content_type is not None:
            attrs["datacontenttype"] = content_type
        if body:
            if _is_json(content_type):
                try:
                    attrs["data"] = loads_input(body, "data")
                except JSONNumberError as error:
                    raise EventFormatError(_number_problems(error)) from None
                except ValueError as error:
                    raise EventFormatError(
                        [_problem(f"body is not JSON: {error}", "data")]
                    ) from None
            elif _is_text(content_type):
                try:
                    attrs["data"] = body.decode("utf-8")
                except UnicodeDecodeError:
                    attrs["data_base64"] = base64.b64encode(body).decode("ascii")
            else:
                attrs["data_base64"] = base64.b64encode(body).decode("ascii")
        return cls.from_dict(attrs)


def _load_json(body: bytes | str, *, outside: bool = False) -> Any:
    """``body`` parsed; ``outside`` for a body from a client, whose whole numbers beyond 64
    bits are refused by place (``data.n``, ``[1].data.n``) rather than read as floats."""
    try:
        return loads_input(body) if outside else loads(body)
    except JSONNumberError as error:
        raise EventFormatError(_number_problems(error)) from None
    except ValueError as error:
        raise EventFormatError([Problem(f"not valid JSON: {error}")]) from None


def _number_problems(error: JSONNumberError) -> list[Problem]:
    return [Problem(what, field=at or None) for at, what in error.problems]


def to_batch(events: Iterable[CloudEvent]) -> bytes:
    """Batch mode: a JSON array of structured events."""
    return dumpb([e.to_dict() for e in events])


def from_batch(body: bytes | str) -> list[CloudEvent]:
    """Parse batch mode; every bad event is reported, by index. An event whose source and
    id came earlier in the batch is an error too (``[2].id``): publishing it would store
    one of them, so the batch is refused rather than half-stored. A whole number beyond 64
    bits is refused by place (``[1].data.n``)."""
    items = _load_json(body, outside=True)
    if not isinstance(items, list):
        raise EventFormatError([Problem("a batch must be a JSON array of CloudEvents")])
    events: list[CloudEvent] = []
    problems: list[Problem] = []
    first: dict[tuple[str, str], int] = {}  # (source, id) -> the index it first came at
    for index, item in enumerate(items):
        try:
            event = CloudEvent.from_dict(item, index=index)
        except EventFormatError as error:
            problems.extend(error.problems)
            continue
        seen = first.setdefault((event.source, event.id), index)
        if seen != index:
            message = f"the same source and id as [{seen}]: a batch holds each event once"
            problems.append(_problem(message, "id", index))
        events.append(event)
    if problems:
        raise EventFormatError(problems)
    return events


def from_http(headers: Mapping[str, str], body: bytes) -> list[CloudEvent]:
    """Parse an HTTP request in any mode: structured, batch or binary (by Content-Type).
    A whole number beyond 64 bits in the JSON is refused by place (``data.n``): read as a
    float it would lose digits."""
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == STRUCTURED_CONTENT_TYPE:
        return [CloudEvent.from_dict(_load_json(body, outside=True))]
    if media == BATCH_CONTENT_TYPE:
        return from_batch(body)
    if any(k.lower().startswith("ce-") for k in headers):
        return [CloudEvent.from_binary(headers, body)]
    raise EventFormatError(
        [
            Problem(
                "not a CloudEvent: send application/cloudevents+json, "
                "application/cloudevents-batch+json, or binary mode with ce-* headers",
                field="content-type",
            )
        ]
    )


__all__ = [
    "BATCH_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "SPEC_VERSION",
    "STRUCTURED_CONTENT_TYPE",
    "CloudEvent",
    "EventFormatError",
    "from_batch",
    "from_http",
    "to_batch",
]
