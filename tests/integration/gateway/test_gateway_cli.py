"""``hybridmesh routes``, ``keys`` and ``gateway`` from the command line, on real stores,
and a real gateway process picking up changes live."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from hybridmesh.cli.main import main
from hybridmesh.gateway.config import parse_routes
from hybridmesh.gateway.state import GatewayState, SnapshotWatcher
from hybridmesh.store import open_store


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


ROUTES = """\
routes:
  - name: shop
    match: {path: {prefix: /shop}}
    backends:
      - {name: old, url: "http://127.0.0.1:9101", weight: 100}
      - {name: new, url: "http://127.0.0.1:9102", weight: 0}
"""


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'mesh.db'}"
    monkeypatch.setenv("HYBRIDMESH_DATABASE_URL", url)
    return url


def test_apply_list_show_diff_and_set_weight(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    code, out, _ = run_cli(capsys, "routes", "apply", str(routes), "--json")
    assert code == 0 and json.loads(out) == {
        "created": ["shop"],
        "updated": [],
        "unchanged": [],
        "deleted": [],
    }
    code, out, _ = run_cli(capsys, "routes", "apply", str(routes), "--json")
    assert json.loads(out)["unchanged"] == ["shop"]

    code, out, _ = run_cli(capsys, "routes", "set-weight", "shop", "new", "25", "--json")
    assert code == 0 and json.loads(out) == {"route": "shop", "weights": {"old": 75.0, "new": 25.0}}

    code, out, _ = run_cli(capsys, "routes", "list", "--json")
    [row] = json.loads(out)
    assert [(b["name"], b["weight"]) for b in row["backends"]] == [("old", 75.0), ("new", 25.0)]

    code, out, _ = run_cli(capsys, "routes", "show", "shop", "--json")
    assert json.loads(out)["spec"]["backends"][1]["weight"] == 25.0

    code, out, _ = run_cli(capsys, "routes", "diff", str(routes), "--json")
    assert json.loads(out)["updated"] == ["shop"]  # the file still says 0 %

    code, _, err = run_cli(capsys, "routes", "set-weight", "shop", "nope", "5")
    assert code == 1 and "has no backend 'nope' (it has old, new)" in err
    code, _, err = run_cli(capsys, "routes", "set-weight", "shop", "new", "100.5")
    assert code == 2
    code, _, err = run_cli(capsys, "routes", "show", "missing")
    assert code == 1 and "no route 'missing'" in err


def test_a_bad_routes_file_exits_2_naming_file_line_and_field(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES.replace("weight: 0}", "weight: 10}"))
    code, _, err = run_cli(capsys, "routes", "apply", str(routes))
    assert code == 2
    assert f"{routes}:2: error: backend weights must add up to 100 (they add up to 110)" in err
    code, out, _ = run_cli(capsys, "routes", "validate", str(routes), "--json")
    assert code == 2 and json.loads(out)["valid"] is False
    assert not Path(db.removeprefix("sqlite:///")).exists()  # nothing was written


def test_a_route_naming_an_unregistered_service_is_refused_when_applied(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES.replace('url: "http://127.0.0.1:9102"', "service: content-delivery"))
    code, _, err = run_cli(capsys, "routes", "validate", str(routes))
    assert code == 0  # the registry is in the store: checked when applied
    code, _, err = run_cli(capsys, "routes", "apply", str(routes))
    assert code == 2
    assert f"{routes}:6: error [backends.1.service]" in err
    assert "'content-delivery', which is not registered" in err


def test_keys_are_shown_once_and_stored_hashed(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "keys", "create", "--consumer", "erp-batch", "--json")
    created = json.loads(out)
    assert code == 0 and created["key"].startswith("hmk_")
    code, out, _ = run_cli(capsys, "keys", "list", "--json")
    [listed] = json.loads(out)
    assert "key" not in listed and listed["status"] == "active"
    assert created["key"] not in Path(db.removeprefix("sqlite:///")).read_bytes().decode("latin-1")
    code, out, _ = run_cli(capsys, "keys", "revoke", created["id"], "--json")
    assert json.loads(out)["status"] == "revoked"
    code, _, _err = run_cli(capsys, "keys", "create", "--consumer", "Bad Name")
    assert code == 2


async def test_replicas_on_postgresql_hear_a_change_at_once(postgres_url: str) -> None:
    store = await open_store(postgres_url)
    await store.upgrade()
    other = await open_store(postgres_url)
    try:
        seen: list[int] = []
        changed = asyncio.Event()

        def on_change(snapshot: object) -> None:
            seen.append(snapshot.revision)  # type: ignore[attr-defined]
            changed.set()

        watcher = SnapshotWatcher(GatewayState(other), on_change, poll_seconds=30)
        await watcher.start()
        changed.clear()
        try:
            await GatewayState(store).apply(parse_routes(ROUTES, "routes.yaml"))
            # Polling every 30 s: only the NOTIFY can make this quick.
            await asyncio.wait_for(changed.wait(), 3)
            assert watcher.current.table.by_name.keys() == {"shop"}
        finally:
            await watcher.close()
    finally:
        await other.close()
        await store.close()


# -- a real gateway process ----------------------------------------------------------------


@pytest.fixture
def upstreams() -> Iterator[dict[str, str]]:
    """Two real upstreams, old and new, in a thread of their own event loop."""
    import threading

    loop = asyncio.new_event_loop()
    urls: dict[str, str] = {}
    runners: list[web.AppRunner] = []

    async def start(name: str) -> None:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response({"who": name})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        urls[name] = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    for name in ("old", "new"):
        asyncio.run_coroutine_threadsafe(start(name), loop).result(10)
    yield urls
    for runner in runners:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_a_gateway_process_shifts_traffic_live_and_stops_cleanly(
    tmp_path: Path, upstreams: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    database = f"sqlite:///{tmp_path / 'mesh.db'}"
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        ROUTES.replace("http://127.0.0.1:9101", upstreams["old"]).replace(
            "http://127.0.0.1:9102", upstreams["new"]
        )
    )
    env = {**os.environ, "HYBRIDMESH_DATABASE_URL": database, "HYBRIDMESH_LOG_LEVEL": "WARNING"}
    os.environ["HYBRIDMESH_DATABASE_URL"] = database
    try:
        assert run_cli(capsys, "routes", "apply", str(routes))[0] == 0
        process = subprocess.Popen(
            [sys.executable, "-m", "hybridmesh", "gateway", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("gateway listening on "), line
            base = line.split()[-1]

            async def traffic() -> list[str]:
                async with aiohttp.ClientSession() as session:
                    whos = []
                    for _ in range(20):
                        async with session.get(base + "/shop/x") as response:
                            whos.append((await response.json())["who"])
                    return whos

            assert set(asyncio.run(traffic())) == {"old"}
            assert run_cli(capsys, "routes", "set-weight", "shop", "new", "100")[0] == 0
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if set(asyncio.run(traffic())) == {"new"}:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the gateway did not take the new weight within 5 s")
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(15) == 0
    finally:
        del os.environ["HYBRIDMESH_DATABASE_URL"]


def test_commands_that_only_read_create_nothing(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    for args in (
        ("routes", "list", "--json"),
        ("keys", "list", "--json"),
        ("routes", "diff", str(routes), "--json"),
        ("routes", "validate", str(routes)),
    ):
        code, _, _ = run_cli(capsys, *args)
        assert code == 0, args
    assert not Path(db.removeprefix("sqlite:///")).exists()
    code, _, err = run_cli(capsys, "routes", "show", "shop")
    assert code == 1 and "no route 'shop'" in err


def test_delete_says_whether_there_was_a_route(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    assert run_cli(capsys, "routes", "apply", str(routes))[0] == 0
    code, out, _ = run_cli(capsys, "routes", "delete", "shop", "--json")
    assert code == 0 and json.loads(out) == {"route": "shop", "deleted": True}
    code, out, err = run_cli(capsys, "routes", "delete", "shop", "--json")
    assert code == 1 and json.loads(out) == {"route": "shop", "deleted": False}
    assert "no route 'shop'" in err


def test_routes_show_never_prints_a_shared_secret(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "a-shared-secret-of-at-least-32-bytes!!"
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        ROUTES + f'    policies:\n      jwt: {{algorithms: [HS256], secret: "{secret}"}}\n'
    )
    assert run_cli(capsys, "routes", "apply", str(routes))[0] == 0
    for args in (("routes", "show", "shop", "--json"), ("routes", "show", "shop")):
        code, out, _ = run_cli(capsys, *args)
        assert code == 0 and secret not in out and "********" in out
