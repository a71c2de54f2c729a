"""Plans driven through a real gateway replica, real upstreams on loopback, and the store
(SQLite and PostgreSQL): clients' traffic moves to the new service step by step as the
runner sets weights, the gates read the windows the replica writes, and a new service
that starts failing is rolled back to 0 % by its gate, with no other request failing."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from tests.integration.gateway.mirror_rig import Replica, apply_routes, replica, upstream
from tests.waiting import eventually

from hybridmesh.gateway.state import GatewayState, SnapshotWatcher
from hybridmesh.migration.plans import PlanSpec, build_plan
from hybridmesh.migration.runner import PlanRunner
from hybridmesh.migration.state import MigrationState, Status
from hybridmesh.store import open_store

ROUTES = """
routes:
  - name: shop
    match: {{path: {{prefix: /shop}}}}
    backends:
      - {{name: old, url: "{old}", weight: 100}}
      - {{name: new, url: "{new}", weight: 0}}
    retries: {{attempts: 0}}
    breaker: {{enabled: false}}
"""


class Service:
    """An upstream answering with its name; ``failing`` makes it answer 500."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failing = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.failing:
            return web.json_response({"error": "broken"}, status=500)
        return web.json_response({"served_by": self.name})


@contextlib.asynccontextmanager
async def following(database_url: str) -> AsyncIterator[Replica]:
    """A replica that follows the stored routes (as a deployed one does) and writes its
    windows every 0.2 s."""
    async with replica(database_url, name="r1", flush_seconds=0.2) as gw:
        watcher = SnapshotWatcher(GatewayState(gw.store), gw.gateway.use, poll_seconds=0.1)
        await watcher.start()
        try:
            yield gw
        finally:
            await watcher.close()


async def _traffic(gw: Replica, stop: asyncio.Event, seen: Counter[str]) -> None:
    while not stop.is_set():
        status, _, body = await gw.get("/shop/items")
        seen[f"{status} {body.decode()[:40]}"] += 1
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("fails", [False, True])
async def test_a_plan_moves_live_traffic_and_rolls_back_a_failing_service(
    database_url: str, fails: bool
) -> None:
    old, new = Service("old"), Service("new")
    async with (
        upstream({"/": old.handle}) as old_up,
        upstream({"/": new.handle}) as new_up,
        await open_store(database_url) as store,
    ):
        await store.upgrade()
        await apply_routes(store, ROUTES.format(old=old_up.url, new=new_up.url))
        spec = {
            "name": "shop-split",
            "source": "shop-legacy",
            "strategy": "strangler_fig",
            "rollback": "zero",
            "targets": [
                {
                    "service": "shop-new",
                    "route": "shop",
                    "backend": "new",
                    "source_backend": "old",
                    "steps": [50, 100],
                    "retire": False,
                }
            ],
            "criteria": {"interval": 1, "window": 2, "min_requests": 5},
        }
        routes = {s.route.name: s.route for s in await GatewayState(store).routes()}
        state = MigrationState(store)
        await state.save(build_plan(PlanSpec.model_validate(spec), routes), actor="test")
        await state.control("shop-split", "start", actor="test", reason=None)
        seen: Counter[str] = Counter()
        stop = asyncio.Event()
        runner_stop = asyncio.Event()
        async with following(database_url) as gw:
            load = asyncio.create_task(_traffic(gw, stop, seen))
            runner = asyncio.create_task(
                PlanRunner(store, owner="t", poll_seconds=0.1).run(runner_stop)
            )
            try:
                if fails:

                    async def at_50() -> bool:
                        record = await state.get("shop-split")
                        return record.step == 1 and record.phase.value == "monitoring"

                    await eventually(at_50, what="the plan at 50 %", seconds=20)
                    new.failing = True

                async def ended() -> bool:
                    return (await state.get("shop-split")).status.ended

                await eventually(ended, what="the plan's end", seconds=30)
            finally:
                stop.set()
                runner_stop.set()
                await asyncio.gather(load, runner)
        record = await state.get("shop-split")
        weights = {
            b.name: b.weight for b in (await GatewayState(store).route("shop")).route.backends
        }
    served_new = sum(n for answer, n in seen.items() if '"new"' in answer)
    failed = sum(n for answer, n in seen.items() if not answer.startswith("200"))
    if fails:
        assert record.status is Status.ROLLED_BACK
        assert weights == {"old": 100.0, "new": 0.0}
        assert "error rate" in (record.reason or "")
        assert failed > 0  # the new service failed clients until it was ejected and rolled back
    else:
        assert record.status is Status.COMPLETED
        assert weights == {"old": 0.0, "new": 100.0}
        assert failed == 0, seen  # moving traffic cost no request
        assert served_new > 0
