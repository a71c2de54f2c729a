"""Identifiers: request ids, idempotency keys, W3C trace ids."""

from __future__ import annotations

import hashlib
import os
import uuid


def new_id() -> str:
    """A new random id (32 lowercase hex characters)."""
    return uuid.uuid4().hex


def new_request_id() -> str:
    """A new ``X-Request-ID`` value: 32 random hex characters."""
    return os.urandom(16).hex()


def new_trace_id() -> str:
    """A W3C trace id: 32 hex characters, never all zeros."""
    return os.urandom(16).hex()


def new_span_id() -> str:
    """A W3C span id: 16 hex characters, never all zeros."""
    return os.urandom(8).hex()


def idempotency_key(*parts: str) -> str:
    """A stable key derived from ``parts`` (for example execution id and step id).

    The same parts always give the same key, so a retried or recovered command is recognised
    by its receiver as the same command.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return digest[:32]


__all__ = ["idempotency_key", "new_id", "new_request_id", "new_span_id", "new_trace_id"]
