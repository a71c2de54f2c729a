"""The gateway against nginx, both in front of the same upstream, driven by wrk.

The upstream is an nginx worker answering a small JSON body from memory (so it is never
what limits the proxies). In front of it, on their own ports: an nginx worker proxying with
keep-alive to the upstream, and one `hybridmesh gateway` process (uvloop) whose route has
two weighted backends (the same upstream twice), a sticky header, key auth, a rate limit
that does not trip, metrics and the access log (JSON lines, to a file) on. nginx writes its
access log to a file too. Beside them, the floor of a Python proxy here
(:mod:`benchmarks._bare_forwarder`: the gateway's loop and parser, and nothing but
forwarding). wrk drives each, and the upstream directly, at 1 and at 64 connections, in
rounds whose order alternates; each keeps its best round. Each proxy's CPU time per request
is read from ``/proc`` during its rounds, and :mod:`benchmarks._gateway_costs` measures
what each piece of the gateway's per-request work costs on its own.

Goals: the gateway's throughput at least 0.5 times nginx's at 64 connections; its p50 at
one connection at most 1 ms above the direct call's.

Then the live shift: 60 s of wrk traffic (16 connections, 1,000 sticky users) while the
route's new backend goes 0 → 1 → 5 → 10 → 25 → 50 → 75 → 100 %, through the store as
`routes set-weight` does. Old and new answer with their name and the user, so the Lua script
counts, per user, any return to the old side after the new one: there must be none, and no
request may fail.

Needs Debian's ``wrk`` and ``nginx-light`` (``apt-get install -y wrk nginx-light``); without
them the benchmark prints what is missing instead of a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import _gateway_costs
from benchmarks._cpu import _process_seconds
from benchmarks._report import (
    alternating,
    best_rounds,
    failed_round,
    machine,
    write_json,
    write_section,
)

ROUNDS = 3
SECONDS = 8
SECONDS_ONE = 4
SHIFT_SECONDS = 60
SHIFT_STEPS = (0, 1, 5, 10, 25, 50, 75, 100)
#: What wrk drives, in this order: the upstream itself, then the three proxies in front of it.
TARGETS = ("direct", "nginx", "gateway", "bare")
BODY = '{"id":"1","name":"Ada","email":"ada@example.com","status":"active"}'

_UPSTREAM = """
worker_processes 1; daemon off; pid {dir}/up.pid; error_log {dir}/up.err;
events {{ worker_connections 8192; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '{body}'; }} }}
  server {{ listen 127.0.0.1:{old};
    location / {{ default_type text/plain; return 200 "old $http_x_user"; }} }}
  server {{ listen 127.0.0.1:{new};
    location / {{ default_type text/plain; return 200 "new $http_x_user"; }} }}
}}
"""
_PROXY = """
worker_processes 1; daemon off; pid {dir}/px.pid; error_log {dir}/px.err;
events {{ worker_connections 8192; }}
http {{ access_log {dir}/nginx-access.log; keepalive_requests 1000000;
  upstream up {{ server 127.0.0.1:{upstream}; keepalive 256; keepalive_requests 1000000; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://up; proxy_http_version 1.1;
      proxy_set_header Connection ""; }} }}
}}
"""
# Per user, the side that last answered; a return to "old" after "new" is a flip.
_SHIFT_LUA = """
local users = 1000
local counter = 0
local side = {}
flips = 0
answered = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/shift", {["x-user"] = "u" .. (counter % users), ["apikey"] = KEY})
end
response = function(status, headers, body)
  if status ~= 200 then return end
  answered = answered + 1
  local who, user = body:match("^(%a+) (%S+)")
  if who == "old" and side[user] == "new" then flips = flips + 1 end
  if who then side[user] = who end
end
done = function(summary, latency, requests)
  io.write(string.format("FLIPS %d\\n", flips))
end
"""
_KEY_LUA = """
request = function()
  return wrk.format("GET", "/users/1", {["x-user"] = "u" .. math.random(1, 1000), ["apikey"] = KEY})
