"""The function registry: serverless functions by name, run in-process or over HTTP.

A function is either a Python callable run in this process, or an HTTP endpoint that takes a
JSON POST (OpenFaaS and Knative style). :meth:`FunctionRegistry.invoke` runs either kind the
same way: under a timeout, within the function's concurrency limit, in a span, and with its
errors typed so that callers (the workflow engine, event and cron triggers) can decide
whether to retry:

- an unknown name raises :class:`FunctionNotFoundError` (a ``NotFoundError``);
- no answer within the timeout raises :class:`~hybridmesh.core.errors.CallTimeoutError`
  (retryable); the timeout covers the wait for a free slot as well as the run;
- a Python function that raises gives :class:`FunctionFailedError`, whose ``retryable``
  follows :func:`is_retryable_failure`;
- an HTTP function that answers outside 2xx raises
  :class:`~hybridmesh.core.errors.TransportError` with the status (4xx other than 408 and 429
  is the caller's mistake: ``is_client_error``); no answer at all raises it with
  ``status=None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from opentelemetry.trace import SpanKind

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import (
    CallTimeoutError,
    ConfigurationError,
    HybridMeshError,
    NotFoundError,
    Problem,
    TransportError,
    ValidationError,
)
from hybridmesh.core.ids import new_id, new_request_id
from hybridmesh.core.names import FUNCTION_NAME, function_name_problem
from hybridmesh.functions.http import FUNCTION_PATTERN, post_function
from hybridmesh.observability import (
    MeshMetrics,
    bind_context,
    current_context,
    current_request_id,
    get_logger,
    inject_headers,
    start_call_span,
)
from hybridmesh.resilience.guards import with_timeout
from hybridmesh.transports._http import HttpSession

log = get_logger("hybridmesh.functions")

#: A function name (:data:`hybridmesh.core.names.FUNCTION_NAME`): lower-case letters,
#: digits, ``-``, ``_`` and ``.``, starting with a letter or digit; at most 128 characters.
NAME_PATTERN = FUNCTION_NAME
#: Threads shared by the synchronous Python functions of one registry.
MAX_THREADS = 64

FunctionHandler = Callable[["FunctionCall"], Any]
F = TypeVar("F", bound=FunctionHandler)


class FunctionNotFoundError(NotFoundError):
    """No function is registered under ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown function {name!r}: it is not registered")


class FunctionFailedError(HybridMeshError):
    """A Python function raised. ``error`` is the original error's text, ``error_type`` its
    class name; the original is also the ``__cause__``. ``retryable`` says whether running
    the function again could succeed (see :func:`is_retryable_failure`)."""

    def __init__(
        self, function: str, error: str, *, error_type: str = "", retryable: bool = True
    ) -> None:
        self.function = function
        self.error = error
        self.error_type = error_type
        self.retryable = retryable
        kind = f"{error_type}: " if error_type else ""
        super().__init__(f"function {function!r} failed: {kind}{error}")

    @classmethod
    def from_exception(cls, function: str, error: BaseException) -> FunctionFailedError:
        return cls(
            function,
            str(error),
            error_type=type(error).__name__,
            retryable=is_retryable_failure(error),
        )


def is_retryable_failure(error: BaseException) -> bool:
    """Whether a function that raised ``error`` could succeed if run again.

    - An error with a boolean ``retryable`` attribute decides for itself.
    - Bad input is not retryable: ``ValidationError``, ``ValueError``, ``TypeError`` and
      ``KeyError`` (a missing payload field).
    - A ``TransportError`` from a call the function made is retryable unless it is a client
      error (4xx other than 408 and 429).
    - Anything else is retryable: the cause may be transient.
    """
    flag = getattr(error, "retryable", None)
    if isinstance(flag, bool):
        return flag
    if isinstance(error, TransportError):
        return not error.is_client_error
    return not isinstance(error, ValidationError | ValueError | TypeError | KeyError)


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """What a Python function receives: its name, the payload, and the invocation's ids.

    ``idempotency_key`` is the caller's (the same for retries of one logical call) or a fresh
    one; ``traceparent`` is the invocation span's W3C trace context, for calls the function
    makes; ``timeout`` is the seconds the caller waits.
    """

    name: str
    payload: Any
    idempotency_key: str
    request_id: str
    traceparent: str
    timeout: float


