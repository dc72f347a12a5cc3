"""The catalog: the only code that reads and writes the catalog tables.

:class:`Catalog` holds the connections of one database; what it runs lives
in one module per family: ``_objects`` (objects), ``_revisions`` (revisions
and tags), ``_commit`` (new revisions, blob locks), ``_migrate`` (the
schema), ``_fastpath`` (the hot reads). A revision commit is one
transaction: a reader sees the old revision or the new one, never half of it.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from omops.catalog import _commit, _migrate, _objects, _revisions
from omops.catalog._engine import WRITE_OPTION, create_engine, normalize_url
from omops.catalog._fastpath import FastReader, Query
from omops.catalog._migrate import Migration, SchemaStatus
from omops.catalog._records import (
    LATEST,
    MissingBlobs,
    NewPart,
    NewRevision,
    ObjectRecord,
    PartRecord,
    RevisionRecord,
)
from omops.catalog._statements import LOOKUP, PARTS, REVISION_EXISTS
from omops.catalog.keys import ApiKeys
from omops.catalog.schedules import Schedules
from omops.catalog.secrets import SecretTokens
from omops.catalog.streams import Streams, streams_by_bucket
from omops.catalog.tasks import TaskLog
from omops.catalog.tracking import Tracking
from omops.errors import NotFound, StorageError

__all__ = [
    "LATEST",
    "Catalog",
    "MissingBlobs",
    "NewPart",
    "NewRevision",
    "ObjectRecord",
    "PartRecord",
    "RevisionRecord",
]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Catalog:
    """Metadata of all stored objects in one SQL database.

    Parameters
    ----------
    url : str
        SQLAlchemy URL: ``sqlite:////abs/path/catalog.sqlite`` or
        ``postgresql://user:password@host/db``. An empty database gets the
        current schema on first use; an existing one must be at it already
        (:meth:`schema_status`, :meth:`upgrade`, ``om db upgrade``).
    """

    def __init__(self, url: str) -> None:
        self.url = str(normalize_url(url).render_as_string(hide_password=False))
        self._engine_obj: Engine | None = None
        self._engine_pid: int | None = None
        self._reader: FastReader | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Catalog({self._masked_url()!r})"

    def _masked_url(self) -> str:
        return normalize_url(self.url).render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return normalize_url(self.url).get_backend_name()

    # -- connections -------------------------------------------------------

    def engine(self) -> Engine:
        """The engine of this process, made on first use after checking the schema.

        Raises
        ------
        SchemaError
            The catalog's schema is older or newer than this omops needs
            (checked again on every call until it is right).
        StorageError
            The database cannot be reached.
        """
        pid = os.getpid()
        if self._engine_obj is None or self._engine_pid != pid:
            with self._lock:
                if self._engine_obj is None or self._engine_pid != pid:
                    if self._engine_obj is not None:
                        # Inherited over fork: never reuse the parent's sockets.
                        self._engine_obj.dispose(close=False)
                        self._engine_obj = None
                    engine = create_engine(self.url)
                    try:
                        self._checked(lambda: _migrate.ensure(engine))
                    except BaseException:
                        engine.dispose()
                        raise
                    self._engine_obj, self._engine_pid = engine, pid
        return self._engine_obj

    def _checked(self, call: Callable[[], Any]) -> Any:
        """``call()``, with a database that cannot be reached reported as StorageError."""
        try:
            return call()
        except sa.exc.OperationalError as exc:
            raise StorageError(f"cannot open catalog {self!r}: {exc.orig}") from exc

    def close(self) -> None:
        """Close all pooled connections."""
        if self._engine_obj is not None:
            self._engine_obj.dispose()
            self._engine_obj = None
            self._reader = None

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

    def _fetch(self, *queries: Query) -> list[list[dict[str, Any]]]:
        """Rows of the hot-path SELECTs, through :mod:`omops.catalog._fastpath`."""
        engine = self.engine()
        reader = self._reader
        if reader is None or reader.engine is not engine:  # closed or forked meanwhile
            reader = self._reader = FastReader(engine)
        return reader.fetch(*queries)

    # -- schema ------------------------------------------------------------

    @contextmanager
    def _unchecked_engine(self) -> Iterator[Engine | None]:
        """An engine that skips the schema check; ``None`` for a SQLite file not made yet."""
        url = normalize_url(self.url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            if not Path(url.database).exists():
                yield None
                return
        engine = create_engine(self.url)
        try:
            yield engine
        finally:
            engine.dispose()

    def schema_status(self) -> SchemaStatus:
        """Where this catalog's schema stands: revision, newest known, pending migrations.

        Never changes the database (nor creates a SQLite file).
        """
        with self._unchecked_engine() as engine:
            return self._checked(
                lambda: _migrate.status(engine, where=self._masked_url(), dialect=self.dialect)
            )

    def upgrade(self, target: str = "head") -> list[Migration]:
        """Migrate the schema to ``target`` (``'head'``: the newest this omops knows).

        The one way an existing catalog is migrated (``om db upgrade``).
        Idempotent, and safe when several processes run it at once.

        Returns
        -------
        list of Migration
            The migrations applied, oldest first; empty when there was nothing to do.

        Raises
        ------
        SchemaError
            The catalog is newer than this omops, or not an omops catalog.
        ConfigError
            ``target`` is unknown or older than the catalog's schema.
        """
        engine = create_engine(self.url)
        try:
            return self._checked(lambda: _migrate.upgrade(engine, target))
        finally:
            engine.dispose()

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

    @property
    def schedules(self) -> Schedules:
        """Job schedules, and the claims that make each occurrence fire once."""
        return Schedules(self)

    @property
    def secrets(self) -> SecretTokens:
        """Encrypted secret tokens by bucket and name (see :mod:`omops.secrets`)."""
        return SecretTokens(self)

    @property
    def streams(self) -> Streams:
        """Stream records with their offsets, and consumer groups' positions."""
        return Streams(self)

    # -- objects -----------------------------------------------------------

    def find(self, bucket: str, store: str, name: str) -> ObjectRecord | None:
        """The object, or ``None`` when there is none of that name."""
        with self._read() as conn:
            return _objects.find(conn, bucket, store, name)

    def get(self, bucket: str, store: str, name: str) -> ObjectRecord:
        """The object, or NotFound."""
        record = self.find(bucket, store, name)
        if record is None:
            raise NotFound(
                f"{store[:-1] if store.endswith('s') else store} {name!r} does not exist in bucket "
                f"{bucket!r}; list what there is with om.{store}.list()"
            )
        return record

    def list(
        self,
        bucket: str,
        store: str,
        *,
        pattern: str | None = None,
        kind: str | None = None,
        hidden: bool = False,
    ) -> list[ObjectRecord]:
        """Objects in a bucket and store, sorted by name.

        Parameters
        ----------
        bucket, store : str
            Where to look.
        pattern : str, optional
            A glob the name must match (``prod/*``).
        kind : str, optional
            Only objects of this kind.
        hidden : bool, default=False
            Include internal objects, whose first path segment starts with
            ``_`` (``_temp/...``; see :func:`omops.names.is_hidden`).
        """
        with self._read() as conn:
            return _objects.list_objects(
                conn, bucket, store, pattern=pattern, kind=kind, hidden=hidden
            )

    def page(
        self,
        bucket: str,
        store: str,
        *,
        prefix: str | None = None,
        exclude: str | None = None,
        offset: int = 0,
        limit: int = 50,
        hidden: bool = False,
        descending: bool = False,
    ) -> tuple[list[ObjectRecord], int]:
        """One page of :meth:`list` by name, and the number of objects that match in all.

        For listings of any length (the dashboard): only ``limit`` rows are
        read. ``prefix`` keeps names that start with it, ``exclude`` leaves
        out those that start with it.
        """
        with self._read() as conn:
            return _objects.page_objects(
                conn,
                bucket,
                store,
                prefix=prefix,
                exclude=exclude,
                hidden=hidden,
                offset=offset,
                limit=limit,
                descending=descending,
            )

    def latest_revisions(self, object_ids: Sequence[int]) -> dict[int, RevisionRecord]:
        """The revision tagged ``latest`` of each object, in one query (a listing's sizes)."""
        if not object_ids:
            return {}
        with self._read() as conn:
            return _revisions.latest_of(conn, object_ids)

    def buckets(self, *, hidden: bool = False) -> dict[str, dict[str, int]]:
        """``{bucket: {store: number of objects}}`` of every bucket that holds objects.

        Streams (not objects of the ``objects`` table) are counted under ``streams``.
        """
        with self._read() as conn:
            found = _objects.stores_by_bucket(conn, hidden=hidden)
            for bucket, count in streams_by_bucket(conn, hidden=hidden).items():
                found.setdefault(bucket, {})["streams"] = count
        return dict(sorted(found.items()))

    def set_attributes(self, obj: ObjectRecord | int, attributes: Mapping[str, Any]) -> None:
        """Replace the user attributes of an object (an ObjectRecord, or its id)."""
        with self._write() as conn:
            _objects.set_attributes(conn, obj, attributes, _now())

    def drop(self, obj: ObjectRecord | int) -> list[str]:
        """Delete an object with all revisions; return blobs nothing refers to now.

        Given the ObjectRecord that was read (rather than its id), nothing
        happens when that object is gone meanwhile, even if SQLite has given
        its id to a new object since.
        """
        with self._write() as conn:
            return _objects.drop(conn, obj)

    # -- revisions and tags ------------------------------------------------

    def resolve(self, object_id: int, ref: str | None = None) -> RevisionRecord:
        """The revision a tag or revision prefix names; ``None`` means latest."""
        with self._read() as conn:
            return _revisions.resolve(conn, object_id, ref or LATEST)

    def lookup(self, bucket: str, store: str, name: str, ref: str | None = None) -> RevisionRecord:
        """``resolve(get(bucket, store, name).id, ref)``: in one indexed query when ``ref`` is a tag.

        The serving hot path: every request asks which revision ``name`` (``latest``
        or ``name@tag``) is now, so that a new revision is served at once.
        """
        params = {"bucket": bucket, "store": store, "name": name, "tag": ref or LATEST}
        (rows,) = self._fetch((LOOKUP, params))
        if rows:
            return RevisionRecord(**rows[0])
        return self.resolve(self.get(bucket, store, name).id, ref)  # a revision prefix, or NotFound

    def revisions(self, object_id: int) -> list[tuple[RevisionRecord, list[str]]]:
        """All revisions, oldest first, each with its tags."""
        with self._read() as conn:
            return _revisions.revisions_of(conn, object_id)

    def tags_of(self, revision: RevisionRecord) -> list[str]:
        """Tags that point at one revision."""
        with self._read() as conn:
            return _revisions.tags_of(conn, revision)

    def parts(self, revision: RevisionRecord) -> list[PartRecord]:
        """The blobs of a revision in read order (its append chain, oldest first)."""
        params = {"revision_id": revision.id, "revision": revision.revision}
        # The existence check comes after the parts (each statement reads at its own
        # snapshot): a revision that exists now existed, immutable, before, so
        # what was read is whole; otherwise a concurrent drop removed it and the
        # read must not pass off no parts as an empty object.
        found, exists = self._fetch((PARTS, params), (REVISION_EXISTS, params))
        if not exists:
            raise NotFound(f"revision {revision.revision} was dropped meanwhile")
        return [PartRecord(**row) for row in found]

    def set_tag(self, object_id: int, revision: RevisionRecord, tag: str) -> None:
        """Point ``tag`` at ``revision`` (moving it if it pointed elsewhere)."""
        with self._write() as conn:
            # Under the object's lock the revision cannot vanish; check it is still there.
            if not (
                _objects.lock_id(conn, object_id) and _revisions.exists(conn, object_id, revision)
            ):
                raise NotFound(
                    f"revision {revision.revision} was dropped meanwhile; look the object up again"
                )
            self._set_tags(conn, object_id, revision.id, [tag])

    def remove_tag(self, obj: ObjectRecord | int, tag: str) -> None:
        """Remove a tag; ``latest`` cannot be removed."""
        object_id, same = _objects.identity(obj)
        with self._write() as conn:
            if _objects.lock_id(conn, object_id, same):  # else the object is gone: so is the tag
                _revisions.remove_tag(conn, object_id, tag)

    def _set_tags(
        self, conn: Connection, object_id: int, revision_id: int, names: Sequence[str]
    ) -> None:
        # A method (not only the module function), so that tests can stop a
        # commit inside its transaction right here.
        _revisions.set_tags(conn, object_id, revision_id, names)

    # -- commits and blobs -------------------------------------------------

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
            obj = _objects.lock_object(conn, bucket, store, name, new, now)
            if new.missing is not None and new.parts:
                keys = _commit.lock_blobs(conn, [p.blob for p in new.parts])
                gone = list(new.missing(keys))
                if gone:
                    raise MissingBlobs(
                        f"blobs {gone} of this put were deleted before it committed; put again"
                    )
            latest = _revisions.latest(conn, obj.id)
            revision = _commit.insert_revision(conn, obj, new, latest=latest, now=now)
            self._set_tags(conn, obj.id, revision.id, [LATEST, *new.tags])
            obj = _commit.update_object(conn, obj, new, now)
        return obj, revision

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
            keys = _commit.lock_blobs(conn, blobs)
            used = _commit.used_blobs(conn, keys)
            unused = [key for key in keys if key not in used]
            for key in unused:
                delete(key)
        return unused

    def blobs_in_use(self, blobs: Sequence[str]) -> set[str]:
        """Which of ``blobs`` some revision still refers to."""
        with self._read() as conn:
            return _commit.used_blobs(conn, blobs)
