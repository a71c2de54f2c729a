"""The web dashboard: a browser front end to the control-plane API, served by the same process.

The dashboard is static: one HTML page, a style sheet and ES modules shipped in ``static/``
with the package, with no build step and nothing fetched from elsewhere. Everything it shows
it reads from ``/api/v1`` with the API token the user signs in with. The token lives in the
tab's ``sessionStorage`` and travels only in the ``Authorization`` header, never in a cookie,
so another site cannot make the browser act with it (no CSRF).

:func:`mount` adds the routes:

- ``GET /``: redirects to ``/ui/``;
- ``GET /ui/``: the page;
- ``GET /ui/static/{path}``: the assets, by a fixed table of content types (anything else is
  404), revalidated on every use (``no-cache`` with ``ETag``/``Last-Modified``), so a
  browser never runs an older script against a newer API after an upgrade.

Every dashboard response carries :data:`SECURITY_HEADERS`: a Content-Security-Policy that
allows only this origin's scripts, styles and API (no inline script, no framing), and no
referrer.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

#: Where the assets live inside the package.
STATIC_DIR = Path(__file__).parent / "static"

#: Where the dashboard is served.
UI_PREFIX = "/ui"

#: The only files served, by suffix: anything else in ``static/`` stays private.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

#: Assets are small and not fingerprinted: revalidate each time, answered 304 when unchanged.
CACHE_CONTROL = "no-cache"


def mount(app: web.Application) -> None:
    """Add the dashboard's routes to ``app`` (see the module's documentation)."""
    app.router.add_get("/", _to_ui, allow_head=True)
    app.router.add_get(UI_PREFIX, _to_ui, allow_head=True)
    app.router.add_get(f"{UI_PREFIX}/", _index, allow_head=True)
    app.router.add_get(f"{UI_PREFIX}/static/{{path:.+}}", _asset, allow_head=True)


async def _to_ui(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"{UI_PREFIX}/", headers=SECURITY_HEADERS)


async def _index(request: web.Request) -> web.StreamResponse:
    return _file(STATIC_DIR / "index.html")


async def _asset(request: web.Request) -> web.StreamResponse:
    path = _asset_path(request.match_info["path"])
    if path is None:
        raise web.HTTPNotFound(text=f"the dashboard has no asset {request.match_info['path']}")
    return _file(path)


def _asset_path(relative: str) -> Path | None:
    """The file ``relative`` names inside :data:`STATIC_DIR`, if it is one the dashboard
    serves; None for anything outside it (``..``), hidden, or of another type."""
    root = STATIC_DIR.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
    if hidden or path.suffix not in CONTENT_TYPES:
        return None
    return path


def _file(path: Path) -> web.FileResponse:
    headers = {
        **SECURITY_HEADERS,
        "Cache-Control": CACHE_CONTROL,
        "Content-Type": CONTENT_TYPES[path.suffix],
    }
    return web.FileResponse(path, headers=headers)


__all__ = ["CONTENT_SECURITY_POLICY", "SECURITY_HEADERS", "STATIC_DIR", "mount"]
