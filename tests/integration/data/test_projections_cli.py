"""``hybridmesh projections list`` and ``rebuild``, in-process, on SQLite and PostgreSQL,
with the SQL log in the state store."""

from __future__ import annotations

import json

import pytest
from tests.cli_in_process import run_cli, run_cli_parts

from hybridmesh.events import CloudEvent, EventBus
from hybridmesh.events.backends.sql import Retention, SqlEventBackend
from hybridmesh.store import open_store

from .order_totals import order_totals, placed, totals

DEFINITION = "tests.integration.data.order_totals:order_totals"


@pytest.fixture(autouse=True)
def sql_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYBRIDMESH_EVENTS_URL", raising=False)


async def consume(database_url: str, events: list[CloudEvent], *, keep: int | None = None) -> None:
    """Publish ``events`` and have the projection consume them, as a service would; then
    trim the log to its newest ``keep`` events."""
    store = await open_store(database_url)
    await store.upgrade()
    backend = SqlEventBackend(store)
    bus = EventBus(backend, owns_backend=False)
    try:
        await order_totals.open(store)
        order_totals.attach(bus)
        await bus.publish_many(events)
        await bus.drain()
        if keep is not None:
            await SqlEventBackend(store, retention=Retention(max_events=keep)).trim()
    finally:
        await order_totals.close()
        await bus.close()
        await backend.close()
        await store.close()


async def table(database_url: str) -> dict[str, tuple[int, int]]:
    async with await open_store(database_url) as store:
        return await totals(store)


async def test_list_shows_nothing_before_any_projection_ran(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    code, out, _ = await run_cli_parts(capsys, database_url, "projections", "list", "--json")
    assert (code, json.loads(out)) == (0, [])


async def test_list_shows_each_projection_and_how_far_it_got(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    await consume(database_url, [placed("O-1", "ada", 30), placed("O-2", "bob", 5)])

    code, out, _ = await run_cli_parts(capsys, database_url, "projections", "list", "--json")
    assert code == 0
    [listed] = json.loads(out)
    assert listed["name"] == "order-totals" and listed["pattern"] == "orders.*"
    assert (listed["events_applied"], listed["status"], listed["partial"]) == (2, "idle", False)
    assert listed["checkpoint"] == 2
    assert listed["import_path"] == DEFINITION
    assert listed["group"] == "projection-order-totals"
    assert listed["last_event_at"] is not None

    code, out = await run_cli(capsys, database_url, "projections", "list")
    assert code == 0
    assert "order-totals" in out and "orders.*" in out and "idle" in out


async def test_rebuild_applies_the_log_again_and_reports_it(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    await consume(database_url, [placed("O-1", "ada", 30), placed("O-2", "ada", 12)])
    async with await open_store(database_url) as store:
        await store.execute("DELETE FROM order_totals")

    code, out, _ = await run_cli_parts(
        capsys, database_url, "projections", "rebuild", "order-totals", "--json"
    )
    assert code == 0
    result = json.loads(out)
    assert (result["rebuilt"], result["applied"], result["checkpoint"]) == (True, 2, 2)
    assert (result["lost"], result["partial"]) == (None, False)
    assert await table(database_url) == {"ada": (2, 42)}

    code, out = await run_cli(capsys, database_url, "projections", "rebuild", "order-totals")
    assert code == 0
    assert "rebuilt order-totals: 2 event(s) applied, checkpoint 2" in out


async def test_rebuild_after_the_log_was_trimmed_exits_1_naming_the_lost_positions(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    events = [placed(f"O-{n}", "ada", n) for n in range(1, 5)]
    await consume(database_url, events, keep=1)  # positions 1 to 3 are gone

    code, out = await run_cli(capsys, database_url, "projections", "rebuild", "order-totals")
    assert code == 1
    assert "3 event(s) it applied, at log positions 1 to 3, are gone" in out
    assert "--allow-gap" in out
    assert await table(database_url) == {"ada": (4, 10)}  # unchanged

    code, out, _ = await run_cli_parts(
        capsys, database_url, "projections", "rebuild", "order-totals", "--json"
    )
    assert code == 1
    refused = json.loads(out)
    assert refused["rebuilt"] is False
    assert refused["lost"] == {"count": 3, "lowest": 1, "highest": 3, "first_retained": 4}

    code, out, err = await run_cli_parts(
        capsys, database_url, "projections", "rebuild", "order-totals", "--allow-gap"
    )
    assert code == 0
    assert "rebuilt order-totals: 1 event(s) applied" in out
    assert "order-totals is partial: 3 event(s)" in err
    assert await table(database_url) == {"ada": (1, 4)}
    code, out, _ = await run_cli_parts(capsys, database_url, "projections", "list", "--json")
    [listed] = json.loads(out)
    assert (listed["partial"], listed["missing_events"], listed["missing_upto"]) == (True, 3, 3)


async def test_rebuild_of_an_unknown_projection_exits_1(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    code, out = await run_cli(capsys, database_url, "projections", "rebuild", "nothing-here")
    assert code == 1
    assert "no projection 'nothing-here' is registered" in out


async def test_rebuild_with_a_module_that_does_not_define_it_exits_2(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    for module, says in [
        ("tests.integration.data.no_such_module:x", "cannot import"),
        ("tests.integration.data.order_totals:nothing", "has no 'nothing'"),
        ("tests.integration.data.order_totals:PATTERN", "is a str, not a hybridmesh Projection"),
        ("order_totals", "write MODULE:ATTRIBUTE"),
    ]:
        code, out = await run_cli(
            capsys, database_url, "projections", "rebuild", "order-totals", "--module", module
        )
        assert code == 2, out
        assert says in out
    code, out = await run_cli(
        capsys, database_url, "projections", "rebuild", "other", "--module", DEFINITION
    )
    assert code == 2
    assert "is projection 'order-totals', not 'other'" in out


async def test_rebuild_loads_a_projection_never_registered_from_its_module(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    code, out, _ = await run_cli_parts(
        capsys,
        database_url,
        "projections", "rebuild", "order-totals", "--module", DEFINITION, "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["applied"] == 0
    code, out, _ = await run_cli_parts(capsys, database_url, "projections", "list", "--json")
    assert [p["import_path"] for p in json.loads(out)] == [DEFINITION]
