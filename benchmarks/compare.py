"""``python -m benchmarks compare REV_A REV_B``: the saga benchmark of two revisions, paired.

Each revision is exported (``git archive``) into a temporary directory, and the rounds
alternate between the two (A, B, B, A, A, B, ...), each round one process of the saga
benchmark's quick rows run from that tree: raw and the engine rows asked for. A round's
figure for a row is the engine's peak throughput over raw's in the same process, so a
machine that drifts in speed moves both sides alike; the report gives, per row, the
median of those ratios for A and for B, and the median over rounds of B's over A's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from benchmarks._report import ROOT, alternating

ENGINE_ROWS = ("sqlite", "postgresql")


@dataclass
class Side:
    """One revision: its tree, and each row's engine/raw ratio round by round."""

    rev: str
    tree: Path
    ratios: dict[str, list[float]] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)


def export(rev: str, into: Path) -> Path:
    """The files of ``rev`` under ``into``; raises when git does not know it."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev], cwd=ROOT, check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def environment(tree: Path) -> dict[str, str]:
    """The environment in which this Python imports ``tree``'s hybridmesh and benchmarks."""
    paths = [tree / "src", tree / "examples", tree]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in paths)}


def check_imports(tree: Path) -> None:
    found = subprocess.run(
        [sys.executable, "-c", "import hybridmesh; print(hybridmesh.__file__)"],
        cwd=tree,
        env=environment(tree),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not Path(found).is_relative_to(tree):
        raise RuntimeError(f"{tree} imports hybridmesh from {found}, not from its own tree")


def run_round(side: Side, rows: list[str], output: Path) -> None:
    """One process of the benchmark in ``side``'s tree; appends its ratios."""
    side.loads.append(round(os.getloadavg()[0], 2))
    command = [sys.executable, "-m", "benchmarks.sagas", "--rounds", "1"]
    command += ["--rows", ",".join(rows), "--output", str(output)]
    subprocess.run(command, cwd=side.tree, env=environment(side.tree), check=True)
    runs = json.loads(output.read_text())["runs"]
    raw = float(runs["raw"]["peak_throughput"])
    for row in rows:
        if "error" in runs[row]:
            raise RuntimeError(f"{side.rev}: row {row} failed: {runs[row]['error']}")
        side.ratios.setdefault(row, []).append(float(runs[row]["peak_throughput"]) / raw)


def summary(a: Side, b: Side, rows: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {"a": a.rev, "b": b.rev, "loads": {"a": a.loads, "b": b.loads}}
    for row in rows:
        ours, theirs = a.ratios[row], b.ratios[row]
        report[row] = {
            "a": round(statistics.median(ours), 3),
            "b": round(statistics.median(theirs), 3),
            "b_over_a": round(
                statistics.median(y / x for x, y in zip(ours, theirs, strict=True)), 3
            ),
            "rounds_a": [round(r, 3) for r in ours],
            "rounds_b": [round(r, 3) for r in theirs],
        }
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks compare", description=__doc__)
    parser.add_argument("rev_a", metavar="REV_A")
    parser.add_argument("rev_b", metavar="REV_B")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each (default 5)")
    parser.add_argument("--rows", default=",".join(ENGINE_ROWS), help="engine rows to run")
    parser.add_argument("--output", type=Path, help="also write the summary here as JSON")
    args = parser.parse_args(argv)
    rows = [row.strip() for row in args.rows.split(",") if row.strip()]
    if not rows or set(rows) - set(ENGINE_ROWS):
        parser.error(f"--rows takes some of {', '.join(ENGINE_ROWS)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    with tempfile.TemporaryDirectory(prefix="hybridmesh-compare-") as temporary:
        root = Path(temporary)
        a = Side(args.rev_a, export(args.rev_a, root / "a"))
        b = Side(args.rev_b, export(args.rev_b, root / "b"))
        for side in (a, b):
            check_imports(side.tree)
        schedule = alternating([a, b], args.rounds)
        with Progress() as progress:
            task = progress.add_task(f"{a.rev} vs {b.rev}", total=len(schedule))
            for n, side in enumerate(schedule):
                run_round(side, rows, root / f"round-{n}.json")
                progress.advance(task)
    report = summary(a, b, rows)
    table = Table(title=f"engine/raw peak throughput: A = {a.rev}, B = {b.rev}")
    for column in ("row", "A (median)", "B (median)", "B/A (median of rounds)"):
        table.add_column(column)
    for row in rows:
        figures = report[row]
        table.add_row(
            row, f"{figures['a']:.3f}", f"{figures['b']:.3f}", f"{figures['b_over_a']:.3f}"
        )
    console = Console()
    console.print(table)
    console.print(f"1-minute load before each round: A {a.loads}, B {b.loads}")
    if args.output is not None:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
