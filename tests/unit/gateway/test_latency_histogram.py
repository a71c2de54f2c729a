"""The stats windows' latency histogram: percentiles within a bucket of the truth, merging
that equals counting everything in one, and the duration syntax of `routes stats`."""

from __future__ import annotations

import math
import random

import pytest

from hybridmesh.gateway.stats import (
    BUCKET_BOUNDS,
    BUCKETS_PER_DECADE,
    LatencyHistogram,
    merge_histograms,
    parse_duration,
)

#: How far off an estimate may be: one bucket's width, as a factor.
WIDTH = 10 ** (1 / BUCKETS_PER_DECADE)


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


@pytest.mark.parametrize("seed", range(5))
def test_percentiles_are_within_a_bucket_of_the_true_ones(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(math.log(0.02), 1.2) for _ in range(rng.randint(50, 3000))]
    histogram = LatencyHistogram()
    for value in values:
        histogram.add(value)
    for q in (0.5, 0.95, 0.99):
        estimate = histogram.quantile(q)
        truth = exact(values, q)
        assert estimate is not None
        assert truth / WIDTH <= estimate <= truth * WIDTH, (q, truth, estimate)


def test_merged_histograms_equal_one_that_counted_everything() -> None:
    rng = random.Random(7)
    parts = [[rng.expovariate(1 / 0.01) for _ in range(rng.randint(1, 200))] for _ in range(6)]
    whole = LatencyHistogram()
    pieces = []
    for part in parts:
        piece = LatencyHistogram()
        for value in part:
            piece.add(value)
            whole.add(value)
        pieces.append(LatencyHistogram.from_json(piece.to_json()))  # as stored and read
    merged = merge_histograms(pieces)
    assert merged.counts == whole.counts
    assert merged.total == whole.total == sum(len(p) for p in parts)
    assert merged.sum == pytest.approx(whole.sum)
    for q in (0.5, 0.95, 0.99):
        assert merged.quantile(q) == whole.quantile(q)


def test_the_buckets_span_a_tenth_of_a_millisecond_to_a_minute() -> None:
    assert BUCKET_BOUNDS[0] == pytest.approx(0.0001)
    assert BUCKET_BOUNDS[-1] >= 60
    histogram = LatencyHistogram()
    histogram.add(0.0)
    histogram.add(3600.0)  # past the last bound: the open bucket
    assert 0 <= histogram.quantile(0.01) <= BUCKET_BOUNDS[0]  # type: ignore[operator]
    assert histogram.quantile(1.0) == BUCKET_BOUNDS[-1]
    assert LatencyHistogram().quantile(0.5) is None


@pytest.mark.parametrize(
    "data",
    [
        {"v": 2, "counts": {}},
        {"v": 1, "counts": {"9999": 1}},
        {"v": 1, "counts": {"3": -1}},
        {"v": 1, "counts": {"x": 1}},
    ],
)
def test_unreadable_histograms_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LatencyHistogram.from_json(data)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("90", 90), ("250ms", 0.25), (" 2M ", 120)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "5x", "-1s", "0s", "1e3s", "1h30m", "nan", "inf"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
