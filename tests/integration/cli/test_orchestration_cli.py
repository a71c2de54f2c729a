"""``hybridmesh definitions|saga|workflow|executions``: from YAML to a finished saga."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

SAGA = """
saga_type: shop-order
steps:
  - step_id: reserve
    service_name: stock
    operation: reserve
    payload: {{sku: "{{{{ input.sku }}}}"}}
    compensation_operation: release
    timeout: 2000
    retry_policy: {{max_attempts: 1, backoff_ms: 10}}
  - step_id: charge
    service_name: payments
    operation: charge
    payload: {{amount: "{{{{ input.amount }}}}"}}
    timeout: 2000
    retry_policy: {{max_attempts: 1, backoff_ms: 10}}
"""

SERVICES = """
- name: stock
  architecture: modular-monolith
  version: v1
  base_url: {url}
- name: payments
  architecture: microservice
  version: v1
  base_url: {url}
"""


@pytest.fixture
def shop() -> Iterator[tuple[str, list[str]]]:
    """The services the saga calls, on loopback, in a thread of their own (the CLI runs
    its own event loop)."""
    calls: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        calls.append(request.path)
        body = await request.json()
        if request.path.endswith("/charge") and float(body.get("amount", 0)) > 100:
            return web.json_response({"title": "declined"}, status=402)
        return web.json_response({"ok": True})

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/operations/{op}", handle)
    runner = web.AppRunner(app, access_log=None)

    async def begin() -> str:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    url = asyncio.run_coroutine_threadsafe(begin(), loop).result(10)
    try:
        yield url, calls
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("HYBRIDMESH_DATABASE_URL", f"sqlite:///{tmp_path / 'mesh.db'}")
    monkeypatch.setenv("HYBRIDMESH_EXCHANGE_DIR", str(tmp_path / "exchange"))
    monkeypatch.delenv("HYBRIDMESH_EVENTS_URL", raising=False)
    yield tmp_path


@pytest.fixture
def main(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    def call(*args: str) -> tuple[int, str, str]:
        from hybridmesh.cli.main import main as entry

        with pytest.raises(SystemExit) as done:
            entry(list(args))
        out, err = capsys.readouterr()
        return int(done.value.code or 0), out, err

    return call


def test_a_saga_from_yaml_completes_and_shows_its_timeline(
    workspace: Path, shop: tuple[str, list[str]], main: Callable[..., tuple[int, str, str]]
) -> None:
    url, calls = shop
    (workspace / "services.yaml").write_text(SERVICES.format(url=url))
    (workspace / "shop.yaml").write_text(SAGA.format())
    (workspace / "order.json").write_text(json.dumps({"sku": "A-1", "amount": 10}))
    assert main("registry", "load", str(workspace / "services.yaml"))[0] == 0
    code, out, _ = main("definitions", "load", str(workspace / "shop.yaml"), "--json")
    assert code == 0
    assert json.loads(out) == [{"kind": "saga", "name": "shop-order", "version": 1}]

    code, out, _ = main(
        "saga", "start", "shop-order", "--input", str(workspace / "order.json"), "--json"
    )
    assert code == 0, out
    execution = json.loads(out)
    assert execution["status"] == "completed"
    assert calls == ["/operations/reserve", "/operations/charge"]

    code, out, _ = main("executions", "show", execution["id"], "--json")
    shown = json.loads(out)
    timeline = [h["type"] for h in shown["history"]]
    assert (timeline[0], timeline[-1]) == ("execution.started", "execution.completed")
    code, out, _ = main("executions", "show", execution["id"])
    assert code == 0 and "history" in out and "step.completed" in out

    code, out, _ = main("executions", "list", "--status", "completed", "--json")
    assert [e["id"] for e in json.loads(out)] == [execution["id"]]


def test_a_declined_payment_compensates_and_exits_1(
    workspace: Path, shop: tuple[str, list[str]], main: Callable[..., tuple[int, str, str]]
) -> None:
    url, calls = shop
    (workspace / "services.yaml").write_text(SERVICES.format(url=url))
    (workspace / "shop.yaml").write_text(SAGA.format())
    (workspace / "order.yaml").write_text("sku: A-1\namount: 500\n")
    main("registry", "load", str(workspace / "services.yaml"))
    code, out, _ = main(
        "saga",
        "start",
        "shop-order",
        "--definitions",
        str(workspace / "shop.yaml"),
        "--input",
        str(workspace / "order.yaml"),
        "--json",
    )
    assert code == 1
    assert json.loads(out)["status"] == "compensated"
    assert calls == ["/operations/reserve", "/operations/charge", "/operations/release"]


def test_bad_definitions_exit_2_naming_file_line_and_field(
    workspace: Path, main: Callable[..., tuple[int, str, str]]
) -> None:
    (workspace / "bad.yaml").write_text(
        "saga_type: broken\nsteps:\n  - step_id: a\n    service_name: nowhere\n"
        "    operation: x\n    completion: later\n"
    )
    code, _, err = main("definitions", "validate", str(workspace / "bad.yaml"))
    assert code == 2
    assert "bad.yaml:4" in err and "nowhere" in err
    assert "bad.yaml:6" in err and "completion" in err


def test_bad_input_file_exits_2(workspace: Path, main: Callable[..., tuple[int, str, str]]) -> None:
    (workspace / "in.json").write_text("{not json")
    code, _, err = main("saga", "start", "shop-order", "--input", str(workspace / "in.json"))
    assert code == 2
    assert "in.json" in err
    code, _, err = main("saga", "start", "shop-order", "--input", str(workspace / "none.json"))
    assert code == 2
    assert "none.json" in err and "cannot read the input" in err


def test_unknown_execution_exits_1(
    workspace: Path, main: Callable[..., tuple[int, str, str]]
) -> None:
    code, _, err = main("executions", "show", "nope")
    assert code == 1
    assert "no execution 'nope'" in err


def test_detached_start_waits_for_a_worker_and_cancel_applies_there(
    workspace: Path, main: Callable[..., tuple[int, str, str]]
) -> None:
    (workspace / "s.yaml").write_text(
        "- name: stock\n  architecture: modular-monolith\n  version: v1\n"
        "  base_url: http://127.0.0.1:9\n"
    )
    (workspace / "shop.yaml").write_text(
        "saga_type: parked\nsteps:\n  - step_id: reserve\n    service_name: stock\n"
        "    operation: reserve\n"
    )
    main("registry", "load", str(workspace / "s.yaml"))
    main("definitions", "load", str(workspace / "shop.yaml"))
    code, out, _ = main("saga", "start", "parked", "--detach", "--json")
    assert code == 0
    started = json.loads(out)
    assert started["status"] == "running"
    code, out, _ = main("executions", "list", "--status", "running", "--json")
    assert [e["id"] for e in json.loads(out)] == [started["id"]]
    assert main("executions", "cancel", started["id"])[0] == 0


def test_validate_reads_the_services_from_services_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, main: Callable[..., tuple[int, str, str]]
) -> None:
    monkeypatch.delenv("HYBRIDMESH_DATABASE_URL", raising=False)
    monkeypatch.delenv("HYBRIDMESH_REGISTRY_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "services.yaml").write_text(SERVICES.format(url="http://127.0.0.1:9"))
    (tmp_path / "shop.yaml").write_text(SAGA.format())
    before = sorted(p.name for p in tmp_path.iterdir())

    code, out, err = main("definitions", "validate", "shop.yaml", "--services", "services.yaml")

    assert (code, err) == (0, "")
    assert "1 definitions are valid" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no .hybridmesh/mesh.db


def test_validate_without_services_says_how_to_name_them(
    workspace: Path, main: Callable[..., tuple[int, str, str]]
) -> None:
    (workspace / "shop.yaml").write_text(SAGA.format())

    code, _, err = main("definitions", "validate", str(workspace / "shop.yaml"))

    assert code == 2
    assert "unknown service 'stock'" in err
    assert "--services PATH" in err and "hybridmesh registry load" in err


def test_saga_start_takes_its_services_from_services(
    workspace: Path, shop: tuple[str, list[str]], main: Callable[..., tuple[int, str, str]]
) -> None:
    url, calls = shop
    (workspace / "services.yaml").write_text(SERVICES.format(url=url))
    (workspace / "shop.yaml").write_text(SAGA.format())
    (workspace / "order.json").write_text(json.dumps({"sku": "A-1", "amount": 10}))

    code, out, _ = main(
        "saga",
        "start",
        "shop-order",
        "--services",
        str(workspace / "services.yaml"),
        "--definitions",
        str(workspace / "shop.yaml"),
        "--input",
        str(workspace / "order.json"),
        "--json",
    )

    assert code == 0, out
    assert json.loads(out)["status"] == "completed"
    assert calls == ["/operations/reserve", "/operations/charge"]


def test_a_worker_takes_its_services_from_services(workspace: Path) -> None:
    (workspace / "services.yaml").write_text(SERVICES.format(url="http://127.0.0.1:9"))
    (workspace / "shop.yaml").write_text(SAGA.format())
    env = {**os.environ, "HYBRIDMESH_LOG_LEVEL": "WARNING"}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hybridmesh",
            "worker",
            "--services",
            str(workspace / "services.yaml"),
            "--definitions",
            str(workspace / "shop.yaml"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert worker.stdout is not None
        seen = [worker.stdout.readline(), worker.stdout.readline()]
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    # Without --services the stored registry is empty: the definitions would not load.
    assert seen[0].strip() == "loaded saga shop-order v1", err
    assert "running" in seen[1]
    assert worker.returncode == 0, err


def test_saga_start_without_services_says_how_to_name_them(
    workspace: Path, main: Callable[..., tuple[int, str, str]]
) -> None:
    (workspace / "shop.yaml").write_text(SAGA.format())

    code, _, err = main(
        "saga", "start", "shop-order", "--definitions", str(workspace / "shop.yaml")
    )

    assert code == 2
    assert "unknown service 'stock'" in err and "--services PATH" in err


# -- what validation refuses, what loading stores, what starts ------------------------------


def stored_versions(main: Callable[..., tuple[int, str, str]]) -> list[dict[str, Any]]:
    code, out, _ = main("definitions", "list", "--json")
    assert code == 0
    return list(json.loads(out))


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("retry_policy: {max_attempts: 2, multiplier: .inf}", "retry_policy.multiplier", "finite"),
        ("retry_policy: {max_attempts: 2, multiplier: .nan}", "retry_policy.multiplier", "finite"),
        ("timeout: 99999999999999999999999", "timeout", "must be at most 86400000 ms"),
        ("payload: {n: 99999999999999999999}", "payload.n", "within 64 bits"),
        ("payload: {x: '{{ nothere.x }}'}", "payload.x", "unknown root 'nothere'"),
        ("payload: {x: '{{ 1+1 }}'}", "payload.x", "'1+1' is not a path"),
        ("payload: {x: '{{ context.charge.id }}'}", "payload.x", "step 'charge' has not run"),
    ],
)
def test_validate_and_load_refuse_alike_and_load_stores_nothing(
    workspace: Path,
    main: Callable[..., tuple[int, str, str]],
    line: str,
    field: str,
    message: str,
) -> None:
    (workspace / "services.yaml").write_text(SERVICES.format(url="http://127.0.0.1:9"))
    assert main("registry", "load", str(workspace / "services.yaml"))[0] == 0
    bad = workspace / "shop.yaml"
    bad.write_text(
        "saga_type: shop-order\nsteps:\n  - step_id: reserve\n    service_name: stock\n"
        f"    operation: reserve\n    {line}\n"
        "  - step_id: charge\n    service_name: payments\n    operation: charge\n"
    )

    validated = main("definitions", "validate", str(bad))
    loaded = main("definitions", "load", str(bad))

    assert validated[0] == loaded[0] == 2
    assert validated[2] == loaded[2]
    (error,) = validated[2].strip().splitlines()
    assert error.startswith(f"{bad}:6: error [steps[0].{field}]: ")
    assert message in error
    assert "Traceback" not in loaded[2]
    assert stored_versions(main) == []


BROKEN_BY_AN_OLDER_RELEASE: dict[str, Callable[[dict[str, Any]], None]] = {
    "an infinite multiplier, stored as null": lambda plan: plan["steps"][0]["retry"].update(
        multiplier=None
    ),
    "an operation outside /operations/": lambda plan: plan["steps"][0]["operation"].update(
        endpoint="/operations/../../admin?x=1"
    ),
}


def store_as_an_older_release_did(
    workspace: Path, name: str, version: int, change: Callable[[dict[str, Any]], None]
) -> None:
    """Store ``version`` of ``name`` as a copy of version 1 with ``change`` made, as a
    release that did not check what it stored could have."""
    with sqlite3.connect(workspace / "mesh.db") as db:
        (body,) = db.execute(
            "SELECT body FROM orch_definitions WHERE name = ? AND version = 1", (name,)
        ).fetchone()
        plan = json.loads(body)
        plan["version"] = version
        change(plan)
        db.execute(
            "INSERT INTO orch_definitions (kind, name, version, digest, body, source, created_at)"
            " VALUES ('saga', ?, ?, 'old', ?, 'old.yaml:1', 0)",
            (name, version, json.dumps(plan)),
        )


@pytest.mark.parametrize("broken", list(BROKEN_BY_AN_OLDER_RELEASE))
def test_a_stored_version_that_cannot_run_is_refused_in_one_line_and_can_be_retired(
    workspace: Path,
    shop: tuple[str, list[str]],
    main: Callable[..., tuple[int, str, str]],
    broken: str,
) -> None:
    url, calls = shop
    (workspace / "services.yaml").write_text(SERVICES.format(url=url))
    (workspace / "shop.yaml").write_text(SAGA.format())
    (workspace / "order.json").write_text(json.dumps({"sku": "A-1", "amount": 10}))
    assert main("registry", "load", str(workspace / "services.yaml"))[0] == 0
    assert main("definitions", "load", str(workspace / "shop.yaml"))[0] == 0
    store_as_an_older_release_did(workspace, "shop-order", 2, BROKEN_BY_AN_OLDER_RELEASE[broken])
    order = ("--input", str(workspace / "order.json"))

    code, _, err = main("saga", "start", "shop-order", *order)

    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("error: saga 'shop-order' version 2 cannot run: [steps[0].")
    assert line.endswith(
        "retire it (hybridmesh definitions retire shop-order --version 2) and load a fixed "
        "definition"
    )
    assert calls == []

    code, out, _ = main("definitions", "retire", "shop-order", "--version", "2")
    assert (code, out.strip()) == (0, "retired saga shop-order v2; new executions use v1")
    assert [v["retired_at"] is not None for v in stored_versions(main)] == [False, True]

    code, out, _ = main("saga", "start", "shop-order", *order, "--json")
    assert code == 0, out
    assert (json.loads(out)["version"], json.loads(out)["status"]) == (1, "completed")
    assert calls == ["/operations/reserve", "/operations/charge"]

    code, _, err = main("saga", "start", "shop-order", *order, "--version", "2")
    assert code == 1
    assert (
        err.strip() == "error: saga 'shop-order' version 2 is retired: it starts no new executions"
    )


def test_a_stored_version_whose_body_is_no_longer_json_is_refused_in_one_line(
    workspace: Path, main: Callable[..., tuple[int, str, str]]
) -> None:
    (workspace / "services.yaml").write_text(SERVICES.format(url="http://127.0.0.1:9"))
    (workspace / "shop.yaml").write_text(SAGA.format())
    main("registry", "load", str(workspace / "services.yaml"))
    main("definitions", "load", str(workspace / "shop.yaml"))
    with sqlite3.connect(workspace / "mesh.db") as db:
        db.execute("UPDATE orch_definitions SET body = substr(body, 1, 40) WHERE version = 1")

    code, _, err = main("saga", "start", "shop-order", "--detach")

    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith(
        "error: saga 'shop-order' version 1 cannot run: its stored body is not JSON: "
    )
    assert line.endswith(
        "retire it (hybridmesh definitions retire shop-order --version 1) and load a fixed "
        "definition"
    )
    assert main("executions", "list", "--json")[1].strip() == "[]"


def test_retiring_every_version_leaves_nothing_to_start_until_a_new_one_is_loaded(
    workspace: Path, main: Callable[..., tuple[int, str, str]]
) -> None:
    (workspace / "services.yaml").write_text(SERVICES.format(url="http://127.0.0.1:9"))
    (workspace / "shop.yaml").write_text(SAGA.format())
    main("registry", "load", str(workspace / "services.yaml"))
    main("definitions", "load", str(workspace / "shop.yaml"))

    code, out, _ = main("definitions", "retire", "shop-order", "--version", "1")
    assert out.strip() == (
        "retired saga shop-order v1; no version is left to start: load a fixed definition"
    )
    assert main("definitions", "retire", "shop-order", "--version", "1")[0] == 0  # again
    code, _, err = main("saga", "start", "shop-order", "--detach")
    assert (code, err.strip()) == (
        1,
        "error: every version of saga 'shop-order' is retired: register a new one",
    )

    code, out, _ = main("definitions", "load", str(workspace / "shop.yaml"), "--json")
    assert json.loads(out) == [{"kind": "saga", "name": "shop-order", "version": 2}]
    assert main("saga", "start", "shop-order", "--detach")[0] == 0

    assert main("definitions", "retire", "shop-order", "--version", "7")[0] == 1
    code, _, err = main("definitions", "retire", "nothing", "--version", "1")
    assert (code, err.strip()) == (1, "error: no saga or workflow 'nothing' in the catalog")


@pytest.mark.parametrize(
    "args",
    [
        ("saga", "start", "shop-order", "--timeout", "nan"),
        ("saga", "start", "shop-order", "--timeout", "inf"),
        ("saga", "start", "shop-order", "--version", "99999999999999999999"),
        ("executions", "list", "--limit", "99999999999999999999"),
        ("executions", "list", "--limit", "0"),
        ("worker", "--lease", "nan"),
        ("worker", "--grace", "-1"),
        ("worker", "--max-executions", "99999999999999999999"),
        ("definitions", "retire", "shop-order", "--version", "0"),
        ("batch", "runs", "--limit", "99999999999999999999"),
        ("review", "list", "--limit", "99999999999999999999"),
        ("dlq", "list", "--limit", "99999999999999999999"),
        ("events", "tail", ">", "--count", "0"),
        ("serve", "--port", "65536"),
    ],
)
def test_number_options_out_of_bounds_are_usage_errors(
    workspace: Path, main: Callable[..., tuple[int, str, str]], args: tuple[str, ...]
) -> None:
    code, _, err = main(*args)

    assert code == 2
    assert f"Invalid value for '{args[-2]}'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("value", "message"),
    [("abc", "must be a whole number"), ("99999", "must be at most 65535")],
)
def test_a_bad_number_in_the_environment_names_its_variable(
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    main: Callable[..., tuple[int, str, str]],
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv("HYBRIDMESH_HTTP_PORT", value)

    code, _, err = main("definitions", "list")

    assert (code, err.strip()) == (2, f"error [HYBRIDMESH_HTTP_PORT]: {message}")


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("amount: .nan\n", "amount", "must be a finite number"),
        ("items: [1, .inf]\n", "items[1]", "must be a finite number"),
        (
            "n: 99999999999999999999\n",
            "n",
            "must be a whole number within 64 bits (-9223372036854775808 to 18446744073709551615)",
        ),
    ],
)
def test_an_input_json_cannot_carry_is_refused_naming_its_field(
    workspace: Path,
    main: Callable[..., tuple[int, str, str]],
    text: str,
    field: str,
    message: str,
) -> None:
    (workspace / "order.yaml").write_text(text)

    code, _, err = main("saga", "start", "shop-order", "--input", str(workspace / "order.yaml"))

    assert (code, err.strip()) == (2, f"{workspace / 'order.yaml'}: error [{field}]: {message}")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"n": 99999999999999999999}', "n"),
        ('{"order": {"lines": [1, -9223372036854775809]}}', "order.lines[1]"),
    ],
)
def test_a_json_input_number_beyond_64_bits_is_refused_not_rounded(
    workspace: Path, main: Callable[..., tuple[int, str, str]], text: str, field: str
) -> None:
    # orjson would read it as a float and lose its last digits; it is refused instead.
    path = workspace / "order.json"
    path.write_text(text)

    code, _, err = main("saga", "start", "shop-order", "--input", str(path))

    assert (code, err.strip()) == (
        2,
        f"{path}: error [{field}]: must be a whole number within 64 bits "
        "(-9223372036854775808 to 18446744073709551615)",
    )
