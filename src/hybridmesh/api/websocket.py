"""Fan-out of bus events to WebSocket clients: the live feed of browsers and the dashboard.

A client connects with a token (``?token=…`` or ``Authorization: Bearer …``); an injected
:data:`Authenticator` turns it into a :class:`Principal` or refuses it. A hub built without
one (no tokens configured yet) answers every connection 401 with a problem+json body that
names :data:`TOKENS_SETTING`, the setting to configure. The hub reads the bus
(:meth:`WebSocketHub.attach`) and hands every event to the clients that want it. Messages
are JSON text frames.

The hub reads with :meth:`EventBus.open_reader`, not a consumer group: it only forwards
live events, so it needs no acks, no replays of dead letters and no place kept across
restarts, and a reader leaves nothing behind however the process ends (a group made per
process would stay in the backend after a crash).

Client to server (any message may carry an ``"id"``, string or number, echoed in its reply)::

    {"action": "subscribe", "patterns": ["user.*"]}   -> {"type": "subscribed", "patterns": […]}
    {"action": "unsubscribe", "patterns": ["user.*"]} -> {"type": "unsubscribed", "patterns": […]}
    {"action": "join", "room": "user:42"}             -> {"type": "joined", "room": "user:42"}
    {"action": "leave", "room": "user:42"}            -> {"type": "left", "room": "user:42"}
    {"action": "ping"}                                -> {"type": "pong"}

``patterns`` in the replies lists every pattern the client now holds. A message that is not
understood or not allowed gets ``{"type": "error", "message": …}``; the connection stays open.

Server to client: ``{"type": "welcome", "user_id": …}`` once, then
``{"type": "event", "event": <structured CloudEvent>}`` for each event routed to the client.

Routing. An event reaches a client at most once, when either

1. one of the client's patterns matches the event type (NATS rules: ``user.*``, ``order.>``,
   see :mod:`~hybridmesh.events.subjects`), or
2. the client has joined the room ``user:<id>`` of a user the event names
   (:func:`users_named_by`): its ``subject`` is ``user:<id>`` or ``users/<id>[/…]``, or its
   ``data`` is a JSON object whose ``user_id`` or ``userId`` is ``<id>`` (a string, or an
   integer written in decimal).

A principal may join its own room ``user:<user_id>`` and the rooms listed in
:attr:`Principal.rooms`; only ``user:<id>`` rooms receive events.

Close codes: 4401 no or unknown token, 1013 the client fell ``queue_limit`` messages behind
(try again later), 1001 the server is shutting down, 1009 a client message was larger than
``max_message_bytes``, 1011 the server failed (the authenticator raised, or writing did).

Delivery is best effort: a client receives what is published while it is connected and
keeping up. Clients that must not miss events consume the bus, not the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from hybridmesh.api.problems import problem_response
from hybridmesh.core.errors import ValidationError
from hybridmesh.core.ids import new_id
from hybridmesh.core.serialization import JSONNumberError, dumps, loads_input
from hybridmesh.events.backend import Delivery, EventReader
from hybridmesh.events.bus import EventBus
from hybridmesh.events.envelope import CloudEvent
from hybridmesh.events.subjects import matches, validate_pattern
from hybridmesh.events.watch import watch_bus
from hybridmesh.observability import MeshMetrics, get_logger

log = get_logger("hybridmesh.api.websocket")

#: Close code for a missing or refused token (4000-4999 are the application's; 401 inside).
UNAUTHORIZED = 4401
#: Close code for a client whose outgoing queue is full (RFC 6455 "try again later").
TRY_AGAIN_LATER = 1013
GOING_AWAY = 1001
INTERNAL_ERROR = 1011

#: The environment variable (``hybridmesh serve --token``) that lists the accepted tokens.
TOKENS_SETTING = "HYBRIDMESH_WS_TOKENS"
#: The problem ``type`` of a connection refused because no tokens are configured.
TOKENS_NOT_CONFIGURED = "urn:hybridmesh:problem:websocket-tokens-not-configured"
#: How to configure tokens, said in the 401 answer and in ``hybridmesh serve``'s warning.
HOW_TO_CONFIGURE_TOKENS = (
    f"set {TOKENS_SETTING}='NAME=USER_ID …' (or pass --token NAME=USER_ID to hybridmesh "
    "serve; --dev-tokens accepts any token during development), then connect with ?token=NAME"
)


@dataclass(frozen=True)
class Principal:
    """Who a token belongs to: a user (or none, for a service), the extra rooms it may join,
    and the event patterns it may subscribe to (``None``: any pattern)."""

    user_id: str | None = None
    rooms: frozenset[str] = frozenset()
    patterns: frozenset[str] | None = None

    def may_subscribe(self, pattern: str) -> bool:
        """Whether this principal may subscribe to ``pattern``: it must be one of the allowed
        patterns, or narrower than one (``user.registered`` under ``user.*``)."""
        if self.patterns is None:
            return True
        return any(_covers(allowed, pattern) for allowed in self.patterns)

    def may_join(self, room: str) -> bool:
        """Whether this principal may join ``room``: its own user room, or a listed room."""
        own = self.user_id is not None and room == user_room(self.user_id)
        return own or room in self.rooms


#: Turns a token into a principal, or ``None`` to refuse it; may be a coroutine function.
Authenticator = Callable[[str], Principal | Awaitable[Principal | None] | None]


class StaticTokens:
    """An :data:`Authenticator` over a fixed table of tokens."""

    def __init__(self, tokens: Mapping[str, Principal]) -> None:
        self._tokens = dict(tokens)

    def __call__(self, token: str) -> Principal | None:
        return self._tokens.get(token)


def allow_any(token: str) -> Principal | None:
    """For development only: any non-empty token is accepted as the user of that id."""
    return Principal(user_id=token) if token else None


def _covers(allowed: str, pattern: str) -> bool:
    """Whether every subject ``pattern`` matches is also matched by ``allowed``."""
    if allowed == pattern:
        return True
    want, have = allowed.split("."), pattern.split(".")
    for index, token in enumerate(want):
        if token == ">":
            return len(have) > index
        if index >= len(have) or have[index] == ">":
            return False
        if token != "*" and (have[index] == "*" or token != have[index]):
            return False
    return len(have) == len(want)


def user_room(user_id: str) -> str:
    """The room of one user's events."""
    return f"user:{user_id}"


