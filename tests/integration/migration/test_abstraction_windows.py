"""An abstraction's calls in the store's per-second windows (SQLite and PostgreSQL): two
processes' counts merge, and window_stats gives each implementation's error rate and
latency, as a migration plan's gates read them."""

from __future__ import annotations

import asyncio
import time

from hybridmesh.gateway.stats import BUCKETS_PER_DECADE, WindowRecorder, window_stats
from hybridmesh.migration.abstraction import Abstraction, always
from hybridmesh.store import open_store

#: Seconds the new implementation takes.
SLOW = 0.05


async def old(order_id: int) -> str:
    return f"old:{order_id}"


async def new(order_id: int) -> str:
    await asyncio.sleep(SLOW)
    if order_id % 3 == 0:
        raise RuntimeError("new implementation failed")
    return f"new:{order_id}"


async def test_each_implementation_is_counted_in_the_windows(database_url: str) -> None:
    async with await open_store(database_url) as store:
        await store.upgrade()
        # Two processes of one service, each with its own recorder on the shared store.
        recorders = [WindowRecorder(store, replica=name) for name in ("one", "two")]
        served = [
            Abstraction("orders", old, new, choose=always("new"), recorder=recorders[0]),
            Abstraction("orders", old, new, choose=always("old"), recorder=recorders[1]),
        ]
        for order_id in range(1, 10):  # 3, 6 and 9 fail and fall back
            expected = f"old:{order_id}" if order_id % 3 == 0 else f"new:{order_id}"
            assert await served[0].call({}, order_id) == expected
        for order_id in range(4):
            assert await served[1].call({}, order_id) == f"old:{order_id}"
        for recorder in recorders:
            await recorder.close()  # writes everything counted, the current second too

        stats = await window_stats(store, "abstraction:orders", 300, now=time.time() + 1)
        assert stats.replicas == 2
        assert set(stats.backends) == {"old", "new"}
        new_window, old_window = stats.backends["new"], stats.backends["old"]
        assert (new_window.requests, new_window.errors) == (9, 3)
        assert new_window.error_rate == 3 / 9
        assert (old_window.requests, old_window.errors) == (4 + 3, 0)
        assert old_window.error_rate == 0.0
        # Every new call slept SLOW; an estimate is within one bucket of the truth.
        assert new_window.p95_ms is not None
        assert new_window.p95_ms >= SLOW * 1000 / 10 ** (1 / BUCKETS_PER_DECADE)
        # The in-memory metrics agree with the windows.
        assert served[0].stats["new"].fallbacks == 3
        assert served[0].stats["old"].calls + served[1].stats["old"].calls == 7
        # Nothing outside the window, and other routes are apart.
        later = await window_stats(store, "abstraction:orders", 60, now=time.time() + 3600)
        assert later.requests == 0
        assert (await window_stats(store, "abstraction:other", 300)).requests == 0
