"""CPU time spent by the processes a benchmark row keeps busy, while it is measured.

A ratio of throughputs says how much slower a row is, not where the time goes. On a
machine with few cores the benchmark process, the service it calls and the database server
share them, so what each spends per operation explains a ratio: a row whose own process
spends twice the peer's CPU per saga cannot run at more than about half its rate.

Read from ``/proc`` (Linux). This process counts all its threads (a SQLite store's writer
thread too); the database server is every process named ``postgres`` on the machine, so
work of other databases on the same server would count too (the benchmarks run alone).
Elsewhere the figures are None.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of process ``pid`` (all its threads), or None."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _server_seconds() -> float | None:
    """CPU seconds of every process named ``postgres``, or None without ``/proc``."""
    if not _PROC.is_dir():
        return None
    total = 0.0
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue  # it ended meanwhile, or is not ours to read
        seconds = _process_seconds(int(entry.name))
        if seconds is not None:
            total += seconds
    return total


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds so far: this process, the service process, the database server."""

    benchmark: float
    service: float | None
    server: float | None

    @classmethod
    def take(cls, service_pid: int | None, *, server: bool) -> CpuSample:
        return cls(
            time.process_time(),
            None if service_pid is None else _process_seconds(service_pid),
            _server_seconds() if server else None,
        )

    def per_operation(self, later: CpuSample, operations: int) -> dict[str, float | None]:
        """Milliseconds of CPU per operation between this sample and ``later``."""

        def each(before: float | None, after: float | None) -> float | None:
            if before is None or after is None or operations <= 0:
                return None
            return round((after - before) * 1000 / operations, 3)

        return {
            "benchmark": each(self.benchmark, later.benchmark),
            "service": each(self.service, later.service),
            "server": each(self.server, later.server),
        }


__all__ = ["CpuSample"]