end
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing_tools() -> list[str]:
    return [
        tool
        for tool in ("wrk", "nginx")
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
    ]


def _nginx() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


@contextlib.contextmanager
def _process(args: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(args, text=True, **kwargs)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_port(port: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def _tree_seconds(pid: int) -> float:
    """CPU seconds of process ``pid`` and its children (an nginx master's worker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = children.read_text().split() if children.exists() else []
    return sum(_process_seconds(p) or 0.0 for p in [pid, *map(int, kids)])


def wrk(
    url: str,
    connections: int,
    seconds: int,
    script: Path | None = None,
    proxy: int | None = None,
) -> dict[str, Any]:
    """Run wrk; its throughput, latency percentiles and failures, and with ``proxy`` (a
    process id) the CPU that process and its children spent per request."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        args += ["-s", str(script)]
    cpu_before = _tree_seconds(proxy) if proxy is not None else 0.0
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    cpu = _tree_seconds(proxy) - cpu_before if proxy is not None else None
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    percentiles = {p: _ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M)}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    flips = re.search(r"FLIPS (\d+)", out)
    return {
        "throughput": rate,
        "requests": total,
        "cpu_us_per_request": round(cpu * 1e6 / total, 1) if cpu is not None and total else None,
        "p50_ms": percentiles.get("50"),
        "p90_ms": percentiles.get("90"),
        "p99_ms": percentiles.get("99"),
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        **({"flips": int(flips.group(1))} if flips else {}),
    }


async def _setup_store(url: str, upstream: int, old: int, new: int) -> str:
    """The routes and a key; returns the key."""
    from hybridmesh.gateway.config import parse_routes
    from hybridmesh.gateway.state import GatewayState
    from hybridmesh.store import open_store

    routes = f"""
routes:
  - name: bench
    match: {{path: {{prefix: /users}}}}
    backends:
      - {{name: a, url: "http://127.0.0.1:{upstream}", weight: 50}}
      - {{name: b, url: "http://127.0.0.1:{upstream}", weight: 50}}
    sticky: {{header: x-user}}
    policies:
      key_auth: {{}}
      rate_limit: {{limit: 100000000, per: second, by: consumer}}
  - name: shift
    match: {{path: {{prefix: /shift}}}}
    backends:
      - {{name: old, url: "http://127.0.0.1:{old}", weight: 100}}
      - {{name: new, url: "http://127.0.0.1:{new}", weight: 0}}
    sticky: {{header: x-user}}
    policies:
      key_auth: {{}}
"""
    async with await open_store(url) as store:
        await store.upgrade()
        state = GatewayState(store)
        await state.apply(parse_routes(routes, "bench-routes.yaml"))
        _, key = await state.create_key("bench")
    return key


async def _shift(url: str, seconds: float) -> list[tuple[float, int]]:
    """Move the new backend through SHIFT_STEPS, evenly over ``seconds``."""
    from hybridmesh.gateway.state import GatewayState
    from hybridmesh.store import open_store

    pause = seconds / len(SHIFT_STEPS)
    began = time.monotonic()
    steps = []
    async with await open_store(url) as store:
        state = GatewayState(store)
        for percent in SHIFT_STEPS:
            await state.set_weight("shift", "new", percent)
            steps.append((round(time.monotonic() - began, 1), percent))
            await asyncio.sleep(pause)
    return steps


async def run(*, quick: bool = False) -> dict[str, Any]:
    missing = missing_tools()
    if missing:
        print(
            f"gateway benchmark: {' and '.join(missing)} not found; install them with "
            "`apt-get install -y wrk nginx-light` (Debian) to run it",
            file=sys.stderr,
        )
        return {"skipped": f"missing {', '.join(missing)}"}
    rounds = 1 if quick else ROUNDS
    seconds = 2 if quick else SECONDS
    seconds_one = 2 if quick else SECONDS_ONE
    shift_seconds = 10 if quick else SHIFT_SECONDS
    results: dict[str, Any] = {"benchmark": "gateway", "machine": machine()}
    results["load_before"] = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="hm-gw-bench-") as folder:
        work = Path(folder)
        names = ("upstream", "old", "new", "nginx", "gateway", "bare")
        ports = {name: _free_port() for name in names}
        (work / "up.conf").write_text(
            _UPSTREAM.format(
                dir=work, port=ports["upstream"], old=ports["old"], new=ports["new"], body=BODY
            )
        )
        (work / "px.conf").write_text(
            _PROXY.format(dir=work, port=ports["nginx"], upstream=ports["upstream"])
        )
        database = f"sqlite:///{work / 'mesh.db'}"
        key = await _setup_store(database, ports["upstream"], ports["old"], ports["new"])
        key_script = work / "key.lua"
        key_script.write_text(f'KEY = "{key}"\n' + _KEY_LUA)
        shift_script = work / "shift.lua"
        shift_script.write_text(f'KEY = "{key}"\n' + _SHIFT_LUA)
        env = {
            **os.environ,
            "HYBRIDMESH_DATABASE_URL": database,
            "HYBRIDMESH_LOG_LEVEL": "INFO",
            "HYBRIDMESH_LOG_FORMAT": "json",
        }
        env.pop("HYBRIDMESH_REDIS_URL", None)  # the local rate limit: one replica
        access = (work / "gateway-access.log").open("w")
        with (
            _process([_nginx(), "-c", str(work / "up.conf"), "-p", str(work)]),
            _process([_nginx(), "-c", str(work / "px.conf"), "-p", str(work)]) as nginx,
            _process(
                [sys.executable, "-m", "hybridmesh", "gateway", "--port", str(ports["gateway"])],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=access,
            ) as gateway,
            _process(
                [
                    sys.executable,
                    *("-m", "benchmarks._bare_forwarder"),
                    *(str(ports["bare"]), str(ports["upstream"])),
                ]
            ) as bare,
        ):
            for name in ("upstream", "nginx", "gateway", "bare"):
                _wait_port(ports[name])
            targets = {
                name: f"http://127.0.0.1:{ports[name if name != 'direct' else 'upstream']}/users/1"
                for name in TARGETS
            }
            proxies = {"nginx": nginx.pid, "gateway": gateway.pid, "bare": bare.pid}
            attempts: dict[str, list[dict[str, Any]]] = {}
            for connections, length in ((64, seconds), (1, seconds_one)):
                for name in alternating(list(targets), rounds):
                    section = f"{name}_c{connections}"
                    try:
                        figures = await asyncio.to_thread(
                            wrk, targets[name], connections, length, key_script, proxies.get(name)
                        )
                    except Exception as error:
                        figures = failed_round(error)
                    attempts.setdefault(section, []).append(figures)
            results["runs"] = best_rounds(attempts)
            shift_url = f"http://127.0.0.1:{ports['gateway']}/shift"
            wrk_task = asyncio.create_task(
                asyncio.to_thread(wrk, shift_url, 16, shift_seconds + 2, shift_script)
            )
            await asyncio.sleep(1)
            steps = await _shift(database, shift_seconds)
            shift = await wrk_task
            results["shift"] = {**shift, "steps": steps, "seconds": shift_seconds}
        access.close()
        results["access_log_lines"] = sum(1 for _ in (work / "gateway-access.log").open())
    results["costs"] = await _gateway_costs.measure()
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["goals"] = _goals(results)
    write_json("gateway", results)
    write_section("gateway", _markdown(results, quick))
    return results


