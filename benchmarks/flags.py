"""Flag evaluations per second in process, against the Unleash Python SDK side by side.

One flag, written the same way in each system: users on the ``beta`` plan get ``on``;
everyone else is split 25 % ``on`` / 75 % ``off`` by a hash of the user id (stickiness on
the user). 1,000 users, one in ten on ``beta``, are evaluated in turn:

- *FlagClient*: :meth:`FlagClient.boolean` on flags loaded from a SQLite store;
- *OpenFeature + hybridmesh*: ``client.get_boolean_value`` through the OpenFeature SDK's
  API with :class:`HybridmeshProvider` over that FlagClient;
- *OpenFeature in-memory*: the same API with the SDK's ``InMemoryProvider``, whose flag's
  context evaluator does the same rule and the same MurmurHash3 split in Python;
- *Unleash*: ``UnleashClient.is_enabled`` (its Rust engine, yggdrasil), bootstrapped from
  a features file with no server: registration, metrics and fetching off. The flag has a
  ``default`` strategy constrained to ``plan IN [beta]`` and a ``flexibleRollout`` of 25 %
  with stickiness on ``userId``.

Each round evaluates every system the same number of times; rounds alternate their order.
Figures are each system's median round; a ratio is the median over the rounds of a
system's figure over Unleash's in the same round. Goal: FlagClient and OpenFeature +
hybridmesh at least 1.0 times Unleash's evaluations per second. Each row also records the
share of users that got ``on``, which must agree (about 32.5 %).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks._report import (
    alternating,
    failed_round,
    machine,
    median_rounds,
    paired_ratios,
    write_json,
    write_section,
)

ROUNDS = 7
USERS = 1_000
FLAG = "new-checkout"
PERCENT = 25
SYSTEMS = ["flag_client", "openfeature_hybridmesh", "openfeature_in_memory", "unleash"]
LABELS = {
    "flag_client": "FlagClient.boolean",
    "openfeature_hybridmesh": "OpenFeature API + HybridmeshProvider",
    "openfeature_in_memory": "OpenFeature API + InMemoryProvider",
    "unleash": "UnleashClient.is_enabled (bootstrapped, offline)",
}
GOALS = {"flag_client": 1.0, "openfeature_hybridmesh": 1.0}

FLAGS_YAML = f"""\
key: {FLAG}
variants: {{"on": true, "off": false}}
default_variant: "off"
targeting:
  - when: [{{attribute: plan, equals: beta}}]
    variant: "on"
  - fractional:
      - {{variant: "on", weight: {PERCENT}}}
      - {{variant: "off", weight: {100 - PERCENT}}}