def users_named_by(event: CloudEvent) -> set[str]:
    """The ids of the users ``event`` is about, by the routing rule of this module."""
    users: set[str] = set()
    subject = event.subject or ""
    if subject.startswith("user:") and len(subject) > len("user:"):
        users.add(subject[len("user:") :])
    elif subject.startswith("users/"):
        user = subject[len("users/") :].split("/", 1)[0]
        if user:
            users.add(user)
    if isinstance(event.data, Mapping):
        for key in ("user_id", "userId"):
            value = event.data.get(key)
            if isinstance(value, str) and value:
                users.add(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                users.add(str(value))
    return users


@dataclass
class HubStats:
    """What the hub has done since it was created."""

    connected: int = 0
    accepted: int = 0
    rejected: int = 0
    sent: int = 0
    slow_disconnects: int = 0


class _Refused(Exception):
    """A client message that is not understood or not allowed; its text goes back."""


class _Client:
    """One connection: its principal, what it listens to, and its bounded outgoing queue."""

    def __init__(self, ws: web.WebSocketResponse, principal: Principal, queue_limit: int) -> None:
        self.id = new_id()[:12]
        self.ws = ws
        self.principal = principal
        self.patterns: set[str] = set()
        self.rooms: set[str] = set()
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_limit)
        self.writer: asyncio.Task[None] | None = None
        self.closer: asyncio.Task[None] | None = None

    def close(self, code: int, reason: str, timeout: float) -> None:
        """Stop writing and close with ``code``, without waiting (the client may be stuck).

        The closing handshake gets ``timeout`` seconds; then the connection is dropped.
        """
        if self.closer is not None:
            return
        if self.writer is not None:
            self.writer.cancel()
        self.closer = asyncio.create_task(
            self._close(code, reason, deadline=timeout), name=f"ws-close:{self.id}"
        )

    async def _close(self, code: int, reason: str, *, deadline: float) -> None:
        # A slow client's socket is full: the close frame waits behind what it has not read,
        # and only the deadline (which aborts the transport) bounds how long.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(deadline):
                await self.ws.close(code=code, message=reason.encode(), drain=False)

    async def finish(self) -> None:
        """Wait for the writer and the closing handshake to end."""
        if self.writer is not None:
            self.writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.writer
        if self.closer is not None:
            await self.closer


