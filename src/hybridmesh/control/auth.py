"""Bearer tokens of the control-plane API and the roles they carry.

A token is ``hmt_<id>_<secret>``: ``id`` is a short public prefix that finds the row (and
names the token in listings), ``secret`` 256 random bits. The store keeps the SHA-256 of the
whole token, never the token: with that many random bits a fast hash leaves nothing to
guess, and the stored digest is of no use as a token. The digest is compared with
:func:`hmac.compare_digest`, so how long a comparison takes says nothing about it.

Roles are ordered, each allowing what the one below allows: ``read`` (every GET),
``operate`` (starting and cancelling executions, applying the registry), ``admin`` (the
audit trail, and whatever later needs more than operate).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from hybridmesh.core.clock import SYSTEM_CLOCK, Clock
from hybridmesh.core.errors import NotFoundError, Problem, ValidationError
from hybridmesh.core.names import name_problem
from hybridmesh.store import Store

#: What every token starts with, so a leaked one is recognisable (secret scanners, logs).
TOKEN_PREFIX = "hmt"

_TOKEN = re.compile(rf"^{TOKEN_PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})$")


class Role(StrEnum):
    """What a token may do; each role allows everything the ones before it allow."""

    READ = "read"
    OPERATE = "operate"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what needs ``needed``."""
        order = list(Role)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: the token's name and role."""

    name: str
    role: Role
    token_id: str


@dataclass(frozen=True)
class ApiToken:
    """A token as stored: never its secret."""

    id: str
    name: str
    role: Role
    created_at: float
    revoked_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "created_at": _iso(self.created_at),
            "revoked_at": None if self.revoked_at is None else _iso(self.revoked_at),
            "status": "active" if self.revoked_at is None else "revoked",
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ApiToken:
        return cls(row["id"], row["name"], Role(row["role"]), row["created_at"], row["revoked_at"])


def token_digest(token: str) -> str:
    """How a token is stored: the SHA-256 of the whole token, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


_COLUMNS = "id, name, role, created_at, revoked_at"


class TokenStore:
    """Creates, lists, revokes and checks tokens in a (migrated) store."""

    def __init__(self, store: Store, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self.clock = clock

    async def create(self, name: str, role: Role | str) -> tuple[ApiToken, str]:
        """A new token named ``name`` with ``role``, and the token itself: shown this once,
        it cannot be read back. Raises ``ValidationError`` for a name that is not a name,
        an unknown role, or a name a live token already has."""
        problem = name_problem(name)
        if problem is not None:
            raise ValidationError([Problem(problem, field="name")])
        try:
            role = Role(role)
        except ValueError:
            allowed = ", ".join(r.value for r in Role)
            raise ValidationError(
                [Problem(f"{role!r} is not a role; one of {allowed}", field="role")]
            ) from None
        token_id = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
        now = self.clock.now().timestamp()
        async with self.store.transaction() as tx:
            live = await tx.fetch_one(
                "SELECT id FROM api_tokens WHERE name = ? AND revoked_at IS NULL", name
            )
            if live is not None:
                raise ValidationError(
                    [
                        Problem(
                            f"a token named {name!r} exists: revoke it first to replace it",
                            field="name",
                        )
                    ]
                )
            await tx.execute(
                "INSERT INTO api_tokens (id, name, role, secret_hash, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                token_id,
                name,
                role.value,
                token_digest(token),
                now,
            )
        return ApiToken(token_id, name, role, now), token

    async def list(self) -> list[ApiToken]:
        """Every token, live and revoked, oldest first."""
        rows = await self.store.fetch_all(
            f"SELECT {_COLUMNS} FROM api_tokens ORDER BY created_at, id"
        )
        return [ApiToken.from_row(row) for row in rows]

    async def revoke(self, name: str) -> ApiToken:
        """Revoke the live token named ``name``: it is refused from the next request on.
        Raises ``NotFoundError`` when no live token has that name."""
        now = self.clock.now().timestamp()
        async with self.store.transaction() as tx:
            row = await tx.fetch_one(
                f"SELECT {_COLUMNS} FROM api_tokens WHERE name = ? AND revoked_at IS NULL", name
            )
            if row is None:
                raise NotFoundError(f"no live token named {name!r}")
            await tx.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", now, row["id"])
        return ApiToken.from_row({**row, "revoked_at": now})

    async def authenticate(self, token: str) -> Principal | None:
        """Who ``token`` stands for; None for a malformed, unknown or revoked token."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        row = await self.store.fetch_one(
            "SELECT id, name, role, secret_hash FROM api_tokens "
            "WHERE id = ? AND revoked_at IS NULL",
            match.group(1),
        )
        if row is None or not hmac.compare_digest(row["secret_hash"], token_digest(token)):
            return None
        return Principal(row["name"], Role(row["role"]), row["id"])


__all__ = ["TOKEN_PREFIX", "ApiToken", "Principal", "Role", "TokenStore", "token_digest"]
