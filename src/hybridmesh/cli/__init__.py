"""The ``hybridmesh`` command line."""

from hybridmesh.cli.main import cli, main

__all__ = ["cli", "main"]