class WebSocketHub:
    """Routes bus events to connected WebSocket clients (see the module docstring).

    ``queue_limit`` (default 1,000) bounds each client's outgoing messages; a client that
    falls that far behind is disconnected with 1013 and counted in
    :attr:`HubStats.slow_disconnects`, so memory never grows with a stuck client.
    ``max_patterns`` and ``max_rooms`` (default 100 each) bound what one client may hold;
    ``max_message_bytes`` (default 64 KiB) bounds an incoming message. ``heartbeat``
    (default 30 s) pings idle clients and drops dead ones; ``close_timeout`` (default 5 s)
    bounds the closing handshake. ``authenticate`` ``None`` means no tokens are configured:
    every connection is answered 401 (problem+json) before the upgrade. When ``metrics`` is
    given, the hub's counters appear in its registry as ``hybridmesh_ws_*`` (one hub per
    registry).
    """

    def __init__(
        self,
        authenticate: Authenticator | None,
        *,
        queue_limit: int = 1000,
        max_patterns: int = 100,
        max_rooms: int = 100,
        max_message_bytes: int = 64 * 1024,
        heartbeat: float | None = 30.0,
        close_timeout: float = 5.0,
        metrics: MeshMetrics | None = None,
    ) -> None:
        if queue_limit < 1:
            raise ValueError("queue_limit must be at least 1")
        self.authenticate = authenticate
        self.queue_limit = queue_limit
        self.max_patterns = max_patterns
        self.max_rooms = max_rooms
        self.max_message_bytes = max_message_bytes
        self.heartbeat = heartbeat
        self.close_timeout = close_timeout
        self.stats = HubStats()
        self._clients: set[_Client] = set()
        self._by_pattern: dict[str, set[_Client]] = {}
        self._by_room: dict[str, set[_Client]] = {}
        self._closing = False
        self._reading: asyncio.Task[None] | None = None
        self._metrics = metrics
        self._collector = _HubCollector(self)
        if metrics is not None:
            metrics.registry.register(self._collector)

    # -- the bus side ----------------------------------------------------------------------

    async def attach(self, bus: EventBus, *, pattern: str = ">") -> None:
        """Read ``bus`` from the newest event on and dispatch what comes (idempotent).

        Once this returns, every event published later reaches the hub. Each server
        process reads every event; nothing is written to the backend for it (see the
        module's text). The reading stops at :meth:`close`.
        """
        if self._reading is not None:
            return
        reader = await bus.open_reader(pattern, start="latest")
        self._reading = asyncio.create_task(self._read(bus, pattern, reader))

    async def _read(self, bus: EventBus, pattern: str, reader: EventReader) -> None:
        """Dispatch what ``reader`` reads until cancelled (see
        :func:`~hybridmesh.events.watch.watch_bus`)."""

        async def forward(delivery: Delivery) -> None:
            if delivery.event is not None:  # not a CloudEvent: nothing to forward
                await self.dispatch(delivery.event)

        await watch_bus(bus, pattern, reader, forward, name="hub")

    async def __call__(self, event: CloudEvent) -> None:
        """The bus handler: :meth:`dispatch`."""
        await self.dispatch(event)

    async def dispatch(self, event: CloudEvent) -> None:
        """Queue ``event`` for every client it is routed to. Never waits on a client and never
        raises: a failure here must not make the bus deliver the event to everyone again."""
        try:
            targets = self._targets(event)
            if targets:
                message = dumps({"type": "event", "event": event.to_dict()})
                for client in targets:
                    self._offer(client, message)
        except Exception:
            log.exception("hub: could not dispatch %s %s", event.type, event.id)

    def _targets(self, event: CloudEvent) -> set[_Client]:
        targets: set[_Client] = set()
        for pattern, members in self._by_pattern.items():
            if matches(pattern, event.type):
                targets |= members
        for user in users_named_by(event):
            targets |= self._by_room.get(user_room(user), set())
        return targets

    # -- the WebSocket side ----------------------------------------------------------------

    @property
    def clients(self) -> int:
        """How many clients are connected now."""
        return self.stats.connected

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler of the WebSocket endpoint.

        Without an authenticator every request gets 401 (problem+json naming
        :data:`TOKENS_SETTING`). A request that is not a WebSocket upgrade gets 426. A
        missing or refused token is
        closed with 4401 right after the upgrade, because browsers cannot read the status
        of a refused handshake but can read a close code.
        """
        if self.authenticate is None:
            self.stats.rejected += 1
            return problem_response(
                401,
                f"no WebSocket tokens are configured: {HOW_TO_CONFIGURE_TOKENS}",
                type=TOKENS_NOT_CONFIGURED,
                headers={"WWW-Authenticate": 'Bearer realm="hybridmesh"'},
                setting=TOKENS_SETTING,
            )
        ws = web.WebSocketResponse(
            heartbeat=self.heartbeat,
            max_msg_size=self.max_message_bytes,
            timeout=self.close_timeout,
            compress=False,  # one compressor per client would multiply the fan-out's CPU
        )
        if not ws.can_prepare(request):
            raise web.HTTPUpgradeRequired(
                headers={"Upgrade": "websocket"}, text="this endpoint speaks WebSocket only"
            )
        code, principal = await self._principal_of(request)
        await ws.prepare(request)
        if principal is None:
            self.stats.rejected += 1
            reason = "unauthorized" if code == UNAUTHORIZED else "authentication failed"
            await ws.close(code=code, message=reason.encode())
            return ws
        if self._closing:
            await ws.close(code=GOING_AWAY, message=b"server shutting down")
            return ws
        client = _Client(ws, principal, self.queue_limit)
        self._clients.add(client)
        self.stats.accepted += 1
        self.stats.connected += 1
        client.writer = asyncio.create_task(self._write(client), name=f"ws-write:{client.id}")
        self._send(client, {"type": "welcome", "user_id": principal.user_id})
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    self._receive(client, message.data)
                elif message.type is WSMsgType.BINARY:
                    self._send(client, {"type": "error", "message": "send JSON as text frames"})
        finally:
            self._forget(client)
            self.stats.connected -= 1
            await client.finish()
        return ws

    async def _principal_of(self, request: web.Request) -> tuple[int, Principal | None]:
        token = _token_of(request)
        if not token or self.authenticate is None:
            return UNAUTHORIZED, None
        try:
            found = self.authenticate(token)
            principal = await found if inspect.isawaitable(found) else found
        except Exception:
            log.exception("hub: the authenticator failed")
            return INTERNAL_ERROR, None
        return UNAUTHORIZED, principal

    async def _write(self, client: _Client) -> None:
        try:
            while True:
                message = await client.queue.get()
                await client.ws.send_str(message)
                self.stats.sent += 1
        except ConnectionError:
            return  # the client went away; the reading side notices and cleans up
        except Exception:
            log.exception("hub: writing to client %s failed", client.id)
            self._forget(client)
            client.close(INTERNAL_ERROR, "internal error", self.close_timeout)

    def _offer(self, client: _Client, message: str) -> None:
        if client.closer is not None:
            return
        try:
            client.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.stats.slow_disconnects += 1
            log.warning(
                "hub: client %s (user %s) fell %d messages behind; disconnecting it",
                client.id,
                client.principal.user_id,
                self.queue_limit,
            )
            self._forget(client)
            client.close(TRY_AGAIN_LATER, "too slow: outgoing queue full", self.close_timeout)

    def _send(self, client: _Client, payload: dict[str, Any]) -> None:
        self._offer(client, dumps(payload))

    def _forget(self, client: _Client) -> None:
        self._clients.discard(client)
        for pattern in client.patterns:
            self._unindex(self._by_pattern, pattern, client)
        for room in client.rooms:
            self._unindex(self._by_room, room, client)

    # -- client messages -------------------------------------------------------------------

    def _receive(self, client: _Client, text: str) -> None:
        ref: Any = None
        try:
            try:
                message = loads_input(text)
            except JSONNumberError as error:
                raise _Refused(str(error)) from None
            except ValueError:
                raise _Refused("not valid JSON") from None
            if not isinstance(message, dict):
                raise _Refused('a message must be a JSON object with an "action"')
            ref = message.get("id")
            if not isinstance(ref, str | int) or isinstance(ref, bool):
                ref = None
            reply = self._act(client, message)
        except _Refused as refused:
            reply = {"type": "error", "message": str(refused)}
        if ref is not None:
            reply["id"] = ref
        self._send(client, reply)

    def _act(self, client: _Client, message: dict[str, Any]) -> dict[str, Any]:
        action = message.get("action")
        if action == "ping":
            return {"type": "pong"}
        if action == "subscribe":
            wanted = _patterns_in(message) - client.patterns
            refused = sorted(p for p in wanted if not client.principal.may_subscribe(p))
            if refused:
                raise _Refused(f"not allowed to subscribe to {', '.join(refused)}")
            if len(client.patterns) + len(wanted) > self.max_patterns:
                raise _Refused(f"at most {self.max_patterns} patterns per connection")
            for pattern in wanted:
                client.patterns.add(pattern)
                self._by_pattern.setdefault(pattern, set()).add(client)
            return {"type": "subscribed", "patterns": sorted(client.patterns)}
        if action == "unsubscribe":
            for pattern in _patterns_in(message) & client.patterns:
                client.patterns.discard(pattern)
                self._unindex(self._by_pattern, pattern, client)
            return {"type": "unsubscribed", "patterns": sorted(client.patterns)}
        if action == "join":
            room = _room_in(message)
            if not client.principal.may_join(room):
                raise _Refused(f"not allowed to join room {room!r}")
            if room not in client.rooms and len(client.rooms) >= self.max_rooms:
                raise _Refused(f"at most {self.max_rooms} rooms per connection")
            client.rooms.add(room)
            self._by_room.setdefault(room, set()).add(client)
            return {"type": "joined", "room": room}
        if action == "leave":
            room = _room_in(message)
            client.rooms.discard(room)
            self._unindex(self._by_room, room, client)
            return {"type": "left", "room": room}
        known = "subscribe, unsubscribe, join, leave, ping"
        raise _Refused(f"unknown action {action!r}; expected one of {known}")

    @staticmethod
    def _unindex(index: dict[str, set[_Client]], key: str, client: _Client) -> None:
        members = index.get(key)
        if members is not None:
            members.discard(client)
            if not members:
                del index[key]

    # -- lifecycle -------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop reading the bus, close every connection with 1001 and refuse new ones.
        Idempotent."""
        self._closing = True
        reading, self._reading = self._reading, None
        if reading is not None:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
        clients = list(self._clients)
        for client in clients:
            self._forget(client)
            client.close(GOING_AWAY, "server shutting down", self.close_timeout)
        closers = [c.closer for c in clients if c.closer is not None]
        if closers:
            await asyncio.gather(*closers, return_exceptions=True)
        if self._metrics is not None:
            with contextlib.suppress(KeyError):
                self._metrics.registry.unregister(self._collector)
            self._metrics = None


