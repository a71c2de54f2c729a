"""Placeholder: replaced by the real `demo` command group."""

import click


@click.group() if "demo" != "demo" else click.command()
def demo() -> None:
    """(not built yet)"""
