"""The ``hybridmesh`` command line. Errors map to exit codes here, and only here."""

from __future__ import annotations

import sys

import click
from click.core import ParameterSource
from rich.markup import escape

from hybridmesh import __version__
from hybridmesh.cli._common import CliContext, err_console
from hybridmesh.core.errors import (
    HybridMeshError,
    InvalidSettingError,
    ValidationError,
    exit_code_for,
)
from hybridmesh.core.settings import env_name, get_settings
from hybridmesh.store.urls import parse_database_url


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hybridmesh")
@click.option(
    "--database-url",
    envvar="HYBRIDMESH_DATABASE_URL",
    default=None,
    help="State store: sqlite:///PATH (default sqlite:///.hybridmesh/mesh.db), "
    "sqlite:////ABSOLUTE/PATH, sqlite:///:memory: or postgresql://USER@HOST:PORT/DATABASE. "
    "A malformed URL exits 2.",
)
@click.pass_context
def cli(ctx: click.Context, database_url: str | None) -> None:
    """hybridmesh: a service registry, a resilient hybrid client, a CloudEvents bus and
    durable sagas and workflows for systems that mix microservices, modular monoliths, a
    legacy monolith and serverless functions."""
    settings = get_settings()
    if database_url is not None:
        settings = settings.model_copy(update={"database_url": database_url})
    try:
        parse_database_url(settings.database_url)
    except InvalidSettingError as bad:
        from_line = ctx.get_parameter_source("database_url") is ParameterSource.COMMANDLINE
        name = "--database-url" if from_line else env_name("database_url")
        raise bad.for_setting(name) from None
    ctx.obj = CliContext(settings)


def _register_commands() -> None:
    from hybridmesh.cli.batch import batch
    from hybridmesh.cli.chaos import chaos
    from hybridmesh.cli.contracts import contracts
    from hybridmesh.cli.db import db
    from hybridmesh.cli.demo import demo
    from hybridmesh.cli.events import dlq, events
    from hybridmesh.cli.experiments import experiments
    from hybridmesh.cli.flags import flags
    from hybridmesh.cli.gateway import gateway, keys, routes
    from hybridmesh.cli.migrate import migrate
    from hybridmesh.cli.orchestration import definitions, executions, saga, worker, workflow
    from hybridmesh.cli.projections import projections
    from hybridmesh.cli.reconcile import reconcile_group
    from hybridmesh.cli.registry import registry
    from hybridmesh.cli.replicate import replicate
    from hybridmesh.cli.review import review
    from hybridmesh.cli.serve import serve
    from hybridmesh.cli.slo import slo
    from hybridmesh.cli.tokens import audit, tokens

    cli.add_command(db)
    cli.add_command(registry)
    cli.add_command(events)
    cli.add_command(dlq)
    cli.add_command(definitions)
    cli.add_command(saga)
    cli.add_command(workflow)
    cli.add_command(executions)
    cli.add_command(review)
    cli.add_command(batch)
    cli.add_command(worker)
    cli.add_command(serve)
    cli.add_command(tokens)
    cli.add_command(audit)
    cli.add_command(gateway)
    cli.add_command(routes)
    cli.add_command(keys)
    cli.add_command(migrate)
    cli.add_command(reconcile_group)
    cli.add_command(flags)
    cli.add_command(experiments)
    cli.add_command(replicate)
    cli.add_command(projections)
    cli.add_command(slo)
    cli.add_command(chaos)
    cli.add_command(demo)
    cli.add_command(contracts)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: exit 2 for bad input, 1 for failures at run time."""
    try:
        cli.main(args=argv, prog_name="hybridmesh", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except click.ClickException as usage:
        usage.show()
        sys.exit(usage.exit_code)
    except HybridMeshError as error:
        # A validation error's lines already say "error" (file:line: error [field]: …).
        prefix = "" if isinstance(error, ValidationError) else "[red]error:[/red] "
        err_console.print(
            f"{prefix}{escape(str(error))}", markup=True, highlight=False, soft_wrap=True
        )
        sys.exit(exit_code_for(error))
    sys.exit(0)


__all__ = ["cli", "main"]
