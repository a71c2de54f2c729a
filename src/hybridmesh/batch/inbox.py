"""The inbox collector: result files the legacy side leaves in ``<exchange_dir>/<target>/inbox/``.

Each file (see :mod:`hybridmesh.batch.formats`) is applied through a
:class:`~hybridmesh.batch.results.ResultRecorder` and then moved to ``inbox/processed/``, or
to ``inbox/rejected/`` when it is malformed. Names starting with a dot are files still being
written and are left alone.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridmesh.batch.formats import RESULT_SUFFIXES, ResultFileError, read_results
from hybridmesh.batch.results import ResultRecorder
from hybridmesh.core.errors import HybridMeshError
from hybridmesh.observability import get_logger

log = get_logger("hybridmesh.batch")


@dataclass
class CollectReport:
    """What one pass over the inboxes did."""

    #: Files applied, now in ``inbox/processed``.
    files: list[str] = field(default_factory=list)
    #: Malformed files, now in ``inbox/rejected``, each with what is wrong (file:line: …).
    rejected: dict[str, str] = field(default_factory=dict)
    acknowledged: int = 0
    failed: int = 0
    #: Result ids that matched no record of the file's target.
    unknown: list[str] = field(default_factory=list)
    #: Results for records that were not awaiting one (repeated results, say).
    ignored: int = 0

    @property
    def records(self) -> int:
        """Records settled (acknowledged or failed)."""
        return self.acknowledged + self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "rejected": self.rejected,
            "acknowledged": self.acknowledged,
            "failed": self.failed,
            "unknown": self.unknown,
            "ignored": self.ignored,
        }


class InboxCollector:
    """Reads the inboxes under ``exchange_dir`` and applies what they hold."""

    def __init__(self, exchange_dir: Path, results: ResultRecorder) -> None:
        self.exchange_dir = exchange_dir
        self.results = results

    async def collect(self) -> CollectReport:
        """Apply every result file in the targets' inboxes, oldest name first.

        A file is moved to ``inbox/processed/`` once its results are committed, or to
        ``inbox/rejected/`` when it is malformed (logged with file and line; no result of it
        is applied). Result ids that match no record of the target are logged and counted,
        not fatal. A file that cannot be applied now (the store is down) stays for the next
        pass. Never raises for a bad file.
        """
        report = CollectReport()
        for target, path in await asyncio.to_thread(self._inbox_files):
            try:
                await self._collect_file(target, path, report)
            except (HybridMeshError, OSError):
                log.exception("result file %s could not be applied; will try again", path)
        return report

    def _inbox_files(self) -> list[tuple[str, Path]]:
        found: list[tuple[str, Path]] = []
        if not self.exchange_dir.is_dir():
            return found
        for folder in sorted(self.exchange_dir.iterdir()):
            inbox = folder / "inbox"
            if not inbox.is_dir():
                continue
            for path in sorted(inbox.iterdir()):
                # Hidden names are files the legacy side is still writing.
                if (
                    path.is_file()
                    and not path.name.startswith(".")
                    and path.suffix.lower() in RESULT_SUFFIXES
                ):
                    found.append((folder.name, path))
        return found

    async def _collect_file(self, target: str, path: Path, report: CollectReport) -> None:
        data = await asyncio.to_thread(path.read_bytes)
        try:
            results = await asyncio.to_thread(read_results, str(path), data)
        except ResultFileError as error:
            moved = await asyncio.to_thread(_move, path, path.parent / "rejected")
            log.error("rejected result file %s (moved to %s): %s", path, moved, error)
            report.rejected[str(path)] = str(error)
            return
        settlement = await self.results.apply(str(path), target, results)
        await asyncio.to_thread(_move, path, path.parent / "processed")
        report.files.append(str(path))
        report.acknowledged += len(settlement.acknowledged)
        report.failed += len(settlement.failed)
        report.unknown.extend(settlement.unknown)
        report.ignored += len(settlement.ignored)


def _move(path: Path, folder: Path) -> Path:
    """Move ``path`` into ``folder`` without replacing a file of the same name there."""
    folder.mkdir(parents=True, exist_ok=True)
    destination = folder / path.name
    counter = 1
    while destination.exists():
        destination = folder / f"{path.stem}.{counter}{path.suffix}"
        counter += 1
    shutil.move(path, destination)
    return destination


__all__ = ["CollectReport", "InboxCollector"]
