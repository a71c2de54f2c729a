"""Abstraction: one implementation chosen per call, fallback to the old one, metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from tests.waiting import on_virtual_time

from hybridmesh.migration.abstraction import Abstraction, always


class Implementation:
    """An implementation that records its calls and answers, fails or sleeps as told."""

    def __init__(self, name: str, *, fail: bool = False, sleep: float = 0.0) -> None:
        self.name = name
        self.fail = fail
        self.sleep = sleep
        self.calls: list[tuple[Any, ...]] = []

    async def __call__(self, order_id: int, *, currency: str = "EUR") -> str:
        self.calls.append((order_id, currency))
        if self.sleep:
            await asyncio.sleep(self.sleep)
        if self.fail:
            raise RuntimeError(f"{self.name} is down")
        return f"{self.name}:{order_id}:{currency}"


def by_beta(context: Mapping[str, Any]) -> str:
    return "new" if context.get("beta") else "old"


async def test_choose_picks_the_implementation_of_each_call() -> None:
    old, new = Implementation("old"), Implementation("new")
    orders = Abstraction("orders", old, new, choose=by_beta)
    assert await orders.call({"beta": True}, 1, currency="USD") == "new:1:USD"
    assert await orders.call({"beta": False}, 2) == "old:2:EUR"
    assert await orders.call({}, 3) == "old:3:EUR"
    assert new.calls == [(1, "USD")] and old.calls == [(2, "EUR"), (3, "EUR")]
    assert (orders.stats["new"].calls, orders.stats["old"].calls) == (1, 2)
    assert orders.stats["new"].errors == orders.stats["new"].fallbacks == 0


async def test_a_failing_new_implementation_falls_back_to_the_old_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old, new = Implementation("old"), Implementation("new", fail=True)
    orders = Abstraction("orders", old, new, choose=always("new"))
    with caplog.at_level(logging.WARNING, "hybridmesh.migration.abstraction"):
        assert await orders.call({}, 7, currency="USD") == "old:7:USD"
    assert new.calls == old.calls == [(7, "USD")]
    shown = orders.snapshot()
    assert shown["new"]["calls"] == 1
    assert shown["new"]["errors"] == 1 and shown["new"]["fallbacks"] == 1
    assert shown["new"]["error_rate"] == 1.0
    assert shown["old"]["calls"] == 1 and shown["old"]["errors"] == 0
    assert shown["old"]["fallbacks"] == 0
    assert "new is down" in caplog.text


@on_virtual_time
async def test_a_new_implementation_past_the_timeout_falls_back() -> None:
    old, new = Implementation("old", sleep=0.5), Implementation("new", sleep=3600)
    orders = Abstraction("orders", old, new, choose=always("new"), timeout=2.0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await orders.call({}, 1) == "old:1:EUR"
    assert loop.time() - began == pytest.approx(2.5)
    assert orders.stats["new"].fallbacks == 1 and orders.stats["new"].errors == 1
    assert orders.stats["new"].percentile_ms(50) == pytest.approx(2000, rel=0.13)
    assert orders.stats["old"].percentile_ms(50) == pytest.approx(500, rel=0.13)


async def test_without_fallback_the_new_ones_exception_reaches_the_caller() -> None:
    old, new = Implementation("old"), Implementation("new", fail=True)
    orders = Abstraction("orders", old, new, choose=always("new"), fallback=False)
    with pytest.raises(RuntimeError, match="new is down"):
        await orders.call({}, 1)
    assert old.calls == []
    assert orders.stats["new"].errors == 1 and orders.stats["new"].fallbacks == 0


async def test_the_old_ones_exception_reaches_the_caller() -> None:
    old, new = Implementation("old", fail=True), Implementation("new")
    orders = Abstraction("orders", old, new, choose=always("old"))
    with pytest.raises(RuntimeError, match="old is down"):
        await orders.call({}, 1)
    assert new.calls == []
    assert orders.stats["old"].calls == 1 and orders.stats["old"].errors == 1

    broken_too = Abstraction("orders", old, Implementation("new", fail=True), choose=always("new"))
    with pytest.raises(RuntimeError, match="old is down"):
        await broken_too.call({}, 1)  # the fallback's exception is the caller's
    assert broken_too.stats["new"].fallbacks == 1 and broken_too.stats["old"].errors == 1


async def test_a_chooser_that_fails_or_answers_nonsense_means_old(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(context: Mapping[str, Any]) -> str:
        raise KeyError("flag store away")

    old, new = Implementation("old"), Implementation("new")
    with caplog.at_level(logging.WARNING, "hybridmesh.migration.abstraction"):
        assert await Abstraction("a", old, new, choose=broken).call({}, 1) == "old:1:EUR"
        assert await Abstraction("b", old, new, choose=lambda _: "newest").call({}, 2) == (
            "old:2:EUR"
        )
    assert new.calls == []
    assert "choose failed" in caplog.text and "'newest'" in caplog.text


async def test_shadow_runs_the_other_implementation_as_a_candidate() -> None:
    old = Implementation("same")
    new = Implementation("same")
    differs = Implementation("different")
    orders = Abstraction("orders", old, new, choose=by_beta, shadow=True)
    assert await orders.call({}, 1) == "same:1:EUR"
    assert await orders.call({"beta": True}, 2) == "same:2:EUR"
    await orders.drain()
    # Each implementation served once and shadowed once.
    assert sorted(old.calls) == sorted(new.calls) == [(1, "EUR"), (2, "EUR")]
    assert orders.stats["old"].calls == orders.stats["new"].calls == 1
    assert orders.shadow_stats is not None
    assert orders.shadow_stats.candidates["new"].matched == 1
    assert orders.shadow_stats.candidates["old"].matched == 1

    diverging = Abstraction("orders", old, differs, choose=always("old"), shadow=True)
    assert await diverging.call({}, 3) == "same:3:EUR"
    await diverging.drain()
    shown = diverging.snapshot()
    assert shown["shadow"]["candidates"]["new"]["mismatched"] == 1
    assert shown["shadow"]["mismatches"][0]["candidate_value"] == "different:3:EUR"
    assert shown["new"]["calls"] == 0
    await diverging.close()
    assert await diverging.call({}, 4) == "same:4:EUR"  # closed: no more shadow runs
    assert differs.calls == [(3, "EUR")]
