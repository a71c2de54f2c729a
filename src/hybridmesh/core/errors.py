"""The one error hierarchy of hybridmesh.

Every error the library raises on purpose derives from :class:`HybridMeshError`::

    HybridMeshError
    ├── ConfigurationError          settings or wiring that cannot work
    │   └── InvalidSettingError     a malformed setting value (also a ValidationError)
    ├── ValidationError             bad input; carries :class:`Problem` items (file, line, field)
    ├── NotFoundError               a named thing does not exist
    │   └── UnknownServiceError     a service the registry does not know
    ├── StoreError                  the database refused or failed
    ├── ResilienceError             a guard stopped or gave up on a call
    │   ├── CircuitOpenError
    │   ├── RetriesExhaustedError   carries every attempt's error
    │   ├── CallTimeoutError
    │   ├── BulkheadFullError
    │   └── RateLimitedError
    └── TransportError              the remote side answered badly or not at all
        └── TransportNotConfiguredError

The CLI maps them to exit codes in one place (:func:`exit_code_for`): validation and usage
errors exit 2, everything else exits 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace


class HybridMeshError(Exception):
    """Base class of every error hybridmesh raises on purpose."""


class ConfigurationError(HybridMeshError):
    """Settings or wiring that cannot work, such as an unknown database URL scheme."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with some input, located as precisely as the input allows."""

    message: str
    file: str | None = None
    line: int | None = None
    field: str | None = None
    severity: str = "error"

    def location(self) -> str:
        """``file:line`` (or as much of it as is known)."""
        parts = [p for p in (self.file, str(self.line) if self.line else None) if p]
        return ":".join(parts)

    def __str__(self) -> str:
        where = self.location()
        fld = f" [{self.field}]" if self.field else ""
        prefix = f"{where}: " if where else ""
        return f"{prefix}{self.severity}{fld}: {self.message}"

    def detail(self) -> str:
        """``file:line: field: message``, without the severity word: for a message that
        embeds this problem after an "error:" of its own."""
        parts = [p for p in (self.location(), self.field) if p]
        return ": ".join([*parts, self.message])


class ValidationError(HybridMeshError):
    """Input that does not validate. ``problems`` lists each error with its location."""

    def __init__(self, problems: Sequence[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def reason(self) -> str:
        """Every problem on one line, without the severity words ``str()`` starts each with:
        what another error's message embeds, so that the CLI's "error:" is said once."""
        return "; ".join(p.detail() for p in self.problems)


class InvalidSettingError(ConfigurationError, ValidationError):
    """A setting whose value is malformed: a database URL that does not parse, a number that
    is not one. It is bad input as much as bad configuration, so the CLI exits 2 for it;
    :meth:`for_setting` names where the value came from (``--database-url``,
    ``HYBRIDMESH_DATABASE_URL``)."""

    def for_setting(self, setting: str) -> InvalidSettingError:
        """The same error, each problem naming ``setting`` as its field."""
        return InvalidSettingError([replace(p, field=setting) for p in self.problems])


class NotFoundError(HybridMeshError):
    """A named thing (service, execution, migration) does not exist."""


class UnknownServiceError(NotFoundError):
    """A service name that the registry does not know."""

    def __init__(self, service: str) -> None:
        self.service = service
        super().__init__(f"unknown service {service!r}: it is not in the registry")


class StoreError(HybridMeshError):
    """The store failed: connection refused, schema missing, constraint violated."""


class StoreUnavailableError(StoreError):
    """The database could not be reached, or the connection dropped during the statement
    (the server restarted, or terminated the session). A statement that was under way may
    or may not have taken effect; the next one gets a new connection."""


class ResilienceError(HybridMeshError):
    """A resilience guard refused a call or gave up on it."""


class CircuitOpenError(ResilienceError):
    """The target's circuit breaker is open; the call was not attempted."""

    def __init__(self, name: str, retry_after: float) -> None:
        self.name = name
        self.retry_after = retry_after
        super().__init__(f"circuit {name!r} is open; next trial call in {retry_after:.2f}s")


@dataclass(frozen=True)
class AttemptFailure:
    """What went wrong on one attempt of a retried call."""

    attempt: int
    error: BaseException
    delay_after: float | None = None

    def __str__(self) -> str:
        return f"attempt {self.attempt}: {type(self.error).__name__}: {self.error}"


class RetriesExhaustedError(ResilienceError):
    """Every attempt failed, or the retry deadline passed. ``attempts`` holds each failure."""

    def __init__(self, name: str, attempts: Sequence[AttemptFailure], reason: str = "") -> None:
        self.name = name
        self.attempts: list[AttemptFailure] = list(attempts)
        why = f" ({reason})" if reason else ""
        last = f"; last: {self.attempts[-1]}" if self.attempts else ""
        super().__init__(f"{name}: gave up after {len(self.attempts)} attempt(s){why}{last}")

    @property
    def last_error(self) -> BaseException | None:
        return self.attempts[-1].error if self.attempts else None


class CallTimeoutError(ResilienceError):
    """One attempt took longer than its timeout."""

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(f"{name}: no answer within {timeout:g}s")


class BulkheadFullError(ResilienceError):
    """Too many concurrent calls to one target, and no slot freed within the wait."""

    def __init__(self, name: str, max_concurrent: int, max_wait: float) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_wait = max_wait
        super().__init__(
            f"bulkhead {name!r} full: {max_concurrent} calls in flight, "
            f"no slot within {max_wait:g}s"
        )


class RateLimitedError(ResilienceError):
    """The local rate limiter has no token for this call within its wait."""

    def __init__(self, name: str, rate: float, retry_after: float) -> None:
        self.name = name
        self.rate = rate
        self.retry_after = retry_after
        super().__init__(f"rate limit {name!r} ({rate:g}/s) reached; retry in {retry_after:.2f}s")


@dataclass
class TransportError(HybridMeshError):
    """The remote side answered with an error status, or the connection failed.

    ``status`` is None when no HTTP answer came back (connection refused, reset).
    """

    message: str
    target: str = ""
    pattern: str = ""
    status: int | None = None
    body: str = ""
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        status = f" status {self.status}" if self.status is not None else ""
        body = f": {self.body[:200]}" if self.body else ""
        what = self.pattern or "transport"
        return f"{what} call to {self.target or '?'} failed{status}: {self.message}{body}"

    @property
    def is_client_error(self) -> bool:
        """A 4xx answer other than 408 and 429: the request itself is wrong; never retried."""
        return (
            self.status is not None and 400 <= self.status < 500 and self.status not in (408, 429)
        )


class TransportNotConfiguredError(TransportError):
    """A strategy needs a transport (events, batch, …) that this client does not have."""

    def __init__(self, pattern: str, target: str = "") -> None:
        super().__init__(
            message=f"no {pattern!r} transport is configured on this client",
            target=target,
            pattern=pattern,
        )


def exit_code_for(error: BaseException) -> int:
    """The CLI exit code for an error: 2 for bad input, 1 for failures at run time."""
    return 2 if isinstance(error, ValidationError) else 1


__all__ = [
    "AttemptFailure",
    "BulkheadFullError",
    "CallTimeoutError",
    "CircuitOpenError",
    "ConfigurationError",
    "HybridMeshError",
    "InvalidSettingError",
    "NotFoundError",
    "Problem",
    "RateLimitedError",
    "ResilienceError",
    "RetriesExhaustedError",
    "StoreError",
    "StoreUnavailableError",
    "TransportError",
    "TransportNotConfiguredError",
    "UnknownServiceError",
    "ValidationError",
    "exit_code_for",
]
