"""How a long-running hybridmesh process (a worker, a server) sets up the interpreter."""

from __future__ import annotations

import gc

#: Net allocations between collections of the youngest generation (CPython: 700), and how
#: many of those make the next generation's turn (CPython: 10 and 10).
GC_THRESHOLDS = (10_000, 20, 20)


def tune_gc() -> None:
    """Make the cyclic garbage collector cheaper for a busy process. Call it once start-up
    has loaded what the process keeps.

    What is alive now (modules, definitions, the registry, caches) is frozen, so later full
    collections no longer walk it; and the young generation is collected every 10,000 net
    allocations instead of 700. Reference counting still frees at once everything that is
    not part of a cycle: only cyclic garbage waits a little longer. A saga engine allocates
    many short-lived objects per step; with the defaults, collections took about 7 % of its
    time (docs/benchmarks.md, saga engine).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


__all__ = ["GC_THRESHOLDS", "tune_gc"]
