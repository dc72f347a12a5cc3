"""Secrets as the catalog keeps them: encrypted tokens per bucket and name.

This module only stores and finds tokens; encryption (and so the key) is
:mod:`omops.secrets`' business, so the catalog never sees a plain value.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from omops.catalog._tables import secrets

if TYPE_CHECKING:
    from omops.catalog.store import Catalog

__all__ = ["SecretRecord", "SecretTokens"]


@dataclass(frozen=True)
class SecretRecord:
    """One stored secret, without its value."""

    bucket: str
    name: str
    created: dt.datetime
    modified: dt.datetime


class SecretTokens:
    """Encrypted secret tokens stored in one catalog (``catalog.secrets``)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @staticmethod
    def _key(bucket: str, name: str) -> tuple[sa.ColumnElement[bool], ...]:
        return (secrets.c.bucket == bucket, secrets.c.name == name)

    def set(self, bucket: str, name: str, token: str) -> None:
        """Create or replace the token of ``name`` (its creation time is kept)."""
        now = dt.datetime.now(dt.UTC)
        with self.catalog.write_transaction() as conn:
            updated = conn.execute(
                secrets.update().where(*self._key(bucket, name)).values(token=token, modified=now)
            ).rowcount
            if not updated:
                conn.execute(
                    secrets.insert().values(
                        bucket=bucket, name=name, token=token, created=now, modified=now
                    )
                )

    def token(self, bucket: str, name: str) -> str | None:
        """The encrypted token of ``name``, or None."""
        with self.catalog.read_transaction() as conn:
            query = sa.select(secrets.c.token).where(*self._key(bucket, name))
            return conn.execute(query).scalar()

    def drop(self, bucket: str, name: str) -> bool:
        """Remove ``name``; whether it was there."""
        with self.catalog.write_transaction() as conn:
            return bool(conn.execute(secrets.delete().where(*self._key(bucket, name))).rowcount)

    def list(self, bucket: str) -> list[SecretRecord]:
        """The secrets of ``bucket`` by name, without values."""
        query = (
            sa.select(secrets.c.bucket, secrets.c.name, secrets.c.created, secrets.c.modified)
            .where(secrets.c.bucket == bucket)
            .order_by(secrets.c.name)
        )
        with self.catalog.read_transaction() as conn:
            return [SecretRecord(**row._mapping) for row in conn.execute(query)]
