"""Catalog rows of objects: find, list, lock, change attributes, drop."""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from omops.catalog._records import NewRevision, ObjectRecord
from omops.catalog._statements import FIND
from omops.catalog._tables import objects, parts, revisions, tags
from omops.errors import StorageError

__all__ = [
    "drop",
    "find",
    "identity",
    "list_objects",
    "lock_id",
    "lock_object",
    "object_record",
    "page_objects",
    "stores_by_bucket",
    "set_attributes",
]

_LOCK_ATTEMPTS = 10


def object_record(row: sa.Row) -> ObjectRecord:
    return ObjectRecord(**row._mapping)


def identity(obj: ObjectRecord | int) -> tuple[int, list[Any]]:
    """An object's id, and conditions that hold only for that very object.

    SQLite may give a dropped object's id to the next new one; the name and
    creation time tell them apart.
    """
    if isinstance(obj, ObjectRecord):
        return obj.id, [
            objects.c.bucket == obj.bucket,
            objects.c.store == obj.store,
            objects.c.name == obj.name,
            objects.c.created == obj.created,
        ]
    return obj, []


def find(conn: Connection, bucket: str, store: str, name: str) -> ObjectRecord | None:
    row = conn.execute(FIND, {"bucket": bucket, "store": store, "name": name}).first()
    return object_record(row) if row else None


def list_objects(
    conn: Connection,
    bucket: str,
    store: str,
    *,
    pattern: str | None,
    kind: str | None,
    hidden: bool,
) -> list[ObjectRecord]:
    query = sa.select(objects).where(objects.c.bucket == bucket, objects.c.store == store)
    if kind is not None:
        query = query.where(objects.c.kind == kind)
    if not hidden:
        # omops.names.is_hidden in SQL: the first path segment starts with '_'.
        query = query.where(~objects.c.name.startswith("_", autoescape=True))
    found = [object_record(r) for r in conn.execute(query.order_by(objects.c.name))]
    if pattern is not None:
        found = [o for o in found if fnmatch.fnmatchcase(o.name, pattern)]
    return found


def _listed(
    bucket: str, store: str, *, prefix: str | None, exclude: str | None, hidden: bool
) -> list[Any]:
    """The conditions of a listing: a name prefix, a prefix left out, hidden names or not."""
    where = [objects.c.bucket == bucket, objects.c.store == store]
    if prefix:
        where.append(objects.c.name.startswith(prefix, autoescape=True))
    if exclude:
        where.append(~objects.c.name.startswith(exclude, autoescape=True))
    if not hidden:
        where.append(~objects.c.name.startswith("_", autoescape=True))
    return where


def page_objects(
    conn: Connection,
    bucket: str,
    store: str,
    *,
    prefix: str | None,
    exclude: str | None,
    hidden: bool,
    offset: int,
    limit: int,
    descending: bool,
) -> tuple[list[ObjectRecord], int]:
    """One page of objects sorted by name, and how many match in all.

    Reads ``limit`` rows through the (bucket, store, name) index, whatever the
    store holds: a page of 10,000 objects costs what a page of 100 does.
    """
    where = _listed(bucket, store, prefix=prefix, exclude=exclude, hidden=hidden)
    order = objects.c.name.desc() if descending else objects.c.name
    rows = conn.execute(
        sa.select(objects).where(*where).order_by(order).offset(offset).limit(limit)
    )
    found = [object_record(r) for r in rows]
    total = conn.execute(sa.select(sa.func.count()).select_from(objects).where(*where)).scalar()
    return found, int(total or 0)


def stores_by_bucket(conn: Connection, *, hidden: bool) -> dict[str, dict[str, int]]:
    """``{bucket: {store: number of objects}}`` of every bucket that holds something."""
    query = sa.select(objects.c.bucket, objects.c.store, sa.func.count()).group_by(
        objects.c.bucket, objects.c.store
    )
    if not hidden:
        query = query.where(~objects.c.name.startswith("_", autoescape=True))
    found: dict[str, dict[str, int]] = {}
    for bucket, store, count in conn.execute(query):
        found.setdefault(bucket, {})[store] = int(count)
    return dict(sorted(found.items()))


def set_attributes(
    conn: Connection, obj: ObjectRecord | int, attributes: Mapping[str, Any], now: dt.datetime
) -> None:
    object_id, same = identity(obj)
    conn.execute(
        objects.update()
        .where(objects.c.id == object_id, *same)
        .values(attributes=dict(attributes), modified=now)
    )


def lock_id(conn: Connection, object_id: int, same: Sequence[Any] = ()) -> bool:
    """Lock an object's row for this transaction; False if there is none.

    Every transaction that writes an object's revisions or tags takes this
    lock first, so on PostgreSQL they queue on one row instead of
    deadlocking on tag and revision rows taken in different orders
    (SQLite's BEGIN IMMEDIATE serialises all writers anyway).
    """
    query = sa.select(objects.c.id).where(objects.c.id == object_id, *same).with_for_update()
    return conn.execute(query).first() is not None


def lock_object(
    conn: Connection, bucket: str, store: str, name: str, new: NewRevision, now: dt.datetime
) -> ObjectRecord:
    """Lock the object's row for this transaction, creating the object if it is new."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    create = (
        insert(objects)
        .values(
            bucket=bucket,
            store=store,
            name=name,
            kind=new.kind,
            attributes=dict(new.attributes or {}),
            origin=dict(new.origin) if new.origin else None,
            created=now,
            modified=now,
        )
        .on_conflict_do_nothing(index_elements=["bucket", "store", "name"])
    )
    lock = (
        sa.select(objects)
        .where(objects.c.bucket == bucket, objects.c.store == store, objects.c.name == name)
        .with_for_update()
    )
    for _ in range(_LOCK_ATTEMPTS):
        conn.execute(create)
        row = conn.execute(lock).first()
        if row is not None:
            return object_record(row)
        # PostgreSQL: the row the insert found was dropped before we could
        # lock it; the next insert creates it (READ COMMITTED sees the drop).
    raise StorageError(
        f"cannot create {store}/{name!r}: it was dropped {_LOCK_ATTEMPTS} times while "
        "this put waited; put again"
    )


def drop(conn: Connection, obj: ObjectRecord | int) -> list[str]:
    """Delete an object with all its revisions; return the blobs nothing refers to now."""
    object_id, same = identity(obj)
    if not lock_id(conn, object_id, same):
        return []  # dropped by someone else meanwhile
    revision_ids = sa.select(revisions.c.id).where(revisions.c.object_id == object_id)
    blobs = set(
        conn.execute(sa.select(parts.c.blob).where(parts.c.revision_id.in_(revision_ids))).scalars()
    )
    conn.execute(tags.delete().where(tags.c.object_id == object_id))
    conn.execute(parts.delete().where(parts.c.revision_id.in_(revision_ids)))
    conn.execute(revisions.update().where(revisions.c.object_id == object_id).values(base_id=None))
    conn.execute(revisions.delete().where(revisions.c.object_id == object_id))
    conn.execute(objects.delete().where(objects.c.id == object_id))
    still_used = set(conn.execute(sa.select(parts.c.blob).where(parts.c.blob.in_(blobs))).scalars())
    return sorted(blobs - still_used)
