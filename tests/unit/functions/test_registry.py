"""FunctionRegistry with Python functions: calls, timeouts, the concurrency limit, typed
errors, names, spans and metrics."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hybridmesh.core.errors import (
    CallTimeoutError,
    ConfigurationError,
    NotFoundError,
    TransportError,
    ValidationError,
)
from hybridmesh.functions import (
    FunctionCall,
    FunctionFailedError,
    FunctionNotFoundError,
    FunctionRegistry,
    is_retryable_failure,
)
from hybridmesh.observability import (
    MeshMetrics,
    bind_context,
    configure_tracing,
    current_trace_id,
    shutdown_tracing,
)

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$")


@pytest.fixture
async def registry() -> AsyncIterator[FunctionRegistry]:
    functions = FunctionRegistry(metrics=MeshMetrics())
    yield functions
    await functions.close()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    configure_tracing(exporter=exporter)
    yield exporter
    shutdown_tracing()


async def until(condition: Any, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - waiting on tasks and threads
            await asyncio.sleep(0.005)


# -- calls ---------------------------------------------------------------------------------


async def test_an_async_function_gets_a_function_call_and_its_result_is_returned(
    registry: FunctionRegistry,
) -> None:
    seen: list[FunctionCall] = []

    async def greet(call: FunctionCall) -> dict[str, str]:
        seen.append(call)
        return {"hello": call.payload["name"]}

    registry.register("greet", greet, timeout=5)
    result = await registry.invoke("greet", {"name": "ada"}, idempotency_key="k-1")
    assert result == {"hello": "ada"}
    [call] = seen
    assert (call.name, call.payload, call.idempotency_key) == ("greet", {"name": "ada"}, "k-1")
    assert call.timeout == 5.0
    assert TRACEPARENT.match(call.traceparent)
    assert re.fullmatch(r"[0-9a-f]{32}", call.request_id)


async def test_a_sync_function_runs_in_a_worker_thread(registry: FunctionRegistry) -> None:
    def where(call: FunctionCall) -> int:
        return threading.get_ident()

    registry.register("where", where)
    assert await registry.invoke("where") != threading.get_ident()


async def test_a_sync_function_does_not_block_the_event_loop(registry: FunctionRegistry) -> None:
    started, opened = threading.Event(), threading.Event()

    def wait_for_the_loop(call: FunctionCall) -> str:
        # Only the event loop sets the event: a blocked loop would never get to it.
        started.set()
        if not opened.wait(timeout=5):
            raise RuntimeError("the loop never ran")
        return "done"

    registry.register("waiter", wait_for_the_loop)
    invocation = asyncio.create_task(registry.invoke("waiter"))
    await until(started.is_set)
    opened.set()
    assert await invocation == "done"


async def test_the_request_id_in_force_is_passed_on(registry: FunctionRegistry) -> None:
    async def echo(call: FunctionCall) -> str:
        return call.request_id

    registry.register("echo", echo)
    with bind_context(request_id="req-42"):
        assert await registry.invoke("echo") == "req-42"


async def test_each_invocation_without_a_key_gets_a_fresh_one(registry: FunctionRegistry) -> None:
    async def key(call: FunctionCall) -> str:
        return call.idempotency_key

    registry.register("key", key)
    first, second = await registry.invoke("key"), await registry.invoke("key")
    assert first != second and re.fullmatch(r"[0-9a-f]{32}", first)


async def test_the_decorator_registers_under_the_given_or_the_function_name(
    registry: FunctionRegistry,
) -> None:
    @registry.function(timeout=2, concurrency=3)
    async def resize_image(call: FunctionCall) -> str:
        return "resized"

    @registry.function("thumbs.v2")
    def thumbnails(call: FunctionCall) -> str:
        return "thumbs"

    assert registry.names() == ["resize_image", "thumbs.v2"]
    definition = registry.get("resize_image")
    assert (definition.kind, definition.timeout, definition.concurrency) == ("python", 2.0, 3)
    assert await resize_image(FunctionCall("x", None, "k", "r", "t", 1.0)) == "resized"
    assert await registry.invoke("thumbs.v2") == "thumbs"
    assert "thumbs.v2" in registry and "nope" not in registry


# -- timeouts ------------------------------------------------------------------------------


async def test_a_slow_function_raises_call_timeout(registry: FunctionRegistry) -> None:
    cancelled = asyncio.Event()

    async def slow(call: FunctionCall) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    registry.register("slow", slow, timeout=0.05)
    with pytest.raises(CallTimeoutError) as caught:
        await registry.invoke("slow")
    assert (caught.value.name, caught.value.timeout) == ("slow", 0.05)
    assert cancelled.is_set()
    with pytest.raises(CallTimeoutError) as caught:
        await registry.invoke("slow", timeout=0.02)  # the caller's timeout wins
    assert caught.value.timeout == 0.02
    assert registry.in_flight("slow") == 0


async def test_a_timeout_the_function_raises_itself_is_a_failure_not_a_call_timeout(
    registry: FunctionRegistry,
) -> None:
    async def inner_timeout(call: FunctionCall) -> None:
        raise TimeoutError("the database did not answer")

    registry.register("inner", inner_timeout)
    with pytest.raises(FunctionFailedError) as caught:
        await registry.invoke("inner")
    assert caught.value.error_type == "TimeoutError" and caught.value.retryable


async def test_a_sync_function_that_timed_out_keeps_its_slot_until_its_thread_returns(
    registry: FunctionRegistry,
) -> None:
    release = threading.Event()

    def stuck(call: FunctionCall) -> str:
        release.wait(timeout=5)
        return "finally"

    registry.register("stuck", stuck, concurrency=1, timeout=0.05)
    with pytest.raises(CallTimeoutError):
        await registry.invoke("stuck")
    assert registry.in_flight("stuck") == 1  # the thread still runs
    with pytest.raises(CallTimeoutError):
        await registry.invoke("stuck")  # no slot frees up in time
    release.set()
    await until(lambda: registry.in_flight("stuck") == 0)
    assert await registry.invoke("stuck") == "finally"


# -- concurrency ---------------------------------------------------------------------------


async def test_at_most_concurrency_calls_run_and_the_rest_wait_their_turn(
    registry: FunctionRegistry,
) -> None:
    gate = asyncio.Event()
    running = peak = 0

    async def busy(call: FunctionCall) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await gate.wait()
            return int(call.payload)
        finally:
            running -= 1

    registry.register("busy", busy, concurrency=2, timeout=5)
    calls = [asyncio.create_task(registry.invoke("busy", n)) for n in range(5)]
    await until(lambda: running == 2)
    for _ in range(20):  # every call task runs until it blocks (no threads here)
        await asyncio.sleep(0)
    assert (running, registry.in_flight("busy")) == (2, 2)
    gate.set()
    assert await asyncio.gather(*calls) == [0, 1, 2, 3, 4]
    assert peak == 2
    assert registry.in_flight("busy") == 0


async def test_sync_functions_honour_the_limit_too(registry: FunctionRegistry) -> None:
    lock = threading.Lock()
    running = peak = 0

    def busy(call: FunctionCall) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        threading.Event().wait(0.03)
        with lock:
            running -= 1

    registry.register("busy-sync", busy, concurrency=2)
    await asyncio.gather(*(registry.invoke("busy-sync") for _ in range(6)))
    assert peak == 2


async def test_waiting_for_a_slot_counts_against_the_timeout(registry: FunctionRegistry) -> None:
    gate = asyncio.Event()

    async def hold(call: FunctionCall) -> None:
        await gate.wait()

    registry.register("hold", hold, concurrency=1, timeout=5)
    holder = asyncio.create_task(registry.invoke("hold"))
    await until(lambda: registry.in_flight("hold") == 1)
    with pytest.raises(CallTimeoutError):
        await registry.invoke("hold", timeout=0.05)
    gate.set()
    await holder
    await registry.invoke("hold")  # the timed-out waiter left no slot behind
    assert registry.in_flight("hold") == 0


# -- errors --------------------------------------------------------------------------------


async def test_an_unknown_function_raises_not_found(registry: FunctionRegistry) -> None:
    with pytest.raises(FunctionNotFoundError) as caught:
        await registry.invoke("ghost", {})
    assert isinstance(caught.value, NotFoundError)
    assert caught.value.name == "ghost" and "unknown function 'ghost'" in str(caught.value)
    with pytest.raises(FunctionNotFoundError):
        registry.get("ghost")


class Flaky(Exception):
    retryable = False


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (RuntimeError("disk full"), True),
        (ConnectionError("reset"), True),
        (ValueError("price is negative"), False),
        (TypeError("expected a dict"), False),
        (KeyError("customer_id"), False),
        (ValidationError("name is required"), False),
        (TransportError("down", status=503), True),
        (TransportError("bad request", status=400), False),
        (TransportError("too many", status=429), True),
        (Flaky("marked by the function"), False),
    ],
)
@pytest.mark.parametrize("sync", [True, False])
async def test_a_raising_function_gives_a_typed_failure_with_the_retry_rule(
    registry: FunctionRegistry, error: Exception, retryable: bool, sync: bool
) -> None:
    def fail_sync(call: FunctionCall) -> None:
        raise error

    async def fail_async(call: FunctionCall) -> None:
        raise error

    registry.register("fails", fail_sync if sync else fail_async)
    with pytest.raises(FunctionFailedError) as caught:
        await registry.invoke("fails", {"x": 1})
    failure = caught.value
    assert failure.function == "fails"
    assert failure.error == str(error)
    assert failure.error_type == type(error).__name__
    assert failure.retryable is retryable
    assert failure.__cause__ is error
    assert str(failure).startswith(f"function 'fails' failed: {type(error).__name__}: ")
    assert is_retryable_failure(error) is retryable


# -- registration --------------------------------------------------------------------------


async def noop(call: FunctionCall) -> None:
    return None


@pytest.mark.parametrize("name", ["a", "resize-image", "v1.thumb_2", "0day", "x" * 128])
def test_good_names_are_accepted(name: str) -> None:
    registry = FunctionRegistry(metrics=MeshMetrics())
    registry.register(name, noop)
    assert registry.names() == [name]


@pytest.mark.parametrize("name", ["", "Resize", "-x", "_x", ".x", "a b", "a/b", "é", "x" * 129])
def test_bad_names_are_refused(name: str) -> None:
    registry = FunctionRegistry(metrics=MeshMetrics())
    with pytest.raises(ValidationError, match="function name"):
        registry.register(name, noop)
    with pytest.raises(ValidationError, match="function name"):
        registry.register_http(name, "http://127.0.0.1:8080/")


def test_a_taken_name_is_a_configuration_error() -> None:
    registry = FunctionRegistry(metrics=MeshMetrics())
    registry.register("once", noop)
    with pytest.raises(ConfigurationError, match="'once' is already registered"):
        registry.register("once", noop)
    with pytest.raises(ConfigurationError, match="'once' is already registered"):
        registry.register_http("once", "http://127.0.0.1:8080/")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "timeout must be above 0"),
        ({"timeout": -1.5}, "timeout must be above 0"),
        ({"concurrency": 0}, "concurrency must be a whole number of at least 1"),
        ({"concurrency": 1.5}, "concurrency must be a whole number"),
    ],
)
def test_bad_limits_are_refused(options: dict[str, Any], message: str) -> None:
    registry = FunctionRegistry(metrics=MeshMetrics())
    with pytest.raises(ValidationError, match=message):
        registry.register("f", noop, **options)


@pytest.mark.parametrize("url", ["ftp://host/x", "localhost:8080", "http://", "/relative"])
def test_http_functions_need_an_http_url(url: str) -> None:
    registry = FunctionRegistry(metrics=MeshMetrics())
    with pytest.raises(ValidationError, match="is not an http"):
        registry.register_http("f", url)


def test_something_not_callable_is_refused() -> None:
    registry = FunctionRegistry(metrics=MeshMetrics())
    with pytest.raises(ValidationError, match="not callable"):
        registry.register("f", "not a function")  # type: ignore[arg-type]


async def test_a_bad_per_call_timeout_is_refused(registry: FunctionRegistry) -> None:
    registry.register("f", noop)
    with pytest.raises(ValidationError, match="timeout must be above 0"):
        await registry.invoke("f", timeout=0)


# -- spans and metrics ---------------------------------------------------------------------


async def test_each_invocation_is_a_span_the_function_runs_in(
    registry: FunctionRegistry, spans: InMemorySpanExporter
) -> None:
    async def trace_ids(call: FunctionCall) -> tuple[str | None, str]:
        return current_trace_id(), call.traceparent

    def fail(call: FunctionCall) -> None:
        raise RuntimeError("boom")

    registry.register("traced", trace_ids)
    registry.register("failing", fail)
    inside, traceparent = await registry.invoke("traced")
    with pytest.raises(FunctionFailedError):
        await registry.invoke("failing")
    finished = {s.name: s for s in spans.get_finished_spans()}
    span = finished["invoke traced"]
    assert span.attributes is not None and span.attributes["faas.invoked_name"] == "traced"
    assert span.context is not None
    assert inside == format(span.context.trace_id, "032x")
    match = TRACEPARENT.match(traceparent)
    assert match and match.group(2) == format(span.context.span_id, "016x")
    assert not finished["invoke failing"].status.is_ok


async def test_invocations_are_counted_by_outcome() -> None:
    metrics = MeshMetrics()
    registry = FunctionRegistry(metrics=metrics)

    async def sometimes(call: FunctionCall) -> None:
        if call.payload == "fail":
            raise RuntimeError("no")
        if call.payload == "hang":
            await asyncio.sleep(10)

    registry.register("sometimes", sometimes, timeout=0.05)
    await registry.invoke("sometimes", "ok")
    await registry.invoke("sometimes", "ok")
    with pytest.raises(FunctionFailedError):
        await registry.invoke("sometimes", "fail")
    with bind_context(source_service="billing"), pytest.raises(CallTimeoutError):
        await registry.invoke("sometimes", "hang")

    def count(outcome: str, source: str = "functions") -> float | None:
        return metrics.sample(
            "hybridmesh_calls_total",
            source=source,
            target="sometimes",
            pattern="function",
            outcome=outcome,
        )

    assert (count("success"), count("error"), count("timeout", "billing")) == (2, 1, 1)
    await registry.close()
