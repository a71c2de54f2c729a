"""``python -m benchmarks [NAME ...]``: run the named benchmarks, or all of them.

A part of a benchmark can also run alone (``python -m benchmarks events_kafka``: the Kafka
rows of the events benchmark); it prints its figures and writes nothing.

``python -m benchmarks compare REV_A REV_B`` compares two revisions' saga engine instead
(see ``benchmarks/compare.py``)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys

BENCHMARKS = [
    "client_overhead",
    "events",
    "sagas",
    "reliability",
    "gateway",
    "flags",
    "migration",
    "replication",
    "control_plane",
]
# Parts that run alone, never in the default run: name -> (module, function).
PARTS = {"events_kafka": ("events", "run_kafka")}


def main() -> None:
    if sys.argv[1:2] == ["compare"]:
        from benchmarks.compare import main as compare

        compare(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    choices = [*BENCHMARKS, *PARTS]
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(choices))
    parser.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    args = parser.parse_args()
    for name in args.names or BENCHMARKS:
        if name not in choices:
            parser.error(f"unknown benchmark {name!r}; choose from {', '.join(choices)}")
        module_name, function = PARTS.get(name, (name, "run"))
        module = importlib.import_module(f"benchmarks.{module_name}")
        asyncio.run(getattr(module, function)(quick=args.quick))


if __name__ == "__main__":
    main()
