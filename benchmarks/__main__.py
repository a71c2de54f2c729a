"""``python -m benchmarks [NAME ...]``: run the named benchmarks, or all of them."""

from __future__ import annotations

import argparse
import asyncio
import importlib

BENCHMARKS = ["client_overhead", "events", "sagas", "reliability"]


def main() -> None:
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