@dataclass(frozen=True)
class FunctionDefinition:
    """A registered function. ``kind`` is ``python`` (``handler`` is set) or ``http``
    (``url`` and ``headers`` are set)."""

    name: str
    kind: Literal["python", "http"]
    timeout: float = 30.0
    concurrency: int = 10
    handler: FunctionHandler | None = field(default=None, repr=False)
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass
class _Entry:
    definition: FunctionDefinition
    slots: asyncio.Semaphore
    is_async: bool = False
    in_flight: int = 0


class FunctionRegistry:
    """Serverless functions by name, and the one way to invoke them.

    ``clock`` measures durations for metrics; timeouts run on the event loop's clock, since
    they bound real waiting. ``http`` is the session HTTP functions are called through (one
    of the registry's own, closed by :meth:`close`, when not given).
    """

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        http: HttpSession | None = None,
        metrics: MeshMetrics | None = None,
    ) -> None:
        self.clock = clock
        self.metrics = metrics or MeshMetrics.default()
        self._http = http or HttpSession()
        self._owns_http = http is None
        self._entries: dict[str, _Entry] = {}
        self._executor: ThreadPoolExecutor | None = None

    # -- registration ----------------------------------------------------------------------

    def register(
        self, name: str, fn: FunctionHandler, *, timeout: float = 30.0, concurrency: int = 10
    ) -> FunctionDefinition:
        """Register a Python function taking one :class:`FunctionCall`, sync or async.

        A sync function runs in a worker thread, so it never blocks the event loop; a thread
        cannot be stopped, so one that outlives its timeout keeps its concurrency slot until
        it returns. Raises ``ValidationError`` for a bad name, timeout or limit and
        ``ConfigurationError`` when the name is taken.
        """
        if not callable(fn):
            raise ValidationError([Problem(f"function {name!r}: not callable", field="fn")])
        definition = FunctionDefinition(
            _check_name(name),
            "python",
            _check_timeout(name, timeout),
            _check_concurrency(name, concurrency),
            handler=fn,
        )
        self._add(definition, is_async=_is_async(fn))
        return definition

    def function(
        self, name: str | None = None, *, timeout: float = 30.0, concurrency: int = 10
    ) -> Callable[[F], F]:
        """Decorator form of :meth:`register`; the name defaults to the function's name."""

        def decorate(fn: F) -> F:
            self.register(name or fn.__name__, fn, timeout=timeout, concurrency=concurrency)
            return fn

        return decorate

    def register_http(
        self,
        name: str,
        url: str,
        *,
        timeout: float = 30.0,
        concurrency: int = 10,
        headers: Mapping[str, str] | None = None,
    ) -> FunctionDefinition:
        """Register an HTTP function: invoking it POSTs the payload as JSON to ``url``.

        The request carries ``headers`` (authentication, say) and then ``Content-Type:
        application/json``, ``Idempotency-Key``, ``X-Request-ID`` and ``traceparent``. The
        answer is returned parsed when it is JSON, as text otherwise (``None`` when empty).
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValidationError(
                [Problem(f"function {name!r}: url {url!r} is not an http(s) URL", field="url")]
            )
        definition = FunctionDefinition(
            _check_name(name),
            "http",
            _check_timeout(name, timeout),
            _check_concurrency(name, concurrency),
            url=url,
            headers=MappingProxyType(dict(headers or {})),
        )
        self._add(definition)
        return definition

    def _add(self, definition: FunctionDefinition, *, is_async: bool = False) -> None:
        if definition.name in self._entries:
            raise ConfigurationError(f"function {definition.name!r} is already registered")
        slots = asyncio.Semaphore(definition.concurrency)
        self._entries[definition.name] = _Entry(definition, slots, is_async)

    # -- lookup ----------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str) -> FunctionDefinition:
        """The definition of ``name``; raises :class:`FunctionNotFoundError`."""
        return self._entry(name).definition

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def in_flight(self, name: str) -> int:
        """How many invocations of ``name`` hold a slot now (running, or a thread still
        finishing after its caller timed out)."""
        return self._entry(name).in_flight

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise FunctionNotFoundError(name)
        return entry

    # -- invocation ------------------------------------------------------------------------

    async def invoke(
        self,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the caller's bound, with its own error
    ) -> Any:
        """Run function ``name`` on ``payload`` and return what it returns.

        At most ``concurrency`` invocations of one function run at once; more wait in line
        for a slot, and that wait counts against ``timeout`` (the function's own when None).
        Without an ``idempotency_key`` each invocation gets a fresh one; pass the same key on
        retries so the function can recognise them.

        Raises :class:`FunctionNotFoundError`, ``CallTimeoutError`` (also when no slot freed
        in time), :class:`FunctionFailedError` (a Python function raised) or
        ``TransportError`` (an HTTP function answered outside 2xx, or not at all).
        """
        entry = self._entry(name)
        definition = entry.definition
        limit = definition.timeout if timeout is None else _check_timeout(name, timeout)
        request_id = current_request_id() or new_request_id()
        source = current_context().source_service or "functions"
        started = self.clock.monotonic()
        outcome = "error"
        with (
            bind_context(request_id=request_id),
            start_call_span(
                f"invoke {name}",
                attributes={
                    "faas.invoked_name": name,
                    "hybridmesh.function.kind": definition.kind,
                },
                kind=SpanKind.CLIENT if definition.kind == "http" else SpanKind.INTERNAL,
            ) as span,
        ):
            trace: dict[str, str] = {}
            inject_headers(trace, span)
            call = FunctionCall(
                name=name,
                payload=payload,
                idempotency_key=idempotency_key or new_id(),
                request_id=request_id,
                traceparent=trace["traceparent"],
                timeout=limit,
            )
            try:
                result = await with_timeout(self._run(entry, call, trace), limit, name)
                outcome = "success"
                return result
            except CallTimeoutError:
                outcome = "timeout"
                raise
            finally:
                self.metrics.observe_call(
                    source, name, FUNCTION_PATTERN, outcome, self.clock.monotonic() - started
                )

    async def _run(self, entry: _Entry, call: FunctionCall, trace: dict[str, str]) -> Any:
        await entry.slots.acquire()
        entry.in_flight += 1
        released_later = False
        try:
            definition = entry.definition
            if definition.kind == "http":
                assert definition.url is not None  # an http function always has one
                return await post_function(
                    self._http.get(),
                    definition.name,
                    definition.url,
                    call.payload,
                    _http_headers(definition, call, trace),
                )
            handler = definition.handler
            assert handler is not None  # a python function always has one
            if entry.is_async:
                try:
                    return await handler(call)
                except Exception as error:
                    raise FunctionFailedError.from_exception(call.name, error) from error
            # The slot is handed to the thread: freed when it returns, not when we stop
            # waiting for it.
            done = self._threads().submit(contextvars.copy_context().run, handler, call)
            done.add_done_callback(_free_from_thread(asyncio.get_running_loop(), entry))
            released_later = True
            try:
                return await asyncio.wrap_future(done)
            except Exception as error:
                raise FunctionFailedError.from_exception(call.name, error) from error
        finally:
            if not released_later:
                _free(entry)

    def _threads(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="hybridmesh-fn")
        return self._executor

    async def close(self) -> None:
        """Close the HTTP session (when the registry made it) and let worker threads go.
        Threads still running are not waited for. Invoking again afterwards works."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._owns_http:
            await self._http.close()


def _free(entry: _Entry) -> None:
    entry.in_flight -= 1
    entry.slots.release()


def _free_from_thread(
    loop: asyncio.AbstractEventLoop, entry: _Entry
) -> Callable[[Future[Any]], None]:
    def on_done(_: Future[Any]) -> None:
        # A closed loop raises RuntimeError: nobody is left waiting for the slot.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_free, entry)

    return on_done


def _http_headers(
    definition: FunctionDefinition, call: FunctionCall, trace: Mapping[str, str]
) -> dict[str, str]:
    return {
        **definition.headers,
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Idempotency-Key": call.idempotency_key,
        "X-Request-ID": call.request_id,
        **trace,
    }


def _is_async(fn: Callable[..., Any]) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _check_name(name: str) -> str:
    problem = function_name_problem(name)
    if problem is not None:
        raise ValidationError([Problem(problem, field="name")])
    return name


def _check_timeout(name: str, timeout: float) -> float:
    if not timeout > 0:
        raise ValidationError(
            [Problem(f"function {name!r}: timeout must be above 0, got {timeout}", field="timeout")]
        )
    return float(timeout)


def _check_concurrency(name: str, concurrency: int) -> int:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValidationError(
            [
                Problem(
                    f"function {name!r}: concurrency must be a whole number of at least 1, "
                    f"got {concurrency!r}",
                    field="concurrency",
                )
            ]
        )
    return concurrency


__all__ = [
    "MAX_THREADS",
    "NAME_PATTERN",
    "FunctionCall",
    "FunctionDefinition",
    "FunctionFailedError",
    "FunctionHandler",
    "FunctionNotFoundError",
    "FunctionRegistry",
    "is_retryable_failure",
]
