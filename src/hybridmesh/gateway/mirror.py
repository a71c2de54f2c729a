"""Mirroring: a share of a route's requests copied to a candidate backend, and the answers
compared (a parallel run, as GitHub's Scientist or Envoy's request mirroring do it).

A route with ``mirror:`` names one of its backends as the candidate. For each request of
one of ``mirror.methods`` (GET and HEAD unless told), with a chance of ``mirror.percent``,
the gateway sends a copy (same method, path, query, headers and body, as the route's
policies left them) to the candidate in the background, on connections of its own and with
the route's timeouts, while the primary call goes on as usual. The primary's answer is
never held or changed by the copy: the copy's answer is compared only after the client got
the primary's. With ``mirror.max_in_flight`` copies under way, further ones are dropped
(and counted). A request that the weights already send to the candidate is not copied.

The comparison (``mirror.compare``) looks at the status, the headers listed in
``compare.headers``, and the bodies: JSON bodies (either side's ``Content-Type`` is
``application/json`` or ``+json``) value by value, leaving out the ``compare.ignore`` paths
(``a.b``; ``*`` stands for any key or index, and a path also covers everything below it),
any other body byte for byte. Each copy ends as one of the outcomes counted in
``hybridmesh_gateway_mirror_total{route,outcome}``:

- ``match``: no difference;
- ``mismatch``: a difference; the newest ``compare.keep`` mismatches of each route are kept
  in the store's ``gw_mismatches`` (what differed, both statuses, both bodies up to
  :data:`MAX_STORED_BODY` bytes), written in the background;
- ``failed``: no comparison could be made: the candidate gave no answer (refused, reset,
  timed out) or the primary call failed;
- ``dropped``: not sent, ``max_in_flight`` copies were under way.

The stats windows (:mod:`hybridmesh.gateway.stats`) count each copy as backend
``mirror:<candidate>``: its status and latency when the candidate answered, and whether it
was compared and differed, so a parallel run's error rate, p95 and mismatch rate can be
read from the store, every replica together.

``hybridmesh routes mismatches ROUTE`` lists what was kept (:func:`recent_mismatches`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hybridmesh.core.ids import uuid7
from hybridmesh.core.serialization import dumps, loads
from hybridmesh.gateway.config import Compare, Mirror, Route
from hybridmesh.gateway.http import (
    Headers,
    ProxyRequest,
    ReplaceAnswer,
    forwarded_lines,
    with_body,
)
from hybridmesh.gateway.metrics import GatewayMetrics
from hybridmesh.gateway.upstream import (
    BodySink,
    UpstreamConnection,
    UpstreamError,
    UpstreamPool,
)
from hybridmesh.observability import get_logger
from hybridmesh.store import Store

if TYPE_CHECKING:
    from hybridmesh.gateway.server import BackendRuntime, RouteRuntime

log = get_logger("hybridmesh.gateway.mirror")

#: Most bytes of each body kept with a stored mismatch.
MAX_STORED_BODY = 64 * 1024
#: Most bytes of the candidate's body read into memory for the comparison; past it only
#: its length and digest are kept, and bodies are compared by digest.
MAX_COMPARE_BYTES = 8 * 1024 * 1024
#: Most body differences listed for one mismatch (then one entry says how many more).
MAX_BODY_DIFFERENCES = 50
#: Mismatches waiting to be written; past it new ones are not stored (still counted).
MAX_QUEUED_MISMATCHES = 1000
#: Mismatches written in one transaction.
WRITE_BATCH = 100
#: Seconds a copy waits for the primary's answer beyond the route's total timeout.
PRIMARY_GRACE = 5.0

#: Headers never passed on (RFC 9110 section 7.6.1), as the primary call does.


# -- comparing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One side's answer as compared: status, headers and body (``body`` holds at most
    :data:`MAX_COMPARE_BYTES`; ``length`` and ``digest`` are of the whole body)."""

    status: int
    headers: Headers
    body: bytes
    length: int
    digest: bytes
    truncated: bool = False

    @classmethod
    def of(cls, status: int, headers: Headers, body: bytes) -> Reply:
        return cls(status, headers, body, len(body), hashlib.sha256(body).digest())


