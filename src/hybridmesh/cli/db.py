"""Placeholder: replaced by the real `db` command group."""

import click


@click.group() if "db" != "demo" else click.command()
def db() -> None:
    """(not built yet)"""
