"""The file channel: a run is a CSV or XML file in ``<exchange_dir>/<target>/outbox/``.

The file is named ``<operation>-<run_id>.<format>`` and appears whole (written under a
hidden name, then renamed). Results come back as files in the inbox
(:mod:`hybridmesh.batch.inbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from hybridmesh.batch.delivery import DeliveryContext, RunOutcome
from hybridmesh.batch.formats import csv_export, write_atomic, xml_export
from hybridmesh.batch.ledger import BatchRecord
from hybridmesh.observability import get_logger

log = get_logger("hybridmesh.batch")

FileFormat = Literal["csv", "xml"]


@dataclass(frozen=True)
class FileDelivery:
    """Writes each run as a file of ``format``; ``fields`` fixes the exported payload fields
    and their order (default: every key, see :mod:`hybridmesh.batch.formats`)."""

    format: FileFormat = "csv"
    fields: tuple[str, ...] | None = None

    @property
    def kind(self) -> str:
        return self.format

    async def deliver(
        self, context: DeliveryContext, target: str, operation: str, limit: int
    ) -> RunOutcome | None:
        """The claim commits only once the file is in place; a file whose claim rolled back
        is removed, so it is not processed twice. Raises :class:`OSError` when the file
        cannot be written (the records stay queued)."""
        run_id = context.ledger.new_id()
        path = context.exchange_dir / target / "outbox" / f"{operation}-{run_id}.{self.format}"
        written = committing = False
        try:
            async with context.store.transaction() as tx:
                records = await context.ledger.claim(tx, target, operation, run_id, limit)
                if not records:
                    return None
                created = context.clock.now()
                await asyncio.to_thread(
                    self._write, path, records, target, operation, run_id, created
                )
                written = True
                run = await context.ledger.add_run(
                    tx, run_id, target, operation, self.format, str(path), len(records)
                )
                committing = True
        except BaseException:
            if written and not committing:
                # Rolled back for certain: take the file away so it is not processed twice.
                # (If the COMMIT itself failed, it may have happened: the file stays.)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(path.unlink)
            raise
        log.info(
            "batch run %s: %d record(s) of %s/%s to %s",
            run.id,
            run.records,
            target,
            operation,
            path,
        )
        return RunOutcome(run, delivered=True)

    def _write(
        self,
        path: Path,
        records: Sequence[BatchRecord],
        target: str,
        operation: str,
        run_id: str,
        created: datetime,
    ) -> None:
        if self.format == "xml":
            data = xml_export(
                records,
                target=target,
                operation=operation,
                run_id=run_id,
                created=created,
                fields=self.fields,
            )
        else:
            data = csv_export(records, self.fields)
        write_atomic(path, data)


__all__ = ["FileDelivery", "FileFormat"]