def _is_json(headers: Headers) -> bool:
    kind = (headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def compare_replies(primary: Reply, candidate: Reply, settings: Compare) -> list[dict[str, Any]]:
    """What differs between the two answers, as ``settings`` says to compare them (an
    empty list: they match). Each difference is a JSON object naming its ``field``
    (``status``, ``header`` or ``body``)."""
    found: list[dict[str, Any]] = []
    if primary.status != candidate.status:
        found.append({"field": "status", "primary": primary.status, "candidate": candidate.status})
    for name in settings.headers:
        mine = primary.headers.get_all(name)
        theirs = candidate.headers.get_all(name)
        if mine != theirs:
            found.append(
                {
                    "field": "header",
                    "name": name,
                    "primary": ", ".join(mine) if mine else None,
                    "candidate": ", ".join(theirs) if theirs else None,
                }
            )
    found.extend(_body_differences(primary, candidate, settings.ignore))
    return found


def _body_differences(
    primary: Reply, candidate: Reply, ignore: tuple[str, ...]
) -> list[dict[str, Any]]:
    if primary.length == candidate.length and primary.digest == candidate.digest:
        return []
    whole = not (primary.truncated or candidate.truncated)
    if whole and (_is_json(primary.headers) or _is_json(candidate.headers)):
        try:
            mine = loads(primary.body) if primary.body else None
        except ValueError:
            mine = _NOT_JSON
        try:
            theirs = loads(candidate.body) if candidate.body else None
        except ValueError:
            theirs = _NOT_JSON
        if mine is not _NOT_JSON and theirs is not _NOT_JSON:
            return json_differences(mine, theirs, ignore)
        if mine is not _NOT_JSON:
            return [{"field": "body", "change": "not_json", "side": "candidate"}]
    return [
        {
            "field": "body",
            "change": "bytes",
            "primary_length": primary.length,
            "candidate_length": candidate.length,
        }
    ]


_NOT_JSON = object()
_MISSING = object()


def _ignored(path: tuple[str, ...], patterns: list[tuple[str, ...]]) -> bool:
    return any(
        len(pattern) <= len(path)
        and all(want in ("*", got) for want, got in zip(pattern, path, strict=False))
        for pattern in patterns
    )


def _same_scalar(a: Any, b: Any) -> bool:
    # JSON's true is not 1, and 1 is 1.0.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return bool(a == b)


def _brief(value: Any) -> Any:
    if isinstance(value, dict):
        return f"object ({len(value)} keys)"
    if isinstance(value, list):
        return f"array ({len(value)} items)"
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "…"
    return value


def json_differences(
    primary: Any, candidate: Any, ignore: tuple[str, ...] = (), *, limit: int = 0
) -> list[dict[str, Any]]:
    """Where two JSON values differ, path by path (dotted, list indexes as numbers),
    leaving out the ``ignore`` paths (``*``: any one key or index; a path covers
    everything below it). At most ``limit`` (default :data:`MAX_BODY_DIFFERENCES`) are
    listed, then one ``{"change": "more", "count": n}``."""
    limit = limit or MAX_BODY_DIFFERENCES
    patterns = [tuple(p.split(".")) for p in ignore if p]
    found: list[dict[str, Any]] = []
    more = 0
    for path, mine, theirs in _walk_pairs(primary, candidate, patterns):
        if len(found) >= limit:
            more += 1
            continue
        entry: dict[str, Any] = {"field": "body", "path": ".".join(path)}
        if theirs is _MISSING:
            entry.update(change="missing", primary=_brief(mine))
        elif mine is _MISSING:
            entry.update(change="extra", candidate=_brief(theirs))
        else:
            entry.update(change="changed", primary=_brief(mine), candidate=_brief(theirs))
        found.append(entry)
    if more:
        found.append({"field": "body", "change": "more", "count": more})
    return found


def _walk_pairs(
    primary: Any, candidate: Any, patterns: list[tuple[str, ...]]
) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """Every place where the values differ, depth first, without recursion."""
    stack: list[tuple[tuple[str, ...], Any, Any]] = [((), primary, candidate)]
    while stack:
        path, mine, theirs = stack.pop()
        if patterns and path and _ignored(path, patterns):
            continue
        if mine is _MISSING or theirs is _MISSING:
            yield path, mine, theirs
        elif isinstance(mine, dict) and isinstance(theirs, dict):
            keys = list(mine) + [k for k in theirs if k not in mine]
            for key in reversed(keys):
                stack.append(
                    ((*path, str(key)), mine.get(key, _MISSING), theirs.get(key, _MISSING))
                )
        elif isinstance(mine, list) and isinstance(theirs, list):
            for index in reversed(range(max(len(mine), len(theirs)))):
                stack.append(
                    (
                        (*path, str(index)),
                        mine[index] if index < len(mine) else _MISSING,
                        theirs[index] if index < len(theirs) else _MISSING,
                    )
                )
        elif (
            isinstance(mine, dict | list)
            or isinstance(theirs, dict | list)
            or not _same_scalar(mine, theirs)
        ):
            yield path, mine, theirs


# -- the store -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """One kept mismatch, as ``gw_mismatches`` holds it."""

    id: str
    route: str
    at: float
    method: str
    #: The path as both backends got them (never the query string, which may carry a key).
    path: str
    differences: list[dict[str, Any]]
    primary_status: int | None
    candidate_status: int | None
    primary_body: str | None
    candidate_body: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "route": self.route,
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "differences": self.differences,
            "primary_status": self.primary_status,
            "candidate_status": self.candidate_status,
            "primary_body": self.primary_body,
            "candidate_body": self.candidate_body,
        }


