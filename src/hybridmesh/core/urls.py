"""The rule for the http(s) URLs users write: a service's ``base_url``, a bulk endpoint.

Such a URL is joined with paths and sent on every call, so it must be exactly an origin and
an optional path: ``http`` or ``https``, a host, an optional port and path, and nothing
else. Refused: whitespace, control characters and backslashes anywhere (``http://a b/``), user
credentials (``http://user:secret@host``: they would be stored, listed and exported with
the registry; a service's credentials belong in its own configuration), a query or a
fragment (a path joined after them would land inside them), ``.`` and ``..`` segments in
the path, and a malformed port.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

#: Whitespace and control characters (they would end or split a request line) and the
#: backslash (a path separator to some servers, invalid in a URL).
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")


def http_url_problem(url: str) -> str | None:
    """What keeps ``url`` from being an http(s) URL a call can be sent to (None: nothing)."""
    bad = _FORBIDDEN.search(url)
    if bad is not None:
        return f"{url!r} is not an http(s) URL: it contains {bad.group()!r}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"{url!r} is not an http(s) URL: its host or port is malformed"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL with a host"
    if parts.username is not None or parts.password is not None:
        return f"{parts.scheme}://…@{parts.hostname}: a URL here carries no user or password"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return f"{url!r}: a URL here has no query or fragment ('?', '#')"
    if any(unquote(segment) in (".", "..") for segment in parts.path.split("/")):
        return f"{url!r}: its path has a '.' or '..' segment"
    if port == 0:
        return f"{url!r}: port 0 is not a port a service listens on"
    return None


__all__ = ["http_url_problem"]
