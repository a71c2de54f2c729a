"""The limits every CloudEvent on the bus keeps, the same on every backend.

An event that passes :meth:`~hybridmesh.events.envelope.CloudEvent.validate` can be carried
by every backend, so a backend never meets an event it cannot store. The limits come from
what the backends can take:

- **NATS JetStream** puts the type in the subject (``<prefix>.ev.<origin>.<partition>.<type>``):
  its tokens may not hold whitespace, ``.``, ``*``, ``>`` or control characters, and the
  server refuses (and drops the connection on) a protocol line over 4 KiB. The whole
  message, headers included, must fit the server's ``max_payload`` (1 MB by default).
- **Kafka** (a later backend) names topics with at most 249 characters of
  ``[a-zA-Z0-9._-]``, and takes messages of about 1 MB by default.
- **The SQL log** indexes ``(source, id)`` and idempotent consumers key their receipts on
  ``(consumer, source, id)``: PostgreSQL refuses a B-tree index entry over about 2.7 kB.

So (lengths count characters; "text" means any characters but control characters
(C0, DEL, C1) and lone surrogates):

=================== =====================================================================
attribute           limit
=================== =====================================================================
``id``              text, 1-256 characters
``source``          text, 1-256 characters (a URI reference)
``specversion``     ``"1.0"``
``type``            1-128 characters: tokens of ASCII letters, digits, ``-`` and ``_``
                    joined by single dots (``order.payment-failed``); a Kafka topic
                    ``<prefix>.<type>`` stays within 249 characters for a prefix of up
                    to 64
``subject``         text, 1-1024 characters
``time``            RFC 3339 (at most 64 characters as text), within the years 1-9999 in
                    UTC
``datacontenttype`` a media type, at most 256 characters: RFC 6838 ``type/subtype``, then
                    ``; name=value`` parameters (the value a token or a quoted string)
``dataschema``      text, 1-1024 characters (a URI)
extensions          at most 32 besides ``traceparent`` and ``tracestate`` (which the bus
                    adds); names 1-20 lower-case letters or digits; values text of
                    at most 1024 characters, integers from -2**31 to 2**31-1 (the
                    CloudEvents Integer), or booleans
``data``            at most 512 KiB encoded: the JSON text of JSON data, the UTF-8 of a
                    string, or the bytes themselves (base64 in structured mode, a third
                    more)
=================== =====================================================================

With these, the largest event is about 850 kB as structured JSON, which fits NATS's and
Kafka's default message sizes with room for a dead letter's headers, and ``source`` and
``id`` take at most 2 kB of an index entry, leaving room for an idempotent consumer's name
(a name, at most 63 characters).
"""

from __future__ import annotations

import re

#: Most characters of each string attribute.
MAX_ID = 256
MAX_SOURCE = 256
MAX_TYPE = 128
MAX_SUBJECT = 1024
MAX_TIME = 64
MAX_DATACONTENTTYPE = 256
MAX_DATASCHEMA = 1024
#: Most extensions on one event (besides traceparent and tracestate, which the bus adds),
#: and characters of a string extension value.
MAX_EXTENSIONS = 32
MAX_EXTENSION_VALUE = 1024
#: The CloudEvents Integer: a signed 32-bit number.
MIN_INTEGER = -(2**31)
MAX_INTEGER = 2**31 - 1
#: Most bytes of ``data`` once encoded (512 KiB).
MAX_DATA_BYTES = 512 * 1024

#: Control characters (C0, DEL, C1) and lone surrogates, which no string attribute may hold.
FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
#: One token of an event type (and of a subscription pattern, besides its wildcards).
TYPE_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
#: An event type: tokens joined by single dots.
TYPE = re.compile(rf"{TYPE_TOKEN.pattern}(?:\.{TYPE_TOKEN.pattern})*")
EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
# RFC 6838 restricted-name for type, subtype and parameter names; a parameter value is an
# RFC 9110 token or quoted-string.
_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_QUOTED = r'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e]|\\[\t\x20-\x7e])*"'
_MEDIATYPE = re.compile(rf"{_NAME}/{_NAME}(?:[ \t]*;[ \t]*{_NAME}=(?:{_TOKEN}|{_QUOTED}))*")


def _length(value: str, most: int) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > most:
        return f"must be at most {most} characters (has {len(value)})"
    return None


def free_text(value: object, most: int) -> str | None:
    """What is wrong with a text attribute: a string of 1 to ``most`` characters, none of
    them a control character or a lone surrogate. None when nothing is."""
    if not isinstance(value, str):
        return f"must be a string, not {_json_type(value)}"
    wrong = _length(value, most)
    if wrong is None and FORBIDDEN.search(value):
        return "may not contain control characters or lone surrogates"
    return wrong


def event_type(value: object) -> str | None:
    """What is wrong with an event type: dot-separated tokens of ASCII letters, digits,
    ``-`` and ``_``, at most :data:`MAX_TYPE` characters."""
    if not isinstance(value, str):
        return f"must be a string, not {_json_type(value)}"
    wrong = _length(value, MAX_TYPE)
    if wrong is None and not TYPE.fullmatch(value):
        return (
            "must be dot-separated tokens of ASCII letters, digits, '-' and '_' "
            "(such as order.created): no spaces, wildcards or empty tokens"
        )
    return wrong


def media_type(value: object) -> str | None:
    """What is wrong with a media type: ``type/subtype`` with optional ``; name=value``
    parameters, at most :data:`MAX_DATACONTENTTYPE` characters."""
    if not isinstance(value, str):
        return f"must be a string, not {_json_type(value)}"
    wrong = _length(value, MAX_DATACONTENTTYPE)
    if wrong is None and not _MEDIATYPE.fullmatch(value):
        return "must be a media type such as application/json or text/plain; charset=utf-8"
    return wrong


def extension_value(value: object) -> str | None:
    """An extension value: a string, a 32-bit integer or a boolean."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if MIN_INTEGER <= value <= MAX_INTEGER:
            return None
        return f"integers must be from {MIN_INTEGER} to {MAX_INTEGER}"
    if isinstance(value, str):
        return free_text(value, MAX_EXTENSION_VALUE)
    return f"must be a string, an integer or a boolean, not {_json_type(value)}"


def _json_type(value: object) -> str:
    """How a value's type is named in messages: as JSON names it where it is JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def shown(value: object, most: int = 40) -> str:
    """``value`` for an error message: its repr, cut to about ``most`` characters, so an
    answer never echoes a huge input back."""
    text = repr(value[: most + 1] if isinstance(value, str) else value)
    return text if len(text) <= most else text[:most] + "…"


__all__ = [
    "EXTENSION_NAME",
    "FORBIDDEN",
    "MAX_DATACONTENTTYPE",
    "MAX_DATASCHEMA",
    "MAX_DATA_BYTES",
    "MAX_EXTENSIONS",
    "MAX_EXTENSION_VALUE",
    "MAX_ID",
    "MAX_INTEGER",
    "MAX_SOURCE",
    "MAX_SUBJECT",
    "MAX_TIME",
    "MAX_TYPE",
    "MIN_INTEGER",
    "TYPE",
    "TYPE_TOKEN",
    "event_type",
    "extension_value",
    "free_text",
    "media_type",
    "shown",
]
