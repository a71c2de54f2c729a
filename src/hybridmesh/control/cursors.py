"""The opaque cursors of the listings that page by position (executions, review items).

A position is where a row stands in a newest-first order: its ``created_at`` as stored
(epoch seconds; a datetime would round it) and its id. The cursor is that pair as JSON in
base64url without padding, so it is plain ASCII and fits any URL: the OpenAPI document says
so with :data:`CURSOR_PATTERN`, and a request whose cursor no page gave out is a 400.
"""

from __future__ import annotations

import base64
import binascii

import pydantic

from hybridmesh.core.serialization import dumps, loads

#: What a cursor looks like (base64url, no padding).
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"


def encode_cursor(created_at: float, key: str) -> str:
    """The cursor of the position (``created_at``, ``key``)."""
    raw = dumps([created_at, key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The position a cursor stands for; ``ValueError`` for anything no page gave out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, key = loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise ValueError("not a cursor this API gave out") from None
    if not isinstance(created_at, int | float) or not isinstance(key, str):
        raise ValueError("not a cursor this API gave out")
    return float(created_at), key


class PagedQuery(pydantic.BaseModel):
    """The query of a listing paged by cursor: its ``cursor`` (the ``next_cursor`` of the
    previous page), checked to be one a page gave out. Subclasses add the filters and
    ``limit``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    cursor: str | None = pydantic.Field(
        default=None,
        max_length=1_024,
        pattern=CURSOR_PATTERN,
        description="The `next_cursor` of the previous page.",
    )

    @pydantic.field_validator("cursor")
    @classmethod
    def _decodes(cls, cursor: str | None) -> str | None:
        if cursor is not None:
            decode_cursor(cursor)  # a 400 naming the field when no page gave it out
        return cursor


__all__ = ["CURSOR_PATTERN", "PagedQuery", "decode_cursor", "encode_cursor"]