"""

UNLEASH_FEATURES = {
    "version": 2,
    "features": [
        {
            "name": FLAG,
            "enabled": True,
            "type": "release",
            "project": "default",
            "strategies": [
                {
                    "name": "default",
                    "parameters": {},
                    "constraints": [
                        {
                            "contextName": "plan",
                            "operator": "IN",
                            "values": ["beta"],
                            "inverted": False,
                            "caseInsensitive": False,
                        }
                    ],
                },
                {
                    "name": "flexibleRollout",
                    "parameters": {
                        "rollout": str(PERCENT),
                        "stickiness": "userId",
                        "groupId": FLAG,
                    },
                    "constraints": [],
                },
            ],
        }
    ],
}


def _users() -> list[tuple[str, str]]:
    return [(f"user-{i}", "beta" if i % 10 == 0 else "free") for i in range(USERS)]


def _measure(evaluate: Callable[[int], bool], count: int) -> dict[str, Any]:
    """Evaluate ``count`` times (user ``i % USERS``); the rate and the share of ``on``."""
    on = 0
    started = time.perf_counter()
    for i in range(count):
        on += evaluate(i % USERS)
    seconds = time.perf_counter() - started
    return {
        "evaluations": count,
        "seconds": round(seconds, 4),
        "throughput": round(count / seconds, 1),
        "on_share": round(on / count, 4),
    }


@contextlib.contextmanager
def _unleash(folder: Path) -> Iterator[Callable[[int], bool]]:
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    features = folder / "unleash-features.json"
    features.write_text(json.dumps(UNLEASH_FEATURES))
    cache = FileCache("hybridmesh-bench", directory=str(folder / "unleash-cache"))
    cache.bootstrap_from_file(features)
    client = UnleashClient(
        url="http://127.0.0.1:9/api",  # never contacted: nothing is fetched or sent
        app_name="hybridmesh-bench",
        disable_metrics=True,
        disable_registration=True,
        refresh_interval=86_400,
        cache=cache,
    )
    client.initialize_client(fetch_toggles=False)
    contexts = [{"userId": user, "properties": {"plan": plan}} for user, plan in _users()]
    try:
        yield lambda i: bool(client.is_enabled(FLAG, contexts[i]))
    finally:
        client.destroy()


def _in_memory_provider() -> Any:
    import mmh3
    from openfeature.flag_evaluation import FlagResolutionDetails, Reason
    from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

    def evaluator(flag: Any, context: Any) -> Any:
        if context.attributes.get("plan") == "beta":
            return FlagResolutionDetails(True, reason=Reason.TARGETING_MATCH, variant="on")
        hashed = mmh3.hash(FLAG + context.targeting_key, 0, False)
        on = (hashed * 100) >> 32 < PERCENT
        return FlagResolutionDetails(on, reason=Reason.SPLIT, variant="on" if on else "off")

    flag = InMemoryFlag("off", {"on": True, "off": False}, context_evaluator=evaluator)
    return InMemoryProvider({FLAG: flag})


async def run(*, quick: bool = False) -> dict[str, Any]:
    """Run the benchmark, write its JSON and its section of docs/benchmarks.md."""
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext

    from hybridmesh.flags import FlagClient, FlagStore, parse_flags
    from hybridmesh.flags.provider import HybridmeshProvider
    from hybridmesh.store import open_store

    logging.getLogger("UnleashClient").setLevel(logging.ERROR)
    rounds = 3 if quick else ROUNDS
    count = 20_000 if quick else 200_000
    results: dict[str, Any] = {"benchmark": "flags", "machine": machine(), "users": USERS}
    results["load_before"] = [round(x, 2) for x in os.getloadavg()]
    users = _users()
    with tempfile.TemporaryDirectory(prefix="hm-flags-bench-") as folder:
        work = Path(folder)
        store = await open_store(f"sqlite:///{work / 'mesh.db'}")
        await store.upgrade()
        await FlagStore(store).apply(parse_flags(FLAGS_YAML, "bench.yaml"))
        flags = await FlagClient(store).start()
        api.set_provider_and_wait(HybridmeshProvider(flags), domain="hybridmesh")
        api.set_provider_and_wait(_in_memory_provider(), domain="in-memory")
        ours, theirs = api.get_client("hybridmesh"), api.get_client("in-memory")
        plain = [{"targetingKey": user, "plan": plan} for user, plan in users]
        contexts = [EvaluationContext(user, {"plan": plan}) for user, plan in users]
        try:
            with _unleash(work) as unleash:
                evaluate: dict[str, Callable[[int], bool]] = {
                    "flag_client": lambda i: flags.boolean(FLAG, plain[i]),
                    "openfeature_hybridmesh": lambda i: ours.get_boolean_value(
                        FLAG, False, contexts[i]
                    ),
                    "openfeature_in_memory": lambda i: theirs.get_boolean_value(
                        FLAG, False, contexts[i]
                    ),
                    "unleash": unleash,
                }
                for name in SYSTEMS:  # warm up every path once
                    _measure(evaluate[name], USERS)
                attempts: dict[str, list[dict[str, Any]]] = {name: [] for name in SYSTEMS}
                for name in alternating(SYSTEMS, rounds):
                    try:
                        attempts[name].append(_measure(evaluate[name], count))
                    except Exception as error:
                        attempts[name].append(failed_round(error))
        finally:
            api.clear_providers()
            await flags.close()
            await store.close()
    results["runs"] = median_rounds(attempts)
    results["ratios_to_unleash"] = {
        name: paired_ratios(attempts, name, "unleash") for name in SYSTEMS if name != "unleash"
    }
    results["goals"] = {
        name: {
            "value": _median(results["ratios_to_unleash"][name]),
            "goal": goal,
            "met": (_median(results["ratios_to_unleash"][name]) or 0) >= goal,
        }
        for name, goal in GOALS.items()
    }
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    write_json("flags", results)
    write_section("flags", _markdown(results, quick))
    _print(results)
    return results


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _print(results: dict[str, Any]) -> None:
    for name in SYSTEMS:
        row = results["runs"][name]
        ratio = _median(results["ratios_to_unleash"].get(name, [1.0]))
        if "throughput" in row:
            print(
                f"{LABELS[name]:52} {row['throughput']:>12,.0f} evaluations/s  "
                f"{ratio}x Unleash  on {row['on_share']:.1%}"
            )
        else:
            print(f"{LABELS[name]:52} failed: {row.get('error')}")


def _markdown(results: dict[str, Any], quick: bool) -> str:
    m = results["machine"]
    runs = results["runs"]
    rounds = len(runs["unleash"].get("rounds", [runs["unleash"]]))
    lines = [
        "## Feature flags (`benchmarks/flags.py`)" + (" (quick run)" if quick else ""),
        "",
        "Boolean flag evaluations per second in one process: a rule (`plan` equals `beta`) "
        f"then a {PERCENT} % rollout by a hash of the user, over {USERS:,} users evaluated "
        "in turn. *FlagClient* is `FlagClient.boolean` on flags loaded from SQLite; the "
        "OpenFeature rows call `get_boolean_value` through the OpenFeature SDK's API, with "
        "`HybridmeshProvider` or with the SDK's `InMemoryProvider` (its context evaluator "
        "doing the same rule and MurmurHash3 split); *Unleash* is `UnleashClient.is_enabled` "
        "bootstrapped from a file, offline, with a `flexibleRollout` on `userId`. "
        f"{rounds} rounds in alternating order; each figure is the system's median round, "
        "each ratio the median of its per-round ratios to Unleash. Command: `make bench` "
        f"(`python -m benchmarks flags`). Machine: {m['cpus']} CPUs, Python {m['python']}, "
        f"{m['date']}; load average {results['load_before'][0]} before, "
        f"{results['load_after'][0]} after.",
        "",
        "| system | evaluations/s | on | ratio to Unleash (goal) |",
        "|---|---|---|---|",
    ]
    for name in SYSTEMS:
        row = runs[name]
        if "throughput" not in row:
            lines.append(f"| {LABELS[name]} | failed: {row.get('error', '?')} | | |")
            continue
        if name == "unleash":
            ratio = "1.00"
        else:
            value = _median(results["ratios_to_unleash"][name])
            goal = results["goals"].get(name)
            ratio = (
                f"{value}"
                if goal is None
                else (f"**{value}** (≥ {goal['goal']}: {'met' if goal['met'] else 'missed'})")
            )
        lines.append(
            f"| {LABELS[name]} | {row['throughput']:,.0f} | {row['on_share']:.1%} | {ratio} |"
        )
    return "\n".join(lines)


__all__ = ["run"]
