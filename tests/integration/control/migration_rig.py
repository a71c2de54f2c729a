"""A strangler-fig plan on a real store, moved by a real runner whose clock is a little in
the past, so that traffic the tests record for the seconds since falls inside its gates'
monitoring time without waiting."""

from __future__ import annotations

from typing import Any

from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.state import GatewayState
from hybridmesh.gateway.stats import WindowRecorder
from hybridmesh.migration.plans import PlanSpec, build_plan
from hybridmesh.migration.runner import PlanRunner
from hybridmesh.migration.state import MigrationState, PlanRecord
from hybridmesh.store import Store

ROUTES = """
routes:
  - name: content-delivery
    match: {path: {prefix: /content}}
    backends:
      - {name: monolith, url: "http://127.0.0.1:9001", weight: 100}
      - {name: delivery, url: "http://127.0.0.1:9002", weight: 0}
"""

#: How far in the past the runner's clock is, in seconds.
BEHIND = 60.0


async def apply_routes(store: Store) -> None:
    await GatewayState(store).apply(parse_routes(ROUTES, "routes.yaml"))


async def store_plan(store: Store, name: str = "split-delivery", **spec: Any) -> str:
    """Store and start a plan moving content-delivery to the backend ``delivery`` in 10,
    50 and 100 %, the 50 % step waiting for approval."""
    data: dict[str, Any] = {
        "name": name,
        "source": "content-management",
        "strategy": "strangler_fig",
        "targets": [
            {
                "service": "content-delivery",
                "backend": "delivery",
                "source_backend": "monolith",
                "steps": [10, 50, 100],
                "approve_at": [50],
            }
        ],
        "criteria": {"interval": 10, "window": 600, "min_requests": 5},
    }
    data.update(spec)
    gateway = GatewayState(store)
    routes = {s.route.name: s.route for s in await gateway.routes()}
    plan = build_plan(PlanSpec.model_validate(data), routes)
    state = MigrationState(store)
    await state.save(plan, actor="alice")
    await state.control(plan.name, "start", actor="alice", reason=None)
    return plan.name


class Runner:
    """A runner ticked by hand; its clock is :data:`BEHIND` seconds in the past, plus
    whatever the test has advanced it by."""

    def __init__(self, store: Store, now: float) -> None:
        self.store = store
        self.now = now - BEHIND
        self.runner = PlanRunner(store, owner="runner-t", lease_seconds=600, clock=self.clock)

    def clock(self) -> float:
        return self.now

    async def tick(self, name: str, times: int = 1) -> PlanRecord:
        """Up to ``times`` transitions, stopping early when the runner lets go."""
        epoch = await self.runner.state.claim(name, self.runner.owner, 600)
        assert epoch is not None, "the plan needs no runner now"
        for _ in range(times):
            if await self.runner.tick(name, epoch) is None:
                break
        await self.runner.state.release(name, self.runner.owner, epoch)
        return await MigrationState(self.store).get(name)

    async def traffic(self, backend: str, at: float, ok: int, failed: int = 0) -> None:
        """Requests to ``backend`` of content-delivery counted in second ``at``."""
        recorder = WindowRecorder(self.store, replica="replica-t", clock=lambda: at)
        for _ in range(ok):
            recorder.observe("content-delivery", backend, 200, 0.02)
        for _ in range(failed):
            recorder.observe("content-delivery", backend, 503, 0.02)
        await recorder.close()
