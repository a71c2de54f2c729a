"""``hybridmesh batch``: the records queued for legacy systems, their runs and result files."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

import click
from rich.markup import escape
from rich.table import Table

from hybridmesh.batch.integration import DEFAULT_EXCHANGE_DIR
from hybridmesh.cli._common import COUNT, console, emit_json, err_console, get_ctx, json_option, run
from hybridmesh.core.errors import HybridMeshError

if TYPE_CHECKING:
    from hybridmesh.batch import BatchFormat, BatchIntegration, BatchTarget

T = TypeVar("T")

_exchange_option = click.option(
    "--exchange-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="HYBRIDMESH_EXCHANGE_DIR",
    default=DEFAULT_EXCHANGE_DIR,
    show_default=True,
    help="Folder of the targets' outbox and inbox folders (env HYBRIDMESH_EXCHANGE_DIR).",
)


def _say(text: str) -> None:
    # Plain text: paths and errors may hold "[…]" that rich would read as markup.
    console.print(text, markup=False, highlight=False, soft_wrap=True)


async def _with_batch(
    exchange_dir: Path,
    action: Callable[[BatchIntegration], Awaitable[T]],
    targets: Sequence[BatchTarget] = (),
    *,
    create: bool = True,
) -> T:
    """Run ``action`` on the batch integration over the CLI's store. Commands that only read
    pass ``create=False``: nothing is written to the database (see
    :func:`~hybridmesh.store.open_ready_store`)."""
    from hybridmesh.batch import BatchIntegration
    from hybridmesh.store import open_ready_store

    store = await open_ready_store(get_ctx().database_url, create=create)
    async with (
        store,
        BatchIntegration(store, exchange_dir=exchange_dir, targets=targets) as batch,
    ):
        return await action(batch)


@click.group()
def batch() -> None:
    """Batch integration with legacy systems: queued records, runs and result files."""


@batch.command("list")
@click.option(
    "--status",
    type=click.Choice(["queued", "sent", "acknowledged", "failed", "all"]),
    default="all",
    show_default=True,
)
@click.option("--target", default=None, help="Only this target's records.")
@click.option("--limit", type=COUNT, default=100, show_default=True)
@json_option
def list_records(status: str, target: str | None, limit: int, as_json: bool) -> None:
    """The batch records, newest first."""
    wanted = None if status == "all" else status
    records = run(
        _with_batch(
            Path(DEFAULT_EXCHANGE_DIR),
            lambda b: b.records(status=wanted, target=target, limit=limit),
            create=False,
        )
    )
    if as_json:
        emit_json([record.to_dict() for record in records])
        return
    table = Table("id", "target", "operation", "status", "key", "updated", "error")
    for r in records:
        table.add_row(
            r.id,
            escape(r.target),
            escape(r.operation),
            r.status.value,
            escape(r.idempotency_key or ""),
            r.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(r.error or ""),
        )
    console.print(table)
    if not records:
        err_console.print("no batch records")


@batch.command()
@click.option("--limit", type=COUNT, default=100, show_default=True)
@json_option
def runs(limit: int, as_json: bool) -> None:
    """The batch runs (files written, bulk POSTs), newest first."""
    found = run(
        _with_batch(Path(DEFAULT_EXCHANGE_DIR), lambda b: b.runs(limit=limit), create=False)
    )
    if as_json:
        emit_json([r.to_dict() for r in found])
        return
    table = Table("id", "target", "operation", "format", "records", "status", "created", "where")
    for r in found:
        table.add_row(
            r.id,
            escape(r.target),
            escape(r.operation),
            r.format,
            str(r.records),
            r.status.value,
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(r.error or r.location),
        )
    console.print(table)
    if not found:
        err_console.print("no batch runs")


@batch.command()
@click.option("--target", default=None, help="Only this target's queues.")
@click.option("--operation", default=None, help="Only this operation's queue.")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "xml", "http"]),
    default=None,
    help="Deliver as (needs --target; default csv).",
)
@click.option("--endpoint", default=None, help="The bulk endpoint URL, for --format http.")
@click.option(
    "--targets",
    "targets_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="HYBRIDMESH_BATCH_TARGETS",
    default=None,
    help="YAML file of batch targets, as the worker takes it (env HYBRIDMESH_BATCH_TARGETS).",
)
@_exchange_option
@json_option
def flush(
    target: str | None,
    operation: str | None,
    file_format: str | None,
    endpoint: str | None,
    targets_path: Path | None,
    exchange_dir: Path,
    as_json: bool,
) -> None:
    """Deliver the queued records now: one file (or POST) per run."""
    from hybridmesh.batch import ANY_OPERATION, BatchTarget, load_batch_targets

    targets: list[BatchTarget] = load_batch_targets(targets_path) if targets_path else []
    if file_format is not None or endpoint is not None:
        if target is None:
            raise click.UsageError("--format and --endpoint need --target")
        chosen = file_format or ("http" if endpoint else "csv")
        targets.append(
            BatchTarget(
                target,
                operation or ANY_OPERATION,
                format=cast("BatchFormat", chosen),
                endpoint=endpoint,
            )
        )
    made = run(_with_batch(exchange_dir, lambda b: b.flush(target, operation), targets))
    if as_json:
        emit_json([r.to_dict() for r in made])
    else:
        for r in made:
            where = r.location if r.status.value != "failed" else f"not delivered: {r.error}"
            _say(f"run {r.id}: {r.records} record(s) of {r.target}/{r.operation} -> {where}")
        if not made:
            _say("nothing queued")
    undelivered = [r for r in made if r.status.value == "failed" and r.format == "http"]
    if undelivered:
        raise HybridMeshError(f"{len(undelivered)} run(s) not delivered; their records stay queued")


@batch.command()
@_exchange_option
@json_option
def collect(exchange_dir: Path, as_json: bool) -> None:
    """Read the result files in the targets' inboxes and settle their records."""
    report = run(_with_batch(exchange_dir, lambda b: b.collect_results()))
    if as_json:
        emit_json(report.to_dict())
    else:
        for path in report.files:
            _say(f"processed {path}")
        for path, why in report.rejected.items():
            err_console.print(
                f"rejected {path}: {why}", markup=False, highlight=False, soft_wrap=True
            )
        _say(
            f"{report.acknowledged} acknowledged, {report.failed} failed (sent for review), "
            f"{len(report.unknown)} unknown record id(s)"
        )
    if report.rejected:
        raise HybridMeshError(
            f"{len(report.rejected)} result file(s) rejected (moved to inbox/rejected)"
        )


@batch.command()
@click.argument("record_id", metavar="ID")
@json_option
def requeue(record_id: str, as_json: bool) -> None:
    """Queue a failed record again, for the next run of its queue."""
    record = run(_with_batch(Path(DEFAULT_EXCHANGE_DIR), lambda b: b.requeue(record_id)))
    if as_json:
        emit_json(record.to_dict())
    else:
        _say(f"queued {record.id} again ({record.target}/{record.operation})")


__all__ = ["batch"]
