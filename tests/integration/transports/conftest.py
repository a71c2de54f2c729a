"""A recording HTTP service on loopback, a pool per test, and a loop that must stay clean."""

from __future__ import annotations

import asyncio
import gc
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.loopback import serve
from tests.integration.transports.helpers import Recorder

from hybridmesh.transports.http1 import Http1Pool


@pytest.fixture(autouse=True)
async def clean_loop() -> AsyncIterator[None]:
    """Fails a test that leaves a task running or a future's exception unretrieved."""
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: problems.append(context))
    yield
    await asyncio.sleep(0)
    gc.collect()
    leftover = asyncio.all_tasks() - {asyncio.current_task()}
    loop.set_exception_handler(None)
    assert not leftover, leftover
    assert not problems, problems


@pytest.fixture
async def service() -> AsyncIterator[tuple[Recorder, str]]:
    recorder = Recorder()
    async with serve(recorder.app()) as url:
        yield recorder, url


@pytest.fixture
async def pool() -> AsyncIterator[Http1Pool]:
    pool = Http1Pool()
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with the openssl tool."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl tool is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
async def tls_service(certificate: tuple[Path, Path]) -> AsyncIterator[tuple[Recorder, str]]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    recorder = Recorder()
    async with serve(recorder.app(), ssl_context=context) as url:
        yield recorder, url
