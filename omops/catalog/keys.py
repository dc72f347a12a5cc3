"""API keys: stored hashed, each scoped to buckets and a role."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from omops.catalog._tables import api_keys
from omops.errors import InvalidData, NotFound, Unauthorized

if TYPE_CHECKING:
    from omops.catalog.store import Catalog

__all__ = ["ROLES", "ApiKey", "ApiKeys"]

#: Roles, each allowing what the previous allows and more.
ROLES = ("read", "write", "admin")
_PREFIX = "omk"
ALL_BUCKETS = "*"


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never its secret)."""

    id: str
    role: str
    buckets: list[str]
    note: str
    created: dt.datetime
    revoked: dt.datetime | None

    def allows(self, bucket: str, role: str) -> bool:
        """Whether this key may act in ``bucket`` with at least ``role``."""
        in_bucket = ALL_BUCKETS in self.buckets or bucket in self.buckets
        return in_bucket and ROLES.index(self.role) >= ROLES.index(role)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "buckets": list(self.buckets),
            "note": self.note,
            "created": self.created.isoformat(),
            "revoked": self.revoked.isoformat() if self.revoked else None,
        }


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeys:
    """Create, find, list and revoke API keys in a catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def create(self, *, role: str, buckets: list[str], note: str = "") -> tuple[str, ApiKey]:
        """Make a key; returns ``(token, ApiKey)``. The token is shown only now."""
        if role not in ROLES:
            raise InvalidData(f"role {role!r} is not one of {', '.join(ROLES)}")
        if not buckets:
            raise InvalidData("a key needs at least one bucket (or '*' for all)")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        now = dt.datetime.now(dt.UTC)
        with self.catalog.write_transaction() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=key_id,
                    hash=_digest(secret),
                    role=role,
                    buckets=list(buckets),
                    note=note[:200],
                    created=now,
                    revoked=None,
                )
            )
        return f"{_PREFIX}_{key_id}_{secret}", ApiKey(
            key_id, role, list(buckets), note[:200], now, None
        )

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        query = sa.select(api_keys).order_by(api_keys.c.created)
        if not include_revoked:
            query = query.where(api_keys.c.revoked.is_(None))
        with self.catalog.read_transaction() as conn:
            return [
                ApiKey(**{k: v for k, v in r._mapping.items() if k != "hash"})
                for r in conn.execute(query)
            ]

    def any_active(self) -> bool:
        with self.catalog.read_transaction() as conn:
            return (
                conn.execute(
                    sa.select(api_keys.c.id).where(api_keys.c.revoked.is_(None)).limit(1)
                ).first()
                is not None
            )

    def revoke(self, key_id: str) -> None:
        with self.catalog.write_transaction() as conn:
            done = conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.revoked.is_(None))
                .values(revoked=dt.datetime.now(dt.UTC))
            ).rowcount
        if not done:
            raise NotFound(f"no active API key {key_id!r}; see `om auth list`")

    def session_secret(self, key_id: str) -> tuple[ApiKey, bytes]:
        """An active key and a secret derived from its stored hash, to sign its web sessions.

        Every server process of the catalog derives the same secret, and
        revoking the key ends its sessions; Unauthorized for an unknown or
        revoked key.
        """
        with self.catalog.read_transaction() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
        if row is None:
            raise Unauthorized("the session's API key is unknown; log in again")
        if row.revoked is not None:
            raise Unauthorized(f"API key {key_id} was revoked; log in with another key")
        secret = hashlib.sha256(b"omops-session\0" + row.hash.encode()).digest()
        return ApiKey(**{k: v for k, v in row._mapping.items() if k != "hash"}), secret

    def verify(self, token: str) -> ApiKey:
        """The key a token belongs to; Unauthorized if unknown, malformed or revoked."""
        prefix, _, rest = token.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != _PREFIX or not key_id or not secret:
            raise Unauthorized("malformed API key; keys look like omk_<id>_<secret>")
        with self.catalog.read_transaction() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
        if row is None or not hmac.compare_digest(row.hash, _digest(secret)):
            raise Unauthorized("unknown API key")
        if row.revoked is not None:
            raise Unauthorized(f"API key {key_id} was revoked")
        return ApiKey(**{k: v for k, v in row._mapping.items() if k != "hash"})
