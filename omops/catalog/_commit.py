"""What a revision commit writes besides tags: the revision with its parts, blob locks."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from omops.catalog._records import NewRevision, ObjectRecord, RevisionRecord
from omops.catalog._revisions import revision_record
from omops.catalog._tables import objects, parts, revisions

__all__ = ["insert_revision", "lock_blobs", "update_object", "used_blobs"]

_BLOB_LOCK_CLASS = 0x6F6D  # PostgreSQL advisory locks (class, key) on blob keys


def _revision_id(name: str, parent: str | None, blobs: Sequence[str], created: dt.datetime) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    for piece in (name, parent or "", *blobs, created.isoformat()):
        digest.update(piece.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def insert_revision(
    conn: Connection,
    obj: ObjectRecord,
    new: NewRevision,
    *,
    latest: RevisionRecord | None,
    now: dt.datetime,
) -> RevisionRecord:
    """Insert the revision ``new`` of ``obj`` with its parts; tags are not moved.

    With ``new.append`` it extends ``latest``'s parts, if its kind matches.
    """
    base = latest if new.append and latest is not None and latest.kind == new.kind else None
    kind_meta = new.extend(base) if new.extend is not None else new.kind_meta
    rows = sum(p.rows or 0 for p in new.parts) + ((base.rows or 0) if base else 0)
    size = sum(p.size for p in new.parts) + (base.size if base else 0)
    parent = latest.revision if latest else None
    revision_id = _revision_id(
        f"{obj.bucket}/{obj.store}/{obj.name}", parent, [p.blob for p in new.parts], now
    )
    inserted = conn.execute(
        revisions.insert()
        .values(
            object_id=obj.id,
            revision=revision_id,
            parent=parent,
            base_id=base.id if base else None,
            kind=new.kind,
            kind_meta=dict(kind_meta),
            rows=rows if any(p.rows is not None for p in new.parts) or base else None,
            size=size,
            created=now,
        )
        .returning(*revisions.c)
    ).one()
    revision = revision_record(inserted)
    if new.parts:
        conn.execute(
            parts.insert(),
            [
                {
                    "revision_id": revision.id,
                    "position": i,
                    "blob": p.blob,
                    "size": p.size,
                    "rows": p.rows,
                }
                for i, p in enumerate(new.parts)
            ],
        )
    return revision


def update_object(
    conn: Connection, obj: ObjectRecord, new: NewRevision, now: dt.datetime
) -> ObjectRecord:
    """Give the object the new revision's kind and merged attributes (and origin, if any)."""
    values: dict[str, Any] = {
        "kind": new.kind,
        "modified": now,
        "attributes": {**obj.attributes, **(new.attributes or {})},
    }
    if new.origin:
        values["origin"] = dict(new.origin)
    conn.execute(objects.update().where(objects.c.id == obj.id).values(**values))
    row = conn.execute(sa.select(objects).where(objects.c.id == obj.id)).one()
    return ObjectRecord(**row._mapping)


def lock_blobs(conn: Connection, blobs: Sequence[str]) -> list[str]:
    """Lock blob keys against deletion for this transaction; return them sorted.

    On SQLite the write transaction holds the database lock already. On
    PostgreSQL an advisory lock per key (sorted, so two lockers never wait
    on each other in a circle); a hash collision only makes two blobs queue.
    """
    keys = sorted(set(blobs))
    if conn.dialect.name == "postgresql":
        for key in keys:
            conn.execute(
                sa.select(sa.func.pg_advisory_xact_lock(_BLOB_LOCK_CLASS, sa.bindparam("k"))),
                {"k": int.from_bytes(bytes.fromhex(key[:8]), "big", signed=True)},
            )
    return keys


def used_blobs(conn: Connection, blobs: Sequence[str]) -> set[str]:
    """Which of ``blobs`` some revision refers to."""
    return set(conn.execute(sa.select(parts.c.blob).where(parts.c.blob.in_(list(blobs)))).scalars())
