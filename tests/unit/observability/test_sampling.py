"""OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG decide which spans are recorded."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanContext, TraceFlags

from hybridmesh.core.settings import Settings
from hybridmesh.observability import (
    JsonFormatter,
    configure_tracing,
    continue_trace,
    inject_child_headers,
    inject_headers,
    start_call_span,
    start_context_span,
)
from hybridmesh.observability import tracing as tracing_module
from hybridmesh.observability.sampling import Sampler

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def parent(sampled: bool) -> dict[str, str]:
    return {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-0{int(sampled)}"}


def recorded_by_sdk() -> Iterator[Callable[[], int]]:
    exporter = InMemorySpanExporter()
    configure_tracing(Settings(), exporter=exporter)
    yield lambda: len(exporter.get_finished_spans())


def recorded_for_otlp() -> Iterator[Callable[[], int]]:
    ended: list[object] = []
    configure_tracing(Settings(otel_exporter="otlp", otlp_endpoint="http://127.0.0.1:9/v1/traces"))
    recorder = tracing_module._state.recorder
    assert recorder is not None
    recorder.sink = ended.append
    yield lambda: len(ended)


@pytest.fixture(params=[recorded_by_sdk, recorded_for_otlp], ids=["sdk exporter", "otlp"])
def recorded(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str, str | None], AbstractContextManager[Callable[[], int]]]:
    """``with recorded(sampler, arg) as count:`` configures tracing with those variables
    set in the environment; ``count()`` is how many spans were recorded since."""

    @contextmanager
    def configured(sampler: str, arg: str | None = None) -> Iterator[Callable[[], int]]:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
        if arg is None:
            monkeypatch.delenv("OTEL_TRACES_SAMPLER_ARG", raising=False)
        else:
            monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
        yield from request.param()

    return configured  # type: ignore[return-value]


def test_ratio_zero_records_nothing_but_still_propagates(
    recorded: Callable[..., AbstractContextManager[Callable[[], int]]],
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("hybridmesh.test.sampling")
    log.addHandler(handler)
    try:
        with recorded("traceidratio", "0") as count:
            with start_call_span("dropped") as span:
                log.warning("inside")
                headers: dict[str, str] = {}
                inject_headers(headers)
                child: dict[str, str] = {}
                inject_child_headers(child)
            assert count() == 0
    finally:
        log.removeHandler(handler)
    context = span.get_span_context()
    trace_id, span_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
    assert not span.is_recording()
    assert headers["traceparent"] == f"00-{trace_id}-{span_id}-00"
    assert child["traceparent"].startswith(f"00-{trace_id}-") and child["traceparent"][-2:] == "00"
    line = json.loads(stream.getvalue())
    assert (line["trace_id"], line["span_id"]) == (trace_id, span_id)


def test_parent_based_sampling_follows_the_parent(
    recorded: Callable[..., AbstractContextManager[Callable[[], int]]],
) -> None:
    with recorded("parentbased_traceidratio", "0") as count:
        with continue_trace(parent(sampled=True)), start_call_span("kept") as kept:
            pass
        assert count() == 1 and kept.get_span_context().trace_flags.sampled
        with continue_trace(parent(sampled=False)), start_call_span("left out") as left:
            pass
        assert count() == 1 and not left.get_span_context().trace_flags.sampled
        with start_call_span("root"):
            pass
        assert count() == 1


def test_parent_based_always_on_leaves_out_what_the_caller_left_out(
    recorded: Callable[..., AbstractContextManager[Callable[[], int]]],
) -> None:
    with recorded("parentbased_always_on") as count:
        with continue_trace(parent(sampled=False)), start_call_span("left out"):
            pass
        with start_call_span("root"):
            pass
        assert count() == 1


def test_a_ratio_sampler_that_is_not_parent_based_decides_alone(
    recorded: Callable[..., AbstractContextManager[Callable[[], int]]],
) -> None:
    with recorded("traceidratio", "1") as count:
        with continue_trace(parent(sampled=False)), start_call_span("recorded anyway"):
            pass
        assert count() == 1
    with recorded("always_off") as count:
        with continue_trace(parent(sampled=True)), start_call_span("not recorded"):
            pass
        assert count() == 0


def test_the_ratio_keeps_that_share_of_new_traces() -> None:
    sampler = Sampler.named("traceidratio", "0.25")
    # Trace ids are judged by their lower 64 bits against 0.25 * 2**64.
    assert sampler.sampled(INVALID_SPAN_CONTEXT, (1 << 62) - 1)
    assert not sampler.sampled(INVALID_SPAN_CONTEXT, 1 << 62)
    assert sampler.sampled(INVALID_SPAN_CONTEXT, (7 << 64) | 5)
    unsampled_parent = SpanContext(1, 1, True, TraceFlags(0))
    assert sampler.sampled(unsampled_parent, 5)


@pytest.mark.parametrize(
    ("name", "arg", "expected"),
    [
        ("always_on", None, ("always_on", False, 1.0)),
        ("ALWAYS_OFF", None, ("always_off", False, 0.0)),
        ("parentbased_always_off", None, ("parentbased_always_off", True, 0.0)),
        ("parentbased_traceidratio", "0.1", ("parentbased_traceidratio", True, 0.1)),
        ("traceidratio", "2", ("traceidratio", False, 1.0)),
        ("traceidratio", "half", ("traceidratio", False, 1.0)),
        ("traceidratio", None, ("traceidratio", False, 1.0)),
        ("jaeger_remote", None, ("parentbased_always_on", True, 1.0)),
    ],
)
def test_sampler_names_and_arguments_as_the_specification_reads_them(
    name: str, arg: str | None, expected: tuple[str, bool, float]
) -> None:
    sampler = Sampler.named(name, arg)
    assert (sampler.name, sampler.parent_based, sampler.ratio) == expected


def test_settings_read_the_standard_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    settings = Settings()
    assert Sampler.from_settings(settings).ratio == 0.1
    assert Settings(otel_traces_sampler="always_off").otel_traces_sampler == "always_off"


def test_without_an_exporter_a_new_trace_carries_the_samplers_decision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    configure_tracing(Settings(otel_exporter="none"))
    with start_context_span() as span:
        assert not span.get_span_context().trace_flags.sampled
    fresh: dict[str, str] = {}
    inject_child_headers(fresh)
    assert fresh["traceparent"].endswith("-00")
    with continue_trace(parent(sampled=True)), start_context_span() as child:
        assert child.get_span_context().trace_flags.sampled  # the caller's decision stands
