"""The reference providers of the committed contracts, and a provider with a renamed field."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from tests.integration.loopback import serve

from hybridmesh.contracts.reference import (
    ReferenceProviders,
    produce_user_events,
    reference_providers,
)

#: The committed contracts of the reference system.
CONTRACTS = Path(__file__).resolve().parents[3] / "contracts"


@pytest.fixture
async def providers(tmp_path: Path) -> AsyncIterator[ReferenceProviders]:
    """The reference providers on free ports, after user-service published its events."""
    async with reference_providers(tmp_path) as started:
        await produce_user_events(started)
        yield started


@pytest.fixture
def events_file(tmp_path: Path, providers: ReferenceProviders) -> Path:
    path = tmp_path / "published.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in providers.published))
    return path


@pytest.fixture
def contracts_dir(tmp_path: Path) -> Path:
    """A copy of the committed contracts, which a test may add a file to."""
    return Path(shutil.copytree(CONTRACTS, tmp_path / "contracts"))


def renaming(upstream: str, old: str, new: str) -> web.Application:
    """A proxy in front of ``upstream`` that renames the JSON field ``old`` to ``new`` in
    every answer: a provider's new version that changed a field."""

    async def forward(request: web.Request) -> web.Response:
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                request.method,
                upstream + request.path_qs,
                data=await request.read(),
                headers={"Content-Type": request.headers.get("Content-Type", "")},
            ) as resp,
        ):
            body = await resp.read()
            if resp.content_type == "application/json" and body:
                doc = json.loads(body)
                if isinstance(doc, dict) and old in doc:
                    doc[new] = doc.pop(old)
                body = json.dumps(doc).encode()
            # The upstream's Content-Type as it is (with its charset): only the field differs.
            kept = {"Content-Type": resp.headers["Content-Type"]} if body else {}
            return web.Response(status=resp.status, body=body, headers=kept)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


@pytest.fixture
async def renamed_user_service(providers: ReferenceProviders) -> AsyncIterator[str]:
    """user-service whose validate-user answer says ``userId`` instead of ``user_id``."""
    async with serve(renaming(providers.urls["user-service"], "user_id", "userId")) as url:
        yield url


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (into its backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