def _stored_body(body: bytes) -> str:
    return body[:MAX_STORED_BODY].decode("utf-8", errors="replace")


async def recent_mismatches(store: Store, route: str, limit: int = 20) -> list[Mismatch]:
    """The newest ``limit`` kept mismatches of ``route``, newest first."""
    rows = await store.fetch_all(
        "SELECT id, route, at, method, path, differences, primary_status, candidate_status, "
        "primary_body, candidate_body FROM gw_mismatches WHERE route = ? "
        "ORDER BY at DESC, id DESC LIMIT ?",
        route,
        int(limit),
    )
    return [
        Mismatch(
            row["id"],
            row["route"],
            float(row["at"]),
            row["method"],
            row["path"],
            loads(row["differences"]),
            row["primary_status"],
            row["candidate_status"],
            row["primary_body"],
            row["candidate_body"],
        )
        for row in rows
    ]


class MismatchWriter:
    """Writes mismatches in the background, a batch per transaction, and keeps each
    route's newest ``keep``. :meth:`put` never waits: past :data:`MAX_QUEUED_MISMATCHES`
    waiting, a mismatch is not stored."""

    def __init__(self, store: Store, *, max_queued: int = MAX_QUEUED_MISMATCHES) -> None:
        self.store = store
        self._queue: asyncio.Queue[tuple[Mismatch, int]] = asyncio.Queue(max_queued)
        self._task: asyncio.Task[None] | None = None
        self.not_stored = 0

    def put(self, mismatch: Mismatch, keep: int) -> bool:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gateway:mismatches")
        try:
            self._queue.put_nowait((mismatch, keep))
        except asyncio.QueueFull:
            self.not_stored += 1
            return False
        return True

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < WRITE_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("gateway mirror: storing %d mismatches failed: %s", len(batch), error)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[tuple[Mismatch, int]]) -> None:
        keep = {m.route: k for m, k in batch}
        rows = [
            (
                m.id,
                m.route,
                m.at,
                m.method,
                m.path,
                dumps(m.differences),
                m.primary_status,
                m.candidate_status,
                m.primary_body,
                m.candidate_body,
            )
            for m, _ in batch
        ]
        async with self.store.transaction() as tx:
            await tx.executemany(
                "INSERT INTO gw_mismatches (id, route, at, method, path, differences, "
                "primary_status, candidate_status, primary_body, candidate_body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            for route, count in keep.items():
                await tx.execute(
                    "DELETE FROM gw_mismatches WHERE route = ? AND id NOT IN "
                    "(SELECT id FROM gw_mismatches WHERE route = ? "
                    "ORDER BY at DESC, id DESC LIMIT ?)",
                    route,
                    route,
                    count,
                )

    async def flush(self) -> None:
        """Wait until every mismatch put so far is written (or failed to be)."""
        if self._task is not None:
            await self._queue.join()

    async def close(self, grace: float = 5.0) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


# -- copying ---------------------------------------------------------------------------------


class _Collector(BodySink):
    """The candidate's body: kept up to :data:`MAX_COMPARE_BYTES`, digested whole."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.kept = 0
        self.length = 0
        self.hash = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self.length += len(chunk)
        self.hash.update(chunk)
        if self.kept < MAX_COMPARE_BYTES:
            piece = chunk[: MAX_COMPARE_BYTES - self.kept]
            self.chunks.append(piece)
            self.kept += len(piece)


class MirrorTicket:
    """One copy under way: the server tells it how the primary call ended."""

    __slots__ = ("_primary",)

    def __init__(self) -> None:
        self._primary: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()

    def primary(self, status: int, headers: Headers, body: bytes) -> None:
        """The primary's answer, as the client got it (called after it was sent)."""
        if not self._primary.done():
            self._primary.set_result(Reply.of(status, headers.copy(), body))

    def primary_failed(self) -> None:
        """The primary call brought no answer: nothing to compare with."""
        if not self._primary.done():
            self._primary.set_result(None)


class MirrorHub:
    """Every route's mirroring in one replica: the candidates' connections, the copies
    under way (counted per route across reloads), the outcomes and the mismatch writer."""

    def __init__(
        self,
        store: Store,
        metrics: GatewayMetrics,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        observe: Callable[[str, str, int, float], None] | None = None,
        compared: Callable[[str, str, bool], None] | None = None,
    ) -> None:
        self.metrics = metrics
        #: Where each copy's outcome is counted (the stats windows), as backend
        #: ``mirror:<candidate>``: a parallel run shows the candidate's error rate and
        #: latency before it takes any traffic.
        self.observe = observe
        #: Where each comparison is counted (the stats windows, the same backend), and
        #: whether it found a difference.
        self.compared = compared
        self.pool = UpstreamPool()
        self.writer = MismatchWriter(store)
        self.rng = rng or random.Random()
        self.clock = clock
        self.in_flight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def build(self, route: Route, runtime: RouteRuntime) -> RouteMirror | None:
        """The mirror of ``route`` (None when it mirrors nothing, or its candidate cannot
        be called: a registry service that is gone)."""
        if route.mirror is None:
            return None
        candidate = runtime.backends.get(route.mirror.backend)
        if candidate is None:
            log.warning(
                "gateway mirror: route %s cannot reach its candidate %s; not mirroring",
                route.name,
                route.mirror.backend,
            )
            return None
        return RouteMirror(self, route, route.mirror, runtime, candidate)

    async def settle(self) -> None:
        """Wait until every copy under way has ended and its mismatch is written."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.writer.flush()

    async def close(self) -> None:
        """Abandon copies under way, write the mismatches found, close the connections."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.writer.close()
        self.pool.close()

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class RouteMirror:
    """The mirroring of one route at one revision."""

    def __init__(
        self,
        hub: MirrorHub,
        route: Route,
        settings: Mirror,
        runtime: RouteRuntime,
        candidate: BackendRuntime,
    ) -> None:
        self.hub = hub
        self.route = route
        self.settings = settings
        self.runtime = runtime
        self.candidate = candidate
        self._methods = frozenset(settings.methods)

    def start(self, request: ProxyRequest, backend: str | None = None) -> MirrorTicket | None:
        """A copy of ``request`` on its way to the candidate, or None when this request
        is not copied (its method, the percent, ``backend`` being the candidate itself,
        or too many copies under way)."""
        settings = self.settings
        if request.method not in self._methods or backend == settings.backend:
            return None
        if settings.percent < 100 and self.hub.rng.random() * 100 >= settings.percent:
            return None
        name = self.route.name
        if self.hub.in_flight.get(name, 0) >= settings.max_in_flight:
            self.hub.metrics.mirrored(name, "dropped")
            return None
        ticket = MirrorTicket()
        message = self._message(request)
        self.hub.in_flight[name] = self.hub.in_flight.get(name, 0) + 1
        self.hub._spawn(self._run(ticket, request, message))
        return ticket

    def _message(self, request: ProxyRequest) -> bytes:
        """The copy as the candidate gets it: what the primary call sends, addressed to
        the candidate."""
        lines = forwarded_lines(
            request,
            base_path=self.candidate.base_path,
            authority=self.candidate.origin.authority,
            preserve_host=self.route.preserve_host,
            peer=request.client_ip,
        )
        return with_body(lines, request)

    async def _run(self, ticket: MirrorTicket, request: ProxyRequest, message: bytes) -> None:
        name = self.route.name
        waited_until = time.monotonic() + self.route.timeouts.total + PRIMARY_GRACE
        outcome = "failed"
        try:
            candidate: Reply | None = None
            began = time.perf_counter()
            try:
                candidate = await self._call(message, request.method == "HEAD")
            except TimeoutError as error:
                log.debug("gateway mirror: route %s candidate failed: %s", name, error)
                self._observe(504, began)
            except OSError as error:
                log.debug("gateway mirror: route %s candidate failed: %s", name, error)
                self._observe(502, began)
            else:
                self._observe(candidate.status, began)
            try:
                async with asyncio.timeout(max(waited_until - time.monotonic(), 0.001)):
                    primary = await ticket._primary
            except TimeoutError:
                primary = None
            if candidate is None or primary is None:
                return
            candidate = self._as_client_sees(request, candidate)
            differences = compare_replies(primary, candidate, self.settings.compare)
            outcome = "mismatch" if differences else "match"
            if self.hub.compared is not None:
                self.hub.compared(name, f"mirror:{self.settings.backend}", bool(differences))
            if differences and self.settings.compare.keep:
                self.hub.writer.put(
                    Mismatch(
                        uuid7(),
                        name,
                        self.hub.clock(),
                        request.method,
                        request.path,
                        differences,
                        primary.status,
                        candidate.status,
                        _stored_body(primary.body),
                        _stored_body(candidate.body),
                    ),
                    self.settings.compare.keep,
                )
        except asyncio.CancelledError:
            outcome = ""
            raise
        except Exception:
            log.exception("gateway mirror: comparing a copy of route %s failed", name)
        finally:
            self.hub.in_flight[name] = self.hub.in_flight.get(name, 1) - 1
            if outcome:
                self.hub.metrics.mirrored(name, outcome)

    def _observe(self, status: int, began: float) -> None:
        if self.hub.observe is not None:
            backend = f"mirror:{self.settings.backend}"
            self.hub.observe(self.route.name, backend, status, time.perf_counter() - began)

    async def _call(self, message: bytes, head_only: bool) -> Reply:
        """Send the copy and read its whole answer, within the route's timeouts."""
        timeouts = self.route.timeouts
        origin = self.candidate.origin
        deadline = time.monotonic() + timeouts.total
        pool = self.hub.pool
        upstream: UpstreamConnection | None = None
        try:
            upstream, reused = await pool.connection(origin, min(timeouts.connect, timeouts.total))
            try:
                async with asyncio.timeout(_left(deadline, timeouts.read)):
                    response = await upstream.send(message, head_only)
            except UpstreamError:
                if not reused or upstream._received_any:
                    raise
                # A keep-alive connection the candidate had closed: once more, anew.
                upstream, _ = await pool.connection(origin, timeouts.connect)
                async with asyncio.timeout(_left(deadline, timeouts.read)):
                    response = await upstream.send(message, head_only)
            collector = _Collector()
            upstream.attach(collector)
            assert response.done is not None
            async with asyncio.timeout(_left(deadline, timeouts.total)):
                await response.done
        except BaseException:
            if upstream is not None:
                upstream.abort()
            raise
        pool.release(upstream)  # kept for the next copy when the answer ended cleanly
        headers = Headers()
        headers.pairs = [
            (n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in response.headers
        ]
        return Reply(
            response.status,
            headers,
            b"".join(collector.chunks),
            collector.length,
            collector.hash.digest(),
            collector.length > collector.kept,
        )

    def _as_client_sees(self, request: ProxyRequest, reply: Reply) -> Reply:
        """The candidate's answer after the route's policies, as the primary's was."""
        policies = self.runtime.policies
        if not policies:
            return reply
        headers = reply.headers
        body = reply.body
        for policy in reversed(policies):  # as the server does: the answer goes backwards
            policy.response_head(request, reply.status, headers)
        if reply.truncated:
            return reply
        changed = False
        try:
            for policy in reversed(policies):
                if policy.transforms_response_body:
                    body = policy.response_body(request, reply.status, headers, body)
                    changed = True
        except ReplaceAnswer as replaced:  # what the client would have got instead
            answer = replaced.answer
            return Reply.of(answer.status, Headers(answer.headers), answer.body)
        return Reply.of(reply.status, headers, body) if changed else reply


def _left(deadline: float, cap: float) -> float:
    return max(min(cap, deadline - time.monotonic()), 0.001)


__all__ = [
    "MAX_STORED_BODY",
    "MirrorHub",
    "MirrorTicket",
    "Mismatch",
    "MismatchWriter",
    "Reply",
    "RouteMirror",
    "compare_replies",
    "json_differences",
    "recent_mismatches",
]
