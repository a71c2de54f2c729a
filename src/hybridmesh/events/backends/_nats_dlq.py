"""Dead letters of the JetStream backend: one message each in the ``<PREFIX>_DLQ`` stream.

A dead letter is stored on ``<prefix>.dlq.<group>.<seq>`` (``seq`` is the event's sequence in
the events stream, so dead-lettering the same delivery twice keeps one letter) with the
event's bytes as the body and the rest in headers. The stream keeps one message per subject:
marking a letter replayed publishes it again with ``Hm-Replayed-At``, replacing the old one.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js import errors as js_errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from hybridmesh.core.clock import Clock
from hybridmesh.core.errors import NotFoundError
from hybridmesh.events.backend import DeadLetter
from hybridmesh.events.backends._nats_layout import Layout
from hybridmesh.events.backends._nats_wire import API_PREFIX, JetStreamError, PullClient
from hybridmesh.events.envelope import CloudEvent

GROUP = "Hm-Group"
REASON = "Hm-Reason"
ATTEMPTS = "Hm-Attempts"
FAILED_AT = "Hm-Failed-At"
REPLAYED_AT = "Hm-Replayed-At"
LETTER_ID = "Hm-Dead-Letter-Id"
SUBJECT = "Hm-Event-Subject"
_EPOCH = datetime.fromtimestamp(0, UTC)
_ID = re.compile(r"(?P<token>[A-Za-z0-9_-]{1,64})-(?P<seq>[0-9]{1,20})")
_PAGE = 256


def _parse_event(body: bytes) -> CloudEvent | None:
    try:
        return CloudEvent.from_json(body)
    except Exception:  # any bytes can end up here; they stay readable as the body
        return None


def _time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


class DeadLetterStore:
    """Adds, reads, marks and purges dead letters."""

    def __init__(
        self, nc: NATS, js: JetStreamContext, pull: PullClient, layout: Layout, clock: Clock
    ) -> None:
        self._nc = nc
        self._js = js
        self._pull = pull
        self._layout = layout
        self._clock = clock

    async def add(
        self,
        *,
        group: str,
        token: str,
        seq: int,
        subject: str,
        attempts: int,
        reason: str,
        body: bytes,
    ) -> None:
        """Store a dead letter durably (returns once JetStream has it)."""
        letter_id = f"{token}-{seq}"
        headers = {
            "Nats-Msg-Id": f"dead-{letter_id}",
            LETTER_ID: letter_id,
            GROUP: quote(group, safe=""),
            REASON: quote(reason, safe=" "),
            ATTEMPTS: str(attempts),
            FAILED_AT: self._clock.now().isoformat(),
            SUBJECT: subject,
        }
        await self._js.publish(self._layout.dlq_subject(token, seq), body, headers=headers)

    async def newest(self, token: str | None, limit: int) -> list[DeadLetter]:
        """Newest first (by failure time). Reads the group's letters with a short-lived
        consumer; dead-letter queues are expected to stay small."""
        letters = [self._letter(h, b) for h, b in await self._read_all(token)]
        letters.sort(key=lambda d: (d.failed_at, d.id), reverse=True)
        return letters[: max(0, limit)]

    async def get(self, letter_id: str) -> DeadLetter:
        """One letter by id; raises ``NotFoundError``."""
        found = _ID.fullmatch(letter_id)
        if found is None:
            raise NotFoundError(f"no dead letter {letter_id!r}")
        subject = self._layout.dlq_subject(found["token"], int(found["seq"]))
        try:
            raw = await self._js.get_msg(self._layout.dlq_stream, subject=subject, direct=True)
        except js_errors.NotFoundError:
            raise NotFoundError(f"no dead letter {letter_id!r}") from None
        return self._letter(dict(raw.headers or {}), raw.data or b"")

    async def mark_replayed(self, letter: DeadLetter) -> DeadLetter:
        """Record that ``letter`` was replayed (now); returns it with ``replayed_at`` set."""
        now = self._clock.now()
        headers = {
            LETTER_ID: letter.id,
            GROUP: quote(letter.group, safe=""),
            REASON: quote(letter.reason, safe=" "),
            ATTEMPTS: str(letter.attempts),
            FAILED_AT: letter.failed_at.isoformat(),
            SUBJECT: str(letter.extra.get("subject", "")),
            REPLAYED_AT: now.isoformat(),
        }
        token, _, seq = letter.id.rpartition("-")
        subject = self._layout.dlq_subject(token, int(seq))
        await self._js.publish(subject, letter.body, headers=headers)
        return replace(letter, replayed_at=now)

    async def purge(self, token: str | None) -> int:
        """Delete the letters of one group (or all); returns how many."""
        request = json.dumps({"filter": self._layout.dlq_filter(token)}).encode()
        reply = await self._nc.request(
            f"{API_PREFIX}.STREAM.PURGE.{self._layout.dlq_stream}", request, timeout=10
        )
        answer: dict[str, Any] = json.loads(reply.data)
        if "error" in answer:
            raise js_errors.APIError.from_error(answer["error"])
        return int(answer.get("purged", 0))

    async def _read_all(self, token: str | None) -> list[tuple[dict[str, str], bytes]]:
        stream = self._layout.dlq_stream
        config = ConsumerConfig(
            filter_subject=self._layout.dlq_filter(token),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=60.0,
        )
        info = await self._js.add_consumer(stream, config)
        name = info.name
        out: list[tuple[dict[str, str], bytes]] = []
        try:
            while True:
                page = await self._pull.pull(stream, name, _PAGE)
                out.extend((dict(m.headers or {}), m.data) for m in page)
                if len(page) < _PAGE:
                    return out
        except JetStreamError:
            return out
        finally:
            with contextlib.suppress(Exception):
                await self._js.delete_consumer(stream, name)

    def _letter(self, headers: dict[str, str], body: bytes) -> DeadLetter:
        event = _parse_event(body)
        return DeadLetter(
            id=headers.get(LETTER_ID, ""),
            group=unquote(headers.get(GROUP, "")),
            reason=unquote(headers.get(REASON, "")),
            attempts=int(headers.get(ATTEMPTS, "0") or 0),
            failed_at=_time(headers.get(FAILED_AT)) or _EPOCH,
            body=body,
            event=event,
            replayed_at=_time(headers.get(REPLAYED_AT)),
            extra={"subject": headers.get(SUBJECT, "")},
        )


__all__ = ["DeadLetterStore"]
