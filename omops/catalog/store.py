"""The catalog: the only code that reads and writes the catalog tables.

A revision commit is one transaction: a reader sees the old revision or the
new one, never half of it.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from omops.catalog import _migrate
from omops.catalog._engine import WRITE_OPTION, create_engine, normalize_url
from omops.catalog._tables import objects, parts, revisions, tags
from omops.catalog.keys import ApiKeys
from omops.catalog.tasks import TaskLog
from omops.catalog.tracking import Tracking
from omops.errors import InvalidName, NotFound, StorageError

__all__ = ["Catalog", "MissingBlobs", "NewPart", "ObjectRecord", "PartRecord", "RevisionRecord"]

LATEST = "latest"
_MIN_PREFIX = 4
_LOCK_ATTEMPTS = 10
_BLOB_LOCK_CLASS = 0x6F6D  # PostgreSQL advisory locks (class, key) on blob keys
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class ObjectRecord:
    """One stored object (name in a bucket and store)."""

    id: int
    bucket: str
    store: str
    name: str
    kind: str
    attributes: dict[str, Any]
    origin: dict[str, Any] | None
    created: dt.datetime
    modified: dt.datetime


@dataclass(frozen=True)
class RevisionRecord:
    """One immutable revision of an object."""

    id: int
    object_id: int
    revision: str
    parent: str | None
    base_id: int | None
    kind: str
    kind_meta: dict[str, Any]
    rows: int | None
    size: int
    created: dt.datetime


@dataclass(frozen=True)
class PartRecord:
    """One blob of a revision, in read order."""

    blob: str
    size: int
    rows: int | None = None


NewPart = PartRecord


@dataclass(frozen=True)
class NewRevision:
    """What a put hands to :meth:`Catalog.commit`."""

    kind: str
    kind_meta: dict[str, Any]
    parts: Sequence[PartRecord]
    append: bool = False
    tags: Sequence[str] = ()
    attributes: Mapping[str, Any] | None = None
    origin: Mapping[str, Any] | None = None
    # Called inside the transaction with the revision appended to (or None);
    # returns the kind_meta to store. Raising aborts the commit.
    extend: Callable[[RevisionRecord | None], dict[str, Any]] | None = field(
        default=None, compare=False
    )
    # Called inside the transaction, while no one can delete them, with the
    # blobs of ``parts``; returns those missing from the blob store. Any
    # missing aborts the commit with MissingBlobs.
    missing: Callable[[Sequence[str]], Sequence[str]] | None = field(default=None, compare=False)


class MissingBlobs(StorageError):
    """A put's blob was deleted (as unused, by a concurrent drop) before its commit.

    Nothing was committed; write the blobs again and commit again.
    """


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _revision_id(name: str, parent: str | None, blobs: Sequence[str], created: dt.datetime) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    for piece in (name, parent or "", *blobs, created.isoformat()):
        digest.update(piece.encode())
        digest.update(b"\0")
    return digest.hexdigest()


# Statements built once with bound parameters: building one per call costs more
# than running it (SQLAlchemy caches the compiled form per statement object).

# parts(): the revision's append chain. The revision string too: SQLite may give
# a dropped revision's id to a new one.
_THIS_REVISION = sa.and_(
    revisions.c.id == sa.bindparam("revision_id"),
    revisions.c.revision == sa.bindparam("revision"),
)
_CHAIN = (
    sa.select(revisions.c.id, revisions.c.base_id, sa.literal(0).label("depth"))
    .where(_THIS_REVISION)
    .cte("chain", recursive=True)
)
_CHAIN = _CHAIN.union_all(
    sa.select(revisions.c.id, revisions.c.base_id, (_CHAIN.c.depth + 1).label("depth")).where(
        revisions.c.id == _CHAIN.c.base_id
    )
)
_PARTS = (
    sa.select(parts.c.blob, parts.c.size, parts.c.rows)
    .join(_CHAIN, parts.c.revision_id == _CHAIN.c.id)
    .order_by(_CHAIN.c.depth.desc(), parts.c.position)
)
_REVISION_EXISTS = sa.select(revisions.c.id).where(_THIS_REVISION)
_FIND = sa.select(objects).where(
    objects.c.bucket == sa.bindparam("bucket"),
    objects.c.store == sa.bindparam("store"),
    objects.c.name == sa.bindparam("name"),
)
_RESOLVE_TAG = (
    sa.select(revisions)
    .join(tags, tags.c.revision_id == revisions.c.id)
    .where(tags.c.object_id == sa.bindparam("object_id"), tags.c.tag == sa.bindparam("tag"))
)

# lookup(): one statement object, so SQLAlchemy compiles it once: the unique
# (bucket, store, name) index finds the object, the tags primary key its revision.
_LOOKUP = (
    sa.select(revisions)
    .join(tags, tags.c.revision_id == revisions.c.id)
    .join(objects, objects.c.id == tags.c.object_id)
    .where(
        objects.c.bucket == sa.bindparam("bucket"),
        objects.c.store == sa.bindparam("store"),
        objects.c.name == sa.bindparam("name"),
        tags.c.tag == sa.bindparam("tag"),
    )
)


def _identity(obj: ObjectRecord | int) -> tuple[int, list[Any]]:
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


def _object(row: sa.Row) -> ObjectRecord:
    return ObjectRecord(**row._mapping)


def _revision(row: sa.Row) -> RevisionRecord:
    return RevisionRecord(**row._mapping)


class Catalog:
    """Metadata of all stored objects in one SQL database.

    Parameters
    ----------
    url : str
        SQLAlchemy URL: ``sqlite:////abs/path/catalog.sqlite`` or
        ``postgresql://user:password@host/db``. The schema is created or
        migrated on first use.
    """

    def __init__(self, url: str) -> None:
        self.url = str(normalize_url(url).render_as_string(hide_password=False))
        self._engine_obj: Engine | None = None
        self._engine_pid: int | None = None
        self._lock = threading.Lock()
        # Statements compiled for _fetch, by id of the (module-level) statement.
        self._prepared: dict[int, tuple[Any, list[tuple[str, Any]]]] = {}
        self._prepared_for: Engine | None = None

    def __repr__(self) -> str:
        return f"Catalog({normalize_url(self.url).render_as_string(hide_password=True)!r})"

    @property
    def dialect(self) -> str:
        return normalize_url(self.url).get_backend_name()

    # -- connections -------------------------------------------------------

    def engine(self) -> Engine:
        """The engine of this process, created and migrated on first use."""
        pid = os.getpid()
        if self._engine_obj is None or self._engine_pid != pid:
            with self._lock:
                if self._engine_obj is None or self._engine_pid != pid:
                    if self._engine_obj is not None:
                        # Inherited over fork: never reuse the parent's sockets.
                        self._engine_obj.dispose(close=False)
                    engine = create_engine(self.url)
                    try:
                        _migrate.upgrade(engine)
                    except sa.exc.OperationalError as exc:
                        raise StorageError(f"cannot open catalog {self!r}: {exc.orig}") from exc
                    self._engine_obj, self._engine_pid = engine, pid
        return self._engine_obj

    def close(self) -> None:
        """Close all pooled connections."""
        if self._engine_obj is not None:
            self._engine_obj.dispose()
            self._engine_obj = None

    @contextmanager
    def read_transaction(self) -> Iterator[Connection]:
        """A read transaction (for the catalog package's own modules)."""
        with self.engine().connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def write_transaction(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock at once."""
        with self.engine().connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                yield connection

    _read = read_transaction
    _write = write_transaction

    @property
    def api_keys(self) -> ApiKeys:
        """API keys stored in this catalog."""
        return ApiKeys(self)

    @property
    def tracking(self) -> Tracking:
        """Experiments, runs, events and tracked models."""
        return Tracking(self)

    @property
    def task_log(self) -> TaskLog:
        """Tasks recorded for lookup from any process."""
        return TaskLog(self)

    # -- objects -----------------------------------------------------------

    def find(self, bucket: str, store: str, name: str) -> ObjectRecord | None:
        """The object, or ``None`` when there is none of that name."""
        with self._read() as conn:
            return self._find(conn, bucket, store, name)

    def get(self, bucket: str, store: str, name: str) -> ObjectRecord:
        """The object, or NotFound."""
        record = self.find(bucket, store, name)
        if record is None:
            raise NotFound(
                f"{store[:-1] if store.endswith('s') else store} {name!r} does not exist in bucket "
                f"{bucket!r}; list what there is with om.{store}.list()"
            )
        return record

    @staticmethod
    def _find(conn: Connection, bucket: str, store: str, name: str) -> ObjectRecord | None:
        row = conn.execute(_FIND, {"bucket": bucket, "store": store, "name": name}).first()
        return _object(row) if row else None

    def list(
        self, bucket: str, store: str, *, pattern: str | None = None, kind: str | None = None
    ) -> list[ObjectRecord]:
        """Objects in a bucket and store, sorted by name; ``pattern`` is a glob."""
        query = sa.select(objects).where(objects.c.bucket == bucket, objects.c.store == store)
        if kind is not None:
            query = query.where(objects.c.kind == kind)
        with self._read() as conn:
            found = [_object(r) for r in conn.execute(query.order_by(objects.c.name))]
        if pattern is not None:
            found = [o for o in found if fnmatch.fnmatchcase(o.name, pattern)]
        return found

    def set_attributes(self, obj: ObjectRecord | int, attributes: Mapping[str, Any]) -> None:
        """Replace the user attributes of an object (an ObjectRecord, or its id)."""
        object_id, same = _identity(obj)
        with self._write() as conn:
            conn.execute(
                objects.update()
                .where(objects.c.id == object_id, *same)
                .values(attributes=dict(attributes), modified=_now())
            )

    def drop(self, obj: ObjectRecord | int) -> list[str]:
        """Delete an object with all revisions; return blobs nothing refers to now.

        Given the ObjectRecord that was read (rather than its id), nothing
        happens when that object is gone meanwhile, even if SQLite has given
        its id to a new object since.
        """
        object_id, same = _identity(obj)
        with self._write() as conn:
            if not self._lock_id(conn, object_id, same):
                return []  # dropped by someone else meanwhile
            revision_ids = sa.select(revisions.c.id).where(revisions.c.object_id == object_id)
            blobs = set(
                conn.execute(
                    sa.select(parts.c.blob).where(parts.c.revision_id.in_(revision_ids))
                ).scalars()
            )
            conn.execute(tags.delete().where(tags.c.object_id == object_id))
            conn.execute(parts.delete().where(parts.c.revision_id.in_(revision_ids)))
            conn.execute(
                revisions.update().where(revisions.c.object_id == object_id).values(base_id=None)
            )
            conn.execute(revisions.delete().where(revisions.c.object_id == object_id))
            conn.execute(objects.delete().where(objects.c.id == object_id))
            still_used = set(
                conn.execute(sa.select(parts.c.blob).where(parts.c.blob.in_(blobs))).scalars()
            )
        return sorted(blobs - still_used)

    # -- revisions ---------------------------------------------------------

    def resolve(self, object_id: int, ref: str | None = None) -> RevisionRecord:
        """The revision a tag or revision prefix names; ``None`` means latest."""
        ref = ref or LATEST
        with self._read() as conn:
            row = conn.execute(_RESOLVE_TAG, {"object_id": object_id, "tag": ref}).first()
            if row:
                return _revision(row)
            if len(ref) >= _MIN_PREFIX and _HEX.fullmatch(ref):
                rows = conn.execute(
                    sa.select(revisions)
                    .where(revisions.c.object_id == object_id, revisions.c.revision.startswith(ref))
                    .limit(2)
                ).all()
                if len(rows) == 1:
                    return _revision(rows[0])
                if len(rows) > 1:
                    raise InvalidName(f"revision prefix {ref!r} is ambiguous; give more characters")
            known = sorted(
                conn.execute(sa.select(tags.c.tag).where(tags.c.object_id == object_id)).scalars()
            )
        raise NotFound(
            f"no tag or revision {ref!r}; tags are {known}, or give at least "
            f"{_MIN_PREFIX} leading characters of a revision id (see revisions())"
        )

    def lookup(self, bucket: str, store: str, name: str, ref: str | None = None) -> RevisionRecord:
        """``resolve(get(bucket, store, name).id, ref)``: in one indexed query when ``ref`` is a tag.

        The serving hot path: every request asks which revision ``name`` (``latest``
        or ``name@tag``) is now, so that a new revision is served at once.
        """
        found = self._lookup_tag(
            {"bucket": bucket, "store": store, "name": name, "tag": ref or LATEST}
        )
        if found is not None:
            return found
        return self.resolve(self.get(bucket, store, name).id, ref)  # a revision prefix, or NotFound

    def _lookup_tag(self, params: dict[str, str]) -> RevisionRecord | None:
        (rows,) = self._fetch((_LOOKUP, params))
        return RevisionRecord(**rows[0]) if rows else None

    def _fetch(self, *queries: tuple[sa.Select, Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
        """Rows of SELECTs, run in order on one pooled DB-API connection.

        For the hot read paths (serving, tasks, small reads): each statement is
        compiled once per engine and runs without SQLAlchemy's per-execution
        machinery (connection wrapper, transaction, result objects), which
        costs several times a small indexed query. Each statement reads one
        consistent snapshot, as it would in a transaction on either database.
        """
        engine = self.engine()
        if self._prepared_for is not engine:
            self._prepared, self._prepared_for = {}, engine
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                return [self._run(cursor, engine, q, params) for q, params in queries]
            finally:
                cursor.close()
        finally:
            connection.close()  # back to the pool, which rolls back what a driver began

    def _run(
        self, cursor: Any, engine: Engine, query: sa.Select, params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        prepared = self._prepared.get(id(query))
        if prepared is None:
            compiled = query.compile(dialect=engine.dialect)
            columns = [
                (c.name, c.type._cached_result_processor(engine.dialect, None))
                for c in query.selected_columns
            ]
            prepared = self._prepared[id(query)] = (compiled, columns)
        compiled, columns = prepared
        bound = compiled.construct_params(params)
        args = [bound[k] for k in compiled.positiontup] if compiled.positional else bound
        cursor.execute(compiled.string, args)
        return [
            {
                name: process(v) if process else v
                for (name, process), v in zip(columns, row, strict=True)
            }
            for row in cursor.fetchall()
        ]

    def revisions(self, object_id: int) -> list[tuple[RevisionRecord, list[str]]]:
        """All revisions, oldest first, each with its tags."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(revisions)
                .where(revisions.c.object_id == object_id)
                .order_by(revisions.c.id)
            ).all()
            tag_rows = conn.execute(
                sa.select(tags.c.revision_id, tags.c.tag)
                .where(tags.c.object_id == object_id)
                .order_by(tags.c.tag)
            ).all()
        by_revision: dict[int, list[str]] = {}
        for revision_id, tag in tag_rows:
            by_revision.setdefault(revision_id, []).append(tag)
        return [(_revision(r), by_revision.get(r.id, [])) for r in rows]

    def tags_of(self, revision: RevisionRecord) -> list[str]:
        """Tags that point at one revision."""
        with self._read() as conn:
            return sorted(
                conn.execute(
                    sa.select(tags.c.tag).where(tags.c.revision_id == revision.id)
                ).scalars()
            )

    def parts(self, revision: RevisionRecord) -> list[PartRecord]:
        """The blobs of a revision in read order (its append chain, oldest first)."""
        params = {"revision_id": revision.id, "revision": revision.revision}
        # The existence check comes after the parts (each statement reads at its own
        # snapshot): a revision that exists now existed, immutable, before, so
        # what was read is whole; otherwise a concurrent drop removed it and the
        # read must not pass off no parts as an empty object.
        found, exists = self._fetch((_PARTS, params), (_REVISION_EXISTS, params))
        if not exists:
            raise NotFound(f"revision {revision.revision} was dropped meanwhile")
        return [PartRecord(**row) for row in found]

    def set_tag(self, object_id: int, revision: RevisionRecord, tag: str) -> None:
        """Point ``tag`` at ``revision`` (moving it if it pointed elsewhere)."""
        with self._write() as conn:
            # Under the object's lock the revision cannot vanish; check it is
            # still there (ids of dropped rows can be reused by SQLite).
            still_there = (
                self._lock_id(conn, object_id)
                and conn.execute(
                    sa.select(revisions.c.id).where(
                        revisions.c.id == revision.id,
                        revisions.c.object_id == object_id,
                        revisions.c.revision == revision.revision,
                    )
                ).first()
            )
            if not still_there:
                raise NotFound(
                    f"revision {revision.revision} was dropped meanwhile; look the object up again"
                )
            self._set_tags(conn, object_id, revision.id, [tag])

    def remove_tag(self, obj: ObjectRecord | int, tag: str) -> None:
        """Remove a tag; ``latest`` cannot be removed."""
        object_id, same = _identity(obj)
        with self._write() as conn:
            if not self._lock_id(conn, object_id, same):
                return  # the object is gone: so is the tag
            conn.execute(tags.delete().where(tags.c.object_id == object_id, tags.c.tag == tag))

    def _set_tags(
        self, conn: Connection, object_id: int, revision_id: int, names: Sequence[str]
    ) -> None:
        for tag in dict.fromkeys(names):
            conn.execute(tags.delete().where(tags.c.object_id == object_id, tags.c.tag == tag))
            conn.execute(
                tags.insert().values(object_id=object_id, tag=tag, revision_id=revision_id)
            )

    @staticmethod
    def _lock_id(conn: Connection, object_id: int, same: Sequence[Any] = ()) -> bool:
        """Lock an object's row for this transaction; False if there is none.

        Every transaction that writes an object's revisions or tags takes this
        lock first, so on PostgreSQL they queue on one row instead of
        deadlocking on tag and revision rows taken in different orders
        (SQLite's BEGIN IMMEDIATE serialises all writers anyway).
        """
        query = sa.select(objects.c.id).where(objects.c.id == object_id, *same).with_for_update()
        return conn.execute(query).first() is not None

    def _lock_object(
        self,
        conn: Connection,
        bucket: str,
        store: str,
        name: str,
        new: NewRevision,
        now: dt.datetime,
    ) -> ObjectRecord:
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
                return _object(row)
            # PostgreSQL: the row the insert found was dropped before we could
            # lock it; the next insert creates it (READ COMMITTED sees the drop).
        raise StorageError(
            f"cannot create {store}/{name!r}: it was dropped {_LOCK_ATTEMPTS} times while "
            "this put waited; put again"
        )

    def _latest(self, conn: Connection, object_id: int) -> RevisionRecord | None:
        row = conn.execute(
            sa.select(revisions)
            .join(tags, tags.c.revision_id == revisions.c.id)
            .where(tags.c.object_id == object_id, tags.c.tag == LATEST)
        ).first()
        return _revision(row) if row else None

    def commit(
        self, bucket: str, store: str, name: str, new: NewRevision
    ) -> tuple[ObjectRecord, RevisionRecord]:
        """Create a revision of ``name`` (and the object if new) in one transaction.

        With ``new.append`` the revision extends the latest revision's parts,
        if its kind matches; otherwise it holds only ``new.parts``. ``latest``
        and ``new.tags`` move to the new revision.
        """
        now = _now()
        with self._write() as conn:
            obj = self._lock_object(conn, bucket, store, name, new, now)
            if new.missing is not None and new.parts:
                keys = self._lock_blobs(conn, [p.blob for p in new.parts])
                gone = list(new.missing(keys))
                if gone:
                    raise MissingBlobs(
                        f"blobs {gone} of this put were deleted before it committed; put again"
                    )
            latest = self._latest(conn, obj.id)
            base = latest if new.append and latest is not None and latest.kind == new.kind else None
            kind_meta = new.extend(base) if new.extend is not None else new.kind_meta
            rows = sum(p.rows or 0 for p in new.parts) + ((base.rows or 0) if base else 0)
            size = sum(p.size for p in new.parts) + (base.size if base else 0)
            revision_id = _revision_id(
                f"{bucket}/{store}/{name}",
                latest.revision if latest else None,
                [p.blob for p in new.parts],
                now,
            )
            inserted = conn.execute(
                revisions.insert()
                .values(
                    object_id=obj.id,
                    revision=revision_id,
                    parent=latest.revision if latest else None,
                    base_id=base.id if base else None,
                    kind=new.kind,
                    kind_meta=dict(kind_meta),
                    rows=rows if any(p.rows is not None for p in new.parts) or base else None,
                    size=size,
                    created=now,
                )
                .returning(*revisions.c)
            ).one()
            revision = _revision(inserted)
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
            self._set_tags(conn, obj.id, revision.id, [LATEST, *new.tags])
            attributes = {**obj.attributes, **(new.attributes or {})}
            values: dict[str, Any] = {"kind": new.kind, "modified": now, "attributes": attributes}
            if new.origin:
                values["origin"] = dict(new.origin)
            conn.execute(objects.update().where(objects.c.id == obj.id).values(**values))
            obj = _object(conn.execute(sa.select(objects).where(objects.c.id == obj.id)).one())
        return obj, revision

    @staticmethod
    def _lock_blobs(conn: Connection, blobs: Sequence[str]) -> list[str]:
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

    def delete_unused(self, blobs: Sequence[str], delete: Callable[[str], None]) -> list[str]:
        """Call ``delete(key)`` for those of ``blobs`` no revision refers to; return them.

        A put writes its blobs before it commits, and a blob's key is its
        content: another put may have just written (or found in place) the
        same blob. The check and the delete run under the lock that
        :meth:`commit` takes on its blobs before it checks they exist, so
        either the commit comes first and the blob stays in use, or the
        delete does and the commit finds the blob missing (``MissingBlobs``)
        instead of referring to a deleted blob.
        """
        if not blobs:
            return []
        with self._write() as conn:
            keys = self._lock_blobs(conn, blobs)
            used = set(
                conn.execute(sa.select(parts.c.blob).where(parts.c.blob.in_(keys))).scalars()
            )
            unused = [key for key in keys if key not in used]
            for key in unused:
                delete(key)
        return unused

    def blobs_in_use(self, blobs: Sequence[str]) -> set[str]:
        """Which of ``blobs`` some revision still refers to."""
        with self._read() as conn:
            return set(
                conn.execute(sa.select(parts.c.blob).where(parts.c.blob.in_(list(blobs)))).scalars()
            )