def _token_of(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("token") or None


def _patterns_in(message: dict[str, Any]) -> set[str]:
    patterns = message.get("patterns")
    if (
        not isinstance(patterns, list)
        or not patterns
        or not all(isinstance(p, str) for p in patterns)
    ):
        raise _Refused('"patterns" must be a non-empty list of strings')
    for pattern in patterns:
        try:
            validate_pattern(pattern)
        except ValidationError as error:
            raise _Refused(error.problems[0].message) from None
    return set(patterns)


def _room_in(message: dict[str, Any]) -> str:
    room = message.get("room")
    if not isinstance(room, str) or not room or len(room) > 200:
        raise _Refused('"room" must be a non-empty string of at most 200 characters')
    return room


class _HubCollector:
    """Exposes :class:`HubStats` to Prometheus."""

    def __init__(self, hub: WebSocketHub) -> None:
        self._hub = hub

    def collect(self) -> Iterator[Any]:
        stats = self._hub.stats
        yield GaugeMetricFamily(
            "hybridmesh_ws_clients", "WebSocket clients connected now.", value=stats.connected
        )
        for name, doc, value in (
            ("hybridmesh_ws_connections", "WebSocket connections accepted.", stats.accepted),
            ("hybridmesh_ws_rejected", "WebSocket connections refused (token).", stats.rejected),
            ("hybridmesh_ws_messages_sent", "Messages sent to WebSocket clients.", stats.sent),
            (
                "hybridmesh_ws_slow_disconnects",
                "WebSocket clients disconnected (1013) for falling behind.",
                stats.slow_disconnects,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)

    def describe(self) -> Iterator[Any]:
        # Describing makes the registry refuse a second hub's identical names.
        return self.collect()


__all__ = [
    "HOW_TO_CONFIGURE_TOKENS",
    "TOKENS_NOT_CONFIGURED",
    "TOKENS_SETTING",
    "Authenticator",
    "HubStats",
    "Principal",
    "StaticTokens",
    "WebSocketHub",
    "allow_any",
    "user_room",
    "users_named_by",
]