def _goals(results: dict[str, Any]) -> dict[str, Any]:
    runs = results["runs"]
    gateway, nginx = runs.get("gateway_c64", {}), runs.get("nginx_c64", {})
    ratio = (
        round(gateway["throughput"] / nginx["throughput"], 3)
        if gateway.get("throughput") and nginx.get("throughput")
        else None
    )
    g1, d1 = runs.get("gateway_c1", {}).get("p50_ms"), runs.get("direct_c1", {}).get("p50_ms")
    added = round(g1 - d1, 3) if g1 is not None and d1 is not None else None
    shift = results.get("shift", {})
    return {
        "throughput_vs_nginx": {
            "value": ratio,
            "goal": 0.5,
            "met": ratio is not None and ratio >= 0.5,
        },
        "added_p50_ms_c1": {"value": added, "goal": 1.0, "met": added is not None and added <= 1.0},
        "shift_failures": {
            "value": shift.get("socket_errors", 0) + shift.get("non_2xx", 0),
            "goal": 0,
            "met": shift.get("socket_errors") == 0 and shift.get("non_2xx") == 0,
        },
        "shift_flips": {"value": shift.get("flips"), "goal": 0, "met": shift.get("flips") == 0},
    }


def _markdown(results: dict[str, Any], quick: bool) -> str:
    runs, goals = results["runs"], results["goals"]
    m = results["machine"]

    def verdict(goal: dict[str, Any]) -> str:
        return "met" if goal["met"] else "missed"

    lines = [
        "## Gateway" + (" (quick run)" if quick else ""),
        "",
        "wrk (one thread) against an nginx worker answering a 67-byte JSON body (*direct*), an "
        "nginx worker proxying to it with keep-alive (*nginx*), and one `hybridmesh gateway` "
        "process (uvloop) whose route splits between two backends by a sticky header, checks "
        "an API key, applies a rate limit that does not trip, and keeps metrics and a JSON "
        "access log (nginx logs to a file too); and *bare*, a Python forwarder on the "
        "gateway's loop and parser that does nothing but forward (the floor of a Python proxy "
        "here). CPU is the proxy process's own (nginx: its worker) per request, from /proc "
        "during the round. Rounds alternate; each row is its best of "
        f"{ROUNDS}. Command: `make bench` (`python -m benchmarks gateway`). Machine: "
        f"{m['cpus']} CPUs, Python {m['python']}, {m['date']}; load average "
        f"{results['load_before'][0]} before, {results['load_after'][0]} after.",
        "",
        "| target | connections | requests/s | p50 ms | p90 ms | p99 ms | failed "
        "| CPU µs/request |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for connections in (64, 1):
        for name in TARGETS:
            row = runs.get(f"{name}_c{connections}", {})
            if "throughput" not in row:
                lines.append(
                    f"| {name} | {connections} | failed: {row.get('error', '?')} | | | | | |"
                )
                continue
            failed = row["socket_errors"] + row["non_2xx"]
            cpu = row.get("cpu_us_per_request")
            lines.append(
                f"| {name} | {connections} | {row['throughput']:,.0f} | {row['p50_ms']:.3f} | "
                f"{row['p90_ms']:.3f} | {row['p99_ms']:.3f} | {failed} | "
                f"{'' if cpu is None else cpu} |"
            )
    t, a = goals["throughput_vs_nginx"], goals["added_p50_ms_c1"]
    shift = results["shift"]
    lines += [
        "",
        f"- Throughput at 64 connections: **{t['value']} times nginx's** (goal at least 0.5: "
        f"{verdict(t)}).",
        f"- p50 added over the direct call at one connection: **{a['value']} ms** (goal ≤ 1 ms: "
        f"{verdict(a)}).",
        f"- Live shift: {shift['requests']:,} requests in {shift['seconds']} s through steps "
        f"{', '.join(f'{p} %' for _, p in shift['steps'])}; failed requests "
        f"{shift['socket_errors'] + shift['non_2xx']} (goal 0: "
        f"{verdict(goals['shift_failures'])}), sticky users sent back to the old side "
        f"{shift.get('flips')} (goal 0: {verdict(goals['shift_flips'])}).",
        f"- The gateway wrote {results['access_log_lines']:,} access log lines.",
        "",
        "What each piece of the gateway's per-request work costs on its own "
        "(`benchmarks/_gateway_costs.py`, CPU µs per call, best of three loops of "
        f"{_gateway_costs.CALLS:,}):",
        "",
        "| piece | µs |",
        "|---|---|",
        *(f"| {name} | {micros} |" for name, micros in results["costs"]),
        f"| **sum** | **{sum(m for _, m in results['costs']):.2f}** |",
    ]
    return "\n".join(lines)


__all__ = ["run"]
