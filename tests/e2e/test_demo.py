"""`hybridmesh demo` end to end, as a user runs it: judged by what it leaves behind (its exit
status, the store, the files it wrote and its JSON log), not by the wording of its output."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]")


def test_demo_runs_the_reference_system_and_shows_resilience(tmp_path: Path) -> None:
    database = tmp_path / "mesh.db"
    env = {**os.environ, "HYBRIDMESH_DATABASE_URL": f"sqlite:///{database}", "COLUMNS": "200"}

    def hybridmesh(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hybridmesh", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=timeout,
        )

    def listed(*args: str) -> Any:
        done = hybridmesh(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    # It exits 0 only when every part behaved: the calls, the cached answer while
    # legacy-erp was down, its breaker opening and closing again, the event pushed over
    # WebSocket, the dead letter and its replay, the sagas, the workflow and the batch.
    # Then it serves the dashboard, printing its URL and a token, until Ctrl-C.
    output = _demo_serving_the_dashboard(env, tmp_path)
    assert "demo.log" in output  # the summary, before the dashboard

    # The registry it loaded is in the store.
    services = listed("registry", "list")
    assert len(services) == 14 and "legacy-erp" in {s["name"] for s in services}

    # One order saga completed, one was compensated (its stock released), and the
    # onboarding workflow completed.
    executions = listed("executions", "list")
    ended = sorted((e["kind"], e["name"], e["status"]) for e in executions)
    assert ended == [
        ("saga", "order-processing", "compensated"),
        ("saga", "order-processing", "completed"),
        ("workflow", "user-onboarding", "completed"),
    ]
    [declined] = [e for e in executions if e["status"] == "compensated"]
    steps = {s["step_id"]: s for s in listed("executions", "show", declined["id"])["steps"]}
    assert steps["process-payment"]["status"] == "failed"
    assert steps["reserve-inventory"]["compensation"] == "compensated"

    # The poison event was dead-lettered for notification-services, then replayed.
    [letter] = listed("dlq", "list")
    assert letter["group"] == "notification-services"
    assert letter["event"]["type"] == "order.shipped" and letter["attempts"] == 3
    assert letter["reason"].startswith("TemplateMissing")
    assert letter["replayed_at"] is not None

    # The event log: a command between microservices went as an event, every event carries
    # its trace context, and notification-services has settled the replay (it did not fail
    # again: there is no second dead letter).
    with sqlite3.connect(database) as db:
        log = [(t, json.loads(body)) for t, body in db.execute("SELECT type, body FROM event_log")]
        replays_unsettled = db.execute(
            "SELECT COUNT(*) FROM event_log l JOIN event_positions p"
            " ON p.partition = l.partition AND p.group_name = l.only_group"
            " WHERE l.only_group = 'notification-services' AND l.seq > p.position"
        ).fetchone()[0]
    types = [t for t, _ in log]
    assert "payment.process" in types
    assert types.count("order.shipped") == 2  # published, and replayed to its group
    assert {"saga.completed", "saga.compensated", "workflow.completed"} <= set(types)
    assert all(TRACEPARENT.fullmatch(body.get("traceparent", "")) for _, body in log)
    assert replays_unsettled == 0

    # The legacy-erp batch: one run, one CSV file in the exchange folder, with the record.
    [run] = listed("batch", "runs")
    assert (run["target"], run["format"], run["records"], run["status"]) == (
        "legacy-erp",
        "csv",
        1,
        "sent",
    )
    [written] = (tmp_path / ".hybridmesh" / "exchange" / "legacy-erp" / "outbox").glob("*.csv")
    assert (tmp_path / run["location"]) == written
    with written.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [(r["name"], r["email"]) for r in rows] == [("Mary Jackson", "mary@example.com")]

    # The JSON log: one object per line; legacy-erp's breaker opened and closed again, and
    # the one error is the dead letter.
    records = [
        json.loads(line)
        for line in (tmp_path / ".hybridmesh" / "demo.log").read_text("utf-8").splitlines()
    ]
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    moves = [(r["from_state"], r["to_state"]) for r in records if r.get("circuit") == "legacy-erp"]
    assert moves[0] == ("closed", "open") and moves[-1] == ("half_open", "closed")
    errors = [r for r in records if r["level"] == "ERROR"]
    assert [r["logger"] for r in errors] == ["hybridmesh.events"]

    # The gateway part left its routes, its key and a recorded parallel-run mismatch in the
    # store: content delivery was moved to the new service live, and the mirror caught the
    # one title content-delivery renders differently.
    routes = {r["name"]: r for r in listed("routes", "list")}
    assert {"legacy-erp", "legacy-erp-xml", "content-creation", "content-delivery"} <= set(routes)
    delivery = {b["name"]: b["weight"] for b in routes["content-delivery"]["backends"]}
    assert delivery == {"monolith": 0.0, "delivery": 100.0}
    [key] = listed("keys", "list")
    assert key["consumer"] == "warehouse-terminals" and key["status"] == "active"
    mismatches = listed("routes", "mismatches", "content-delivery")
    assert mismatches and mismatches[0]["path"] == "/content/3"
    assert any(d.get("path") == "title" for d in mismatches[0]["differences"])

    # The migration part left its two plans: publishing carved out to content-workflow
    # (content-management retired from the route after approval), and content-creation
    # rolled back to 0 % by its gate after the injected fault, with the audit to show it.
    plans = {p["name"]: p for p in listed("migrate", "list")}
    assert plans["carve-workflow"]["status"] == "completed"
    assert plans["carve-creation"]["status"] == "rolled_back"
    assert "error rate" in plans["carve-creation"]["reason"]
    workflow = {b["name"]: b["weight"] for b in routes["content-workflow"]["backends"]}
    assert workflow == {"workflow": 100.0}
    creation = {b["name"]: b["weight"] for b in routes["content-creation"]["backends"]}
    assert creation["creation"] == 0.0
    audit = [e["action"] for e in listed("migrate", "audit", "carve-creation")]
    assert audit[-2:] == ["migration.gate.failed", "migration.rolled_back"]
    workflow_audit = listed("migrate", "audit", "carve-workflow")
    approvals = [e for e in workflow_audit if e["action"] == "migration.approve"]
    assert approvals and approvals[0]["actor"] == "demo"
    summary = {p["name"]: p for p in listed("migrate", "list")}["summary-v2"]
    assert summary["status"] == "completed" and summary["strategy"] == "branch_by_abstraction"
    flag = listed("flags", "show", "content-summary")
    assert flag["rollout"] == {"new": 100.0}
    [experiment] = listed("experiments", "list")
    assert experiment["verdict"] == "rejected"

    # The data part moved legacy-erp's customers to user-service: the replication backfilled
    # and was retired by its completed database_decomposition plan, reconciliation found the
    # five injected differences and repaired them, the last run found none, a conflict was
    # filed for review, and the bridge fed analytics-reporting's read model.
    data = {r["name"]: r for r in listed("replicate", "list")}
    customers = data["erp-customers"]
    assert customers["desired"] == "stopped" and not customers["reverse"]
    assert customers["status"]["phase"] == "streaming"
    assert customers["status"]["tables"][0]["rows_copied"] >= 240
    assert data["erp-events"]["status"]["published"] > 0
    decomposition = {p["name"]: p for p in listed("migrate", "list")}["customers-to-user-service"]
    assert decomposition["status"] == "completed"
    runs = listed("reconcile", "history", "erp-customers")
    assert runs[0]["status"] == "consistent" and runs[0]["remaining"] == 0
    drift = runs[-1]
    assert (drift["missing"], drift["different"], drift["extra"]) == (2, 2, 1)
    assert drift["repaired"] == 5 and drift["remaining"] == 0
    conflicts = listed("review", "list", "--origin", "replication")
    assert conflicts and conflicts[0]["payload"]["table"] == "customers"
    [projection] = listed("projections", "list")
    assert projection["name"] == "erp-orders-by-customer" and projection["events_applied"] > 0


def _demo_serving_the_dashboard(env: dict[str, str], cwd: Path) -> str:
    """Run ``hybridmesh demo`` until it serves the dashboard; check the dashboard and the
    API answer with the token it printed; stop it with SIGINT as Ctrl-C does. Its output."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hybridmesh", "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        url = token = None
        deadline = time.monotonic() + 150
        while token is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break  # it ended without serving
            lines.append(line)
            if line.startswith("Dashboard: "):
                url = line.removeprefix("Dashboard: ").strip()
            elif line.startswith("Sign in with the token: "):
                token = line.removeprefix("Sign in with the token: ").strip()
        assert url is not None and token is not None, "".join(lines)
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200 and "text/html" in answer.headers["Content-Type"]
        api = url.removesuffix("/ui/") + "/api/v1/services"
        request = urllib.request.Request(api, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert "legacy-erp" in {s["name"] for s in json.load(answer)}
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
        lines.append(rest)
        assert process.returncode == 0, "".join(lines)
        return "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
