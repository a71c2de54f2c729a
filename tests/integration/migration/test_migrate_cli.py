"""`hybridmesh migrate` on a real store (SQLite and PostgreSQL): making plans from options
and files, reading them, a person's controls and their exit codes, and `migrate run`
driving a plan through its gates on windows a gateway replica writes meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.cli_in_process import run_cli as cli

from hybridmesh.gateway.stats import WindowRecorder
from hybridmesh.store import open_store

SERVICES = Path(__file__).parents[3] / "examples" / "tanqory" / "services"

ROUTES = """
routes:
  - name: content-delivery
    match: {path: {prefix: /content}}
    backends:
      - {name: monolith, service: content-management, weight: 100}
      - {name: delivery, service: content-delivery, weight: 0}
"""


@pytest.fixture
async def url(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> AsyncIterator[str]:
    assert (await cli(capsys, database_url, "registry", "load", str(SERVICES)))[0] == 0
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    code, out = await cli(capsys, database_url, "routes", "apply", str(routes))
    assert code == 0, out
    yield database_url


async def test_a_plan_from_options_is_stored_shown_and_listed(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = await cli(
        capsys,
        url,
        "migrate",
        "plan",
        "content-management",
        "--target",
        "content-delivery",
        "--steps",
        "5,50,100",
        "--approve-at",
        "50",
        "--window",
        "2m",
        "--json",
    )
    assert code == 0, out
    (stored,) = json.loads(out)
    assert (stored["name"], stored["version"], stored["status"]) == (
        "content-management-migration",
        1,
        "pending",
    )
    code, out = await cli(capsys, url, "migrate", "show", stored["name"], "--json")
    shown = json.loads(out)
    steps = shown["plan"]["steps"]
    assert [s["name"] for s in steps] == [
        "prepare content-delivery",
        "content-delivery 5%",
        "content-delivery 50%",
        "content-delivery 100%",
        "retire content-management from content-delivery",
    ]
    assert steps[2]["approval"] and steps[1]["gate"]["window"] == 120
    code, out = await cli(capsys, url, "migrate", "list", "--json")
    assert [p["name"] for p in json.loads(out)] == [stored["name"]]
    code, out = await cli(capsys, url, "migrate", "show", stored["name"])
    assert code == 0 and "content-delivery 50%" in out and "approval" in out


async def test_controls_follow_the_plans_status_and_are_audited(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("migrate", "plan", "content-management", "--target", "content-delivery")
    assert (await cli(capsys, url, *args, "--name", "p"))[0] == 0
    code, out = await cli(capsys, url, "migrate", "approve", "p")
    assert code == 1 and "pending" in out  # nothing to approve yet
    code, out = await cli(capsys, url, "migrate", "start", "p", "--by", "alice", "--json")
    assert code == 0 and json.loads(out)["status"] == "running"
    code, out = await cli(
        capsys, url, "migrate", "pause", "p", "--by", "bob", "--reason", "freeze", "--json"
    )
    assert json.loads(out)["status"] == "paused"
    assert (await cli(capsys, url, "migrate", "resume", "p"))[0] == 0
    code, out = await cli(capsys, url, "migrate", "abort", "p", "--reason", "not now", "--json")
    assert json.loads(out)["status"] == "aborting"
    code, out = await cli(capsys, url, "migrate", "audit", "p", "--json")
    entries = json.loads(out)
    assert [(e["actor"], e["action"]) for e in entries][1:3] == [
        ("alice", "migration.start"),
        ("bob", "migration.pause"),
    ]
    assert entries[2]["reason"] == "freeze"


async def test_bad_input_exits_2_naming_the_file_line_and_field(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "name: p\nsource: content-management\nstrategy: strangler_fig\n"
        "targets:\n  - service: content-delivery\n    steps: [50, 10]\n"
    )
    code, out = await cli(capsys, url, "migrate", "plan", "--file", str(plan))
    assert code == 2 and f"{plan}:5" in out and "grow" in out
    plan.write_text(
        "name: p\nsource: content-management\nstrategy: strangler_fig\n"
        "targets:\n  - service: content-workflow\n"
    )
    code, out = await cli(capsys, url, "migrate", "plan", "--file", str(plan))
    assert code == 2 and f"{plan}:5" in out and "no route 'content-workflow'" in out
    code, out = await cli(
        capsys,
        url,
        "migrate",
        "plan",
        "content-management",
        "--target",
        "content-delivery",
        "--steps",
        "10,x",
    )
    assert code == 2 and "--steps" in out
    code, out = await cli(capsys, url, "migrate", "show", "nothing-here")
    assert code == 1 and "no migration plan" in out


async def test_migrate_run_drives_a_plan_through_its_gates_on_live_windows(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = await cli(
        capsys,
        url,
        "migrate",
        "plan",
        "content-management",
        "--target",
        "content-delivery",
        "--name",
        "quick",
        "--steps",
        "50,100",
        "--interval",
        "1s",
        "--window",
        "2s",
        "--min-requests",
        "3",
    )
    assert code == 0, out

    async def traffic(store: object, stop: asyncio.Event) -> None:
        # A gateway replica's windows: healthy answers from the new service, every 100 ms.
        recorder = WindowRecorder(store, replica="replica-1", flush_seconds=0.2)  # type: ignore[arg-type]
        recorder.start()
        try:
            while not stop.is_set():
                for _ in range(5):
                    recorder.observe("content-delivery", "delivery", 200, 0.004)
                await asyncio.sleep(0.1)
        finally:
            await recorder.close()

    async with await open_store(url) as store:
        stop = asyncio.Event()
        writer = asyncio.create_task(traffic(store, stop))
        try:
            code, out = await cli(capsys, url, "migrate", "run", "quick", "--json")
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await writer
    assert code == 0, out
    record = json.loads(out.strip().splitlines()[-1])
    assert record["status"] == "waiting_approval"
    assert record["step_name"] == "retire content-management from content-delivery"
    code, out = await cli(capsys, url, "routes", "show", "content-delivery", "--json")
    weights = {b["name"]: b["weight"] for b in json.loads(out)["backends"]}
    assert weights == {"monolith": 0.0, "delivery": 100.0}
    code, out = await cli(capsys, url, "migrate", "status", "quick", "--json")
    view = json.loads(out)
    assert view["route"] == "content-delivery"
    assert view["weights"] == {"monolith": 0.0, "delivery": 100.0}
    # The person confirms; the runner retires the old backend and the plan completes.
    assert (await cli(capsys, url, "migrate", "approve", "quick", "--by", "dana"))[0] == 0
    code, out = await cli(capsys, url, "migrate", "run", "quick", "--json")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["status"] == "completed"
    code, out = await cli(capsys, url, "routes", "show", "content-delivery", "--json")
    assert [b["name"] for b in json.loads(out)["backends"]] == ["delivery"]
    # Every action went out as a CloudEvent on the bus (the SQL log here), none left behind.
    async with await open_store(url) as store:
        published = await store.fetch_all(
            "SELECT type FROM event_log WHERE source = 'hybridmesh/migration'"
        )
        left = await store.fetch_value(
            "SELECT COUNT(*) FROM event_outbox WHERE source = 'hybridmesh/migration'"
        )
    types = [row["type"] for row in published]
    assert types.count("migration.step.started") == 4 and "migration.completed" in types
    assert left == 0
