"""The ``hybridmesh`` command line run in-process from an async test."""

from __future__ import annotations

import asyncio

import pytest

from hybridmesh.cli.main import main


async def run_cli_parts(
    capsys: pytest.CaptureFixture[str], database_url: str, *args: str
) -> tuple[int, str, str]:
    """Run ``hybridmesh --database-url DATABASE_URL ARGS`` on a thread (it runs its own
    event loop, so servers on the test's loop go on serving); its exit code, standard
    output and standard error."""

    def call() -> int:
        with pytest.raises(SystemExit) as exited:
            main(["--database-url", database_url, *args])
        code = exited.value.code
        return code if isinstance(code, int) else 1

    capsys.readouterr()
    code = await asyncio.to_thread(call)
    out, err = capsys.readouterr()
    return code, out, err


async def run_cli(
    capsys: pytest.CaptureFixture[str], database_url: str, *args: str
) -> tuple[int, str]:
    """:func:`run_cli_parts` with standard output and error together."""
    code, out, err = await run_cli_parts(capsys, database_url, *args)
    return code, out + err
