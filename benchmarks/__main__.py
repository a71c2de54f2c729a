"""``python -m benchmarks [NAME ...]``: run the named benchmarks, or all of them.

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
]


def main() -> None:
    if sys.argv[1:2] == ["compare"]:
        from benchmarks.compare import main as compare

        compare(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="fewer requests (smoke run)")
    args = parser.parse_args()
    for name in args.names or BENCHMARKS:
        if name not in BENCHMARKS:
            parser.error(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
        module = importlib.import_module(f"benchmarks.{name}")
        asyncio.run(module.run(quick=args.quick))


if __name__ == "__main__":
    main()
