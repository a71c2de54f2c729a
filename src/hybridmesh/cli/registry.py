"""Placeholder: replaced by the real `registry` command group."""

import click


@click.group() if "registry" != "demo" else click.command()
def registry() -> None:
    """(not built yet)"""
