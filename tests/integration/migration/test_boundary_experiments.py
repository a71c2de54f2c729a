"""Boundary experiments through a real gateway replica (in process, watching the store as
every replica does) and real upstreams on loopback, on SQLite and PostgreSQL: the candidate
is mirrored the route's traffic, judged on the windows the replica writes, and the route is
put back whatever happens; clients only ever get the primary's answers."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from tests.cli_in_process import run_cli_parts as run_cli
from tests.integration.client.helpers import service
from tests.integration.gateway.mirror_rig import Replica, Upstream, apply_routes, replica, upstream
from tests.waiting import eventually

from hybridmesh.core.errors import ValidationError
from hybridmesh.gateway.config import Route
from hybridmesh.gateway.state import GatewayState, SnapshotWatcher
from hybridmesh.migration.boundary import (
    BoundaryExperiment,
    ExperimentConflictError,
    ExperimentResult,
    ExperimentStore,
    RestoreOutcome,
    Status,
    Verdict,
    parse_spec,
    run_boundary_experiment,
)
from hybridmesh.registry.catalog import RegistryCatalog
from hybridmesh.store import Store, open_store

ROUTES = """
routes:
  - name: shop
    match: {{path: {{prefix: /shop}}}}
    strip_prefix: true
    backends:
      - {{name: legacy, url: "{primary}", weight: 100}}
      - {{name: spare, url: "{primary}", weight: 0}}
{extra}
"""

#: Thresholds the tests' runs can meet however loaded the machine: the p95 is not what
#: they are about (judge() is unit tested), and a few seconds of traffic give dozens of
#: comparisons.
EASY = {"max_p95_ms": 60_000, "min_requests": 5, "min_compared": 5}


def shop(side: str, price: int = 10, status: int = 200) -> dict[str, Any]:
    async def item(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "id": request.path.rsplit("/", 1)[-1],
                "price": price,
                "request_id": random.getrandbits(64),
                "served_by": side,
            },
            status=status,
        )

    return {"/items/": item}


class Rig:
    def __init__(self, store: Store, gw: Replica, primary: Upstream, database_url: str) -> None:
        self.store = store
        self.gw = gw
        self.primary = primary
        self.database_url = database_url
        self.state = GatewayState(store)

    async def route(self) -> Route:
        return (await self.state.route("shop")).route

    async def mirrored(self) -> bool:
        return (await self.route()).mirror is not None

    async def drive(self, until: asyncio.Future[Any]) -> list[tuple[int, dict[str, Any]]]:
        """Requests through the gateway until ``until`` is done; every answer."""
        answers = []
        while not until.done():
            status, _, body = await self.gw.get(f"/shop/items/{len(answers) % 7}")
            answers.append((status, json.loads(body)))
            await asyncio.sleep(0.01)
        return answers

    async def run(
        self, candidate: Upstream | str, *, traffic: bool = True, **spec: Any
    ) -> tuple[ExperimentResult, list[tuple[int, dict[str, Any]]]]:
        """An experiment on route shop, with traffic through the gateway while it runs."""
        data: dict[str, Any] = {
            "id": "try-1",
            "route": "shop",
            "candidate": {"url": candidate.url}
            if isinstance(candidate, Upstream)
            else {"service": candidate},
            "duration": "2s",
            "hypothesis": EASY,
            "compare": {"ignore": ["request_id", "served_by"]},
            **spec,
        }
        # The replica here flushes every 0.2 s and polls every 0.1 s: settling takes less.
        task = asyncio.ensure_future(
            run_boundary_experiment(self.store, parse_spec(data), settle_seconds=0.8)
        )
        answers = await self.drive(task) if traffic else []
        return await task, answers


@asynccontextmanager
async def watching(database_url: str, name: str) -> AsyncIterator[Replica]:
    """A gateway replica that follows the routes in the store, as a deployed one does."""
    async with replica(database_url, name=name, flush_seconds=0.2) as gw:
        watcher = SnapshotWatcher(GatewayState(gw.store), gw.gateway.use, poll_seconds=0.1)
        await watcher.start()
        try:
            yield gw
        finally:
            await watcher.close()


@asynccontextmanager
async def rig_for(database_url: str, extra: str = "") -> AsyncIterator[Rig]:
    async with upstream(shop("primary")) as primary, await open_store(database_url) as store:
        await store.upgrade()
        await apply_routes(store, ROUTES.format(primary=primary.url, extra=extra))
        async with watching(database_url, "r1") as gw:
            yield Rig(store, gw, primary, database_url)


@pytest.fixture
async def rig(database_url: str) -> AsyncIterator[Rig]:
    async with rig_for(database_url) as made:
        yield made


def served_by_primary(answers: list[tuple[int, dict[str, Any]]]) -> bool:
    return bool(answers) and all(
        status == 200 and body["served_by"] == "primary" and body["price"] == 10
        for status, body in answers
    )


async def test_a_candidate_that_answers_the_same_is_confirmed(rig: Rig) -> None:
    before = await rig.route()
    async with upstream(shop("candidate")) as candidate:
        result, answers = await rig.run(candidate)

        assert result.status is Status.COMPLETED
        assert result.verdict is Verdict.CONFIRMED, result.reasons
        assert result.reasons == ()
        figures = result.candidate
        assert figures.requests >= 5 and figures.errors == 0
        assert figures.compared >= 5 and figures.mismatches == 0
        assert figures.p95_ms is not None
        assert len(candidate.seen) >= figures.compared  # the copies reached it
        assert result.primary.requests >= figures.requests
        assert result.primary.errors == 0
        assert served_by_primary(answers)
    assert result.restore is not None
    assert result.restore.outcome is RestoreOutcome.RESTORED
    assert await rig.route() == before
    assert await ExperimentStore(rig.store).get("try-1") == result


async def test_a_candidate_that_answers_differently_is_rejected_on_its_mismatch_rate(
    rig: Rig,
) -> None:
    before = await rig.route()
    async with upstream(shop("candidate", price=11)) as candidate:
        result, answers = await rig.run(candidate)
        copies = len(candidate.seen)

    assert result.verdict is Verdict.REJECTED
    [reason] = result.reasons
    assert reason.startswith("mismatch rate 100.00% (")
    assert "is over max_mismatch_rate 0.50%" in reason
    assert result.candidate.errors == 0
    assert result.candidate.mismatches == result.candidate.compared >= 5
    # Every client got the primary's answer, never the candidate's price.
    assert copies >= 5
    assert served_by_primary(answers)
    assert await rig.route() == before
    # The kept mismatches say what differed.
    kept = await rig.state.mismatches("shop", limit=1)
    assert kept[0].differences == [
        {"field": "body", "path": "price", "change": "changed", "primary": 10, "candidate": 11}
    ]


async def test_a_failing_candidate_is_rejected_on_its_error_rate(rig: Rig) -> None:
    before = await rig.route()
    async with upstream(shop("candidate", status=500)) as candidate:
        result, answers = await rig.run(candidate)

    assert result.verdict is Verdict.REJECTED
    assert result.candidate.errors == result.candidate.requests >= 5
    error_rate = [r for r in result.reasons if r.startswith("error rate")]
    assert error_rate and error_rate[0].startswith("error rate 100.00% (")
    assert "is over max_error_rate 1.00%" in error_rate[0]
    assert result.primary.errors == 0
    assert served_by_primary(answers)
    assert await rig.route() == before


async def test_no_traffic_is_inconclusive(rig: Rig) -> None:
    before = await rig.route()
    async with upstream(shop("candidate")) as candidate:
        result, _ = await rig.run(candidate, traffic=False, duration=1)
        assert candidate.seen == []

    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.reasons == (
        "0 requests reached the candidate, fewer than the 5 needed (min_requests): error "
        "rate and p95 not judged",
        "0 answers compared, fewer than the 5 needed (min_compared): mismatch rate not judged",
    )
    assert result.candidate.requests == 0 and result.primary.requests == 0
    assert await rig.route() == before


async def test_a_registry_service_can_be_the_candidate(rig: Rig) -> None:
    async with upstream(shop("candidate")) as candidate:
        await RegistryCatalog(rig.store).save([service("shop-v2", "microservice", candidate.url)])
        result, answers = await rig.run("shop-v2")
        assert result.verdict is Verdict.CONFIRMED, result.reasons
        assert candidate.seen
    assert result.spec.candidate.service == "shop-v2"
    assert served_by_primary(answers)


async def test_a_cancelled_run_puts_the_route_back_and_is_stored_as_cancelled(rig: Rig) -> None:
    before = await rig.route()
    async with upstream(shop("candidate")) as candidate:
        spec = parse_spec(
            {"id": "long", "route": "shop", "candidate": {"url": candidate.url}, "duration": "5m"}
        )
        task = asyncio.ensure_future(run_boundary_experiment(rig.store, spec))
        await eventually(rig.mirrored, what="the experiment's mirror on the route")
        await eventually(lambda: _copied(rig, candidate), what="a copy at the candidate")

        # Another experiment cannot take the route meanwhile.
        other = spec.model_copy(update={"id": "other"})
        with pytest.raises(ExperimentConflictError, match="'long' is mirroring route 'shop'"):
            await run_boundary_experiment(rig.store, other)

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert await rig.route() == before
        stored = await ExperimentStore(rig.store).get("long")
        assert stored.status is Status.CANCELLED
        assert stored.verdict is None
        assert stored.restore is not None
        assert stored.restore.outcome is RestoreOutcome.RESTORED

        # The replica stops copying once it sees the route put back.
        await eventually(lambda: _not_copying(rig, candidate), what="no more copies")


async def _copied(rig: Rig, candidate: Upstream) -> bool:
    await rig.gw.get("/shop/items/1")
    await rig.gw.hooks.mirrors.settle()
    return bool(candidate.seen)


async def _not_copying(rig: Rig, candidate: Upstream) -> bool:
    await rig.gw.hooks.mirrors.settle()
    seen = len(candidate.seen)
    for _ in range(3):
        await rig.gw.get("/shop/items/1")
    await rig.gw.hooks.mirrors.settle()
    return len(candidate.seen) == seen


async def test_a_route_changed_during_the_run_keeps_the_change_and_loses_only_the_mirror(
    database_url: str,
) -> None:
    own_mirror = "    mirror: {backend: spare, compare: {ignore: [request_id]}}"
    async with rig_for(database_url, own_mirror) as rig, upstream(shop("candidate")) as candidate:
        before = await rig.route()
        data = {
            "id": "try-2",
            "route": "shop",
            "candidate": {"url": candidate.url},
            "duration": "2s",
            "hypothesis": EASY,
        }
        task = asyncio.ensure_future(run_boundary_experiment(rig.store, parse_spec(data)))
        await eventually(
            lambda: _mirrors_to(rig, "try-2"), what="the experiment's mirror on the route"
        )
        await rig.state.set_weight("shop", "spare", 10)
        result = await task

        after = await rig.route()
        assert after.backend("spare").weight == 10  # the change made meanwhile stays
        assert [b.name for b in after.backends] == ["legacy", "spare"]
        assert after.mirror == before.mirror  # the route's own mirror is back
        assert result.restore is not None
        assert result.restore.outcome is RestoreOutcome.EXPERIMENT_REMOVED
        assert "only the experiment's mirror was taken out" in result.restore.detail
        assert result.notes == (
            "the route's own mirror (to 'spare') was suspended during the experiment",
        )


async def _mirrors_to(rig: Rig, backend: str) -> bool:
    mirror = (await rig.route()).mirror
    return mirror is not None and mirror.backend == backend


async def test_what_cannot_run_is_refused_before_the_route_is_touched(rig: Rig) -> None:
    before = await rig.route()
    base: dict[str, Any] = {
        "id": "try-3",
        "route": "shop",
        "candidate": {"url": "http://127.0.0.1:9"},
        "duration": 1,
    }

    async def refused(**changes: Any) -> str:
        spec = BoundaryExperiment.model_validate({**base, **changes})
        with pytest.raises(ValidationError) as invalid:
            await run_boundary_experiment(rig.store, spec)
        return str(invalid.value)

    assert "the gateway has no route 'nowhere'" in await refused(route="nowhere")
    assert "unknown service 'ghost'" in await refused(candidate={"service": "ghost"})
    assert "has a backend named 'spare' already" in await refused(id="spare")
    await ExperimentStore(rig.store).save(
        ExperimentResult(
            spec=BoundaryExperiment.model_validate(base),
            status=Status.COMPLETED,
            started_at=1.0,
            route_before={},
        )
    )
    assert "experiment 'try-3' exists already" in await refused()
    assert await rig.route() == before
    assert [r.id for r in await ExperimentStore(rig.store).list()] == ["try-3"]


# -- the command line ------------------------------------------------------------------------


async def test_the_command_line_runs_shows_and_lists_experiments(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    db = rig.database_url
    before = await rig.route()
    async with upstream(shop("candidate", price=11)) as candidate:
        ran = asyncio.ensure_future(
            run_cli(
                capsys,
                db,
                "experiments",
                "run",
                "--route",
                "shop",
                "--candidate-url",
                candidate.url,
                "--duration",
                "2s",
                "--id",
                "cli-1",
                "--max-p95-ms",
                "60000",
                "--min-requests",
                "5",
                "--min-compared",
                "5",
                "--ignore",
                "request_id",
                "--ignore",
                "served_by",
                "--json",
            )
        )
        answers = await rig.drive(ran)
        code, out, err = await ran
    assert code == 0, err  # it ran: the verdict is in the output, not the exit code
    shown = json.loads(out)
    assert shown["id"] == "cli-1" and shown["status"] == "completed"
    assert shown["verdict"] == "rejected"
    assert shown["reasons"][0].startswith("mismatch rate 100.00%")
    assert shown["candidate"] == {"url": candidate.url}
    assert shown["candidate_figures"]["compared"] >= 5
    assert shown["restore"]["outcome"] == "restored"
    assert served_by_primary(answers)
    assert await rig.route() == before

    code, out, err = await run_cli(capsys, db, "experiments", "show", "cli-1", "--json")
    assert code == 0, err
    assert json.loads(out) == shown
    code, out, err = await run_cli(capsys, db, "experiments", "show", "cli-1")
    assert code == 0, err
    assert "rejected" in out and "mismatch rate 100.00%" in out and "restored" in out

    code, out, err = await run_cli(capsys, db, "experiments", "list", "--json")
    assert code == 0, err
    assert [(r["id"], r["verdict"]) for r in json.loads(out)] == [("cli-1", "rejected")]
    code, out, err = await run_cli(capsys, db, "experiments", "list")
    assert code == 0, err
    assert "cli-1" in out and "rejected" in out

    # Bad input: exit 2, naming the option; nothing runs.
    run_args = ["experiments", "run", "--route", "shop", "--duration", "1s"]
    for extra, said in [
        (["--candidate-url", candidate.url, "--duration", "soon"], "[--duration]"),
        ([], "[--candidate-service/--candidate-url]"),
        (["--candidate-url", candidate.url, "--max-error-rate", "2"], "[--max-error-rate]"),
        (["--candidate-url", candidate.url, "--route", "nowhere"], "no route 'nowhere'"),
        (["--candidate-service", "ghost"], "unknown service 'ghost'"),
        (["--candidate-url", candidate.url, "--id", "cli-1"], "'cli-1' exists already"),
    ]:
        code, out, err = await run_cli(capsys, db, *run_args, *extra)
        assert code == 2, (extra, out, err)
        assert said in err, (extra, err)
    assert await rig.route() == before

    code, out, err = await run_cli(capsys, db, "experiments", "show", "nothing")
    assert code == 1
    assert "no experiment 'nothing'" in err
