"""Streams: records appended with offsets the catalog assigns, and consumer groups' positions.

A stream is one row of ``streams`` holding the offset its next record gets.
An append moves that counter on by the number of records with one ``UPDATE
... RETURNING`` and inserts the records under the offsets it reserved, in the
same transaction. The update locks the stream's row until the commit
(PostgreSQL; SQLite runs one write transaction at a time anyway), so
concurrent producers take turns: offsets are gapless, and a record becomes
visible only after every record with a lower offset. A reader that has seen
offset ``n`` therefore never misses a record below ``n`` that commits later,
which is what lets a consumer group keep one number as its position.

A group's position (``stream_groups.offset``) is the next offset it has not
processed yet; commits only move it forward.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from omops.catalog._tables import stream_groups, stream_records, streams
from omops.errors import NotFound

if TYPE_CHECKING:
    from omops.catalog.store import Catalog

__all__ = ["StreamInfo", "StreamRecord", "Streams", "streams_by_bucket"]

#: Records per INSERT statement of one append (all in one transaction).
_INSERT_CHUNK = 5_000


@dataclass(frozen=True)
class StreamRecord:
    """One record: its offset, when it was appended (epoch seconds), its JSON text."""

    offset: int
    dt: float
    record: str


@dataclass(frozen=True)
class StreamInfo:
    """What the catalog knows about one stream.

    Attributes
    ----------
    bucket, name : str
    created : datetime
    next_offset : int
        The offset the next record will get (the number of records appended).
    groups : dict
        Each consumer group's position: the next offset it has not processed.
    """

    bucket: str
    name: str
    created: dt.datetime
    next_offset: int
    groups: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, the datetime as ISO text."""
        return {
            "name": self.name,
            "bucket": self.bucket,
            "created": self.created.isoformat(),
            "records": self.next_offset,
            "next_offset": self.next_offset,
            "groups": dict(self.groups),
        }


def _insert(conn: Connection) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_*``."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def streams_by_bucket(conn: Connection, *, hidden: bool) -> dict[str, int]:
    """``{bucket: number of streams}`` of every bucket that has one."""
    query = sa.select(streams.c.bucket, sa.func.count()).group_by(streams.c.bucket)
    if not hidden:
        query = query.where(~streams.c.name.startswith("_", autoescape=True))
    return {bucket: int(count) for bucket, count in conn.execute(query)}


def _key(bucket: str, name: str) -> tuple[Any, ...]:
    return (streams.c.bucket == bucket, streams.c.name == name)


class Streams:
    """Streams stored in one catalog (``catalog.streams``)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # -- producers ---------------------------------------------------------

    def append(self, bucket: str, name: str, records: Sequence[str]) -> int:
        """Append JSON texts to stream ``name`` (made if new); return the first offset.

        The records get offsets ``first, first + 1, ...`` in their order, all or
        none of them (one transaction). An empty ``records`` only makes the stream.
        """
        now = time.time()
        with self.catalog.write_transaction() as conn:
            found = self._reserve(conn, bucket, name, len(records))
            if found is None:
                conn.execute(
                    _insert(conn)(streams)
                    .values(
                        bucket=bucket, name=name, next_offset=0, created=dt.datetime.now(dt.UTC)
                    )
                    .on_conflict_do_nothing(index_elements=["bucket", "name"])
                )
                found = self._reserve(conn, bucket, name, len(records))
            stream_id, after = found
            first = after - len(records)
            for start in range(0, len(records), _INSERT_CHUNK):
                rows = [
                    {"stream_id": stream_id, "offset": first + start + i, "dt": now, "record": text}
                    for i, text in enumerate(records[start : start + _INSERT_CHUNK])
                ]
                conn.execute(stream_records.insert(), rows)
        return first

    @staticmethod
    def _reserve(conn: Connection, bucket: str, name: str, count: int) -> tuple[int, int] | None:
        """Move the stream's counter on by ``count`` (locking its row); ``(id, new counter)``."""
        row = conn.execute(
            streams.update()
            .where(*_key(bucket, name))
            .values(next_offset=streams.c.next_offset + count)
            .returning(streams.c.id, streams.c.next_offset)
        ).first()
        return None if row is None else (int(row[0]), int(row[1]))

    # -- consumers ---------------------------------------------------------

    def read(
        self, bucket: str, name: str, *, since: int = 0, limit: int = 1000
    ) -> list[StreamRecord]:
        """Records with offsets from ``since`` on, at most ``limit``, oldest first."""
        with self.catalog.read_transaction() as conn:
            stream_id = self._id(conn, bucket, name)
            rows = conn.execute(
                sa.select(stream_records.c.offset, stream_records.c.dt, stream_records.c.record)
                .where(stream_records.c.stream_id == stream_id, stream_records.c.offset >= since)
                .order_by(stream_records.c.offset)
                .limit(limit)
            ).all()
        return [StreamRecord(int(o), float(t), r) for o, t, r in rows]

    def next_offset(self, bucket: str, name: str) -> int:
        """The offset the next record will get; NotFound for no such stream."""
        with self.catalog.read_transaction() as conn:
            value = conn.execute(
                sa.select(streams.c.next_offset).where(*_key(bucket, name))
            ).scalar()
        if value is None:
            raise self._missing(bucket, name)
        return int(value)

    def position(self, bucket: str, name: str, group: str) -> int:
        """The next offset ``group`` has not processed (0 for a group that never committed)."""
        with self.catalog.read_transaction() as conn:
            stream_id = self._id(conn, bucket, name)
            value = conn.execute(
                sa.select(stream_groups.c.offset).where(
                    stream_groups.c.stream_id == stream_id, stream_groups.c.group_name == group
                )
            ).scalar()
        return 0 if value is None else int(value)

    def commit(self, bucket: str, name: str, group: str, offset: int) -> None:
        """Record that ``group`` processed every record before ``offset``.

        A position only moves forward: committing an older offset (a second
        consumer of the group behind the first) changes nothing.
        """
        now = dt.datetime.now(dt.UTC)
        with self.catalog.write_transaction() as conn:
            stream_id = self._id(conn, bucket, name)
            insert = _insert(conn)(stream_groups).values(
                stream_id=stream_id, group_name=group, offset=offset, committed=now
            )
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["stream_id", "group_name"],
                    set_={"offset": insert.excluded.offset, "committed": insert.excluded.committed},
                    where=stream_groups.c.offset < insert.excluded.offset,
                )
            )

    # -- the streams -------------------------------------------------------

    def info(self, bucket: str, name: str) -> StreamInfo:
        """The stream's creation time, record count and groups' positions."""
        with self.catalog.read_transaction() as conn:
            row = conn.execute(sa.select(streams).where(*_key(bucket, name))).first()
            if row is None:
                raise self._missing(bucket, name)
            groups = conn.execute(
                sa.select(stream_groups.c.group_name, stream_groups.c.offset)
                .where(stream_groups.c.stream_id == row.id)
                .order_by(stream_groups.c.group_name)
            ).all()
        return StreamInfo(
            bucket=row.bucket,
            name=row.name,
            created=row.created,
            next_offset=int(row.next_offset),
            groups={g: int(o) for g, o in groups},
        )

    def list(self, bucket: str, pattern: str | None = None) -> list[str]:
        """Names of the streams in ``bucket``, sorted; ``pattern`` is a glob."""
        with self.catalog.read_transaction() as conn:
            names = conn.execute(
                sa.select(streams.c.name).where(streams.c.bucket == bucket).order_by(streams.c.name)
            ).scalars()
            found = list(names)
        return [n for n in found if pattern is None or fnmatch.fnmatchcase(n, pattern)]

    def exists(self, bucket: str, name: str) -> bool:
        """Whether stream ``name`` exists."""
        with self.catalog.read_transaction() as conn:
            return (
                conn.execute(sa.select(streams.c.id).where(*_key(bucket, name))).first() is not None
            )

    def drop(self, bucket: str, name: str) -> bool:
        """Delete the stream with its records and groups; whether there was one."""
        with self.catalog.write_transaction() as conn:
            stream_id = conn.execute(sa.select(streams.c.id).where(*_key(bucket, name))).scalar()
            if stream_id is None:
                return False
            # Children first: SQLite enforces the cascade only with foreign keys on.
            conn.execute(stream_groups.delete().where(stream_groups.c.stream_id == stream_id))
            conn.execute(stream_records.delete().where(stream_records.c.stream_id == stream_id))
            conn.execute(streams.delete().where(streams.c.id == stream_id))
        return True

    def _id(self, conn: Connection, bucket: str, name: str) -> int:
        stream_id = conn.execute(sa.select(streams.c.id).where(*_key(bucket, name))).scalar()
        if stream_id is None:
            raise self._missing(bucket, name)
        return int(stream_id)

    @staticmethod
    def _missing(bucket: str, name: str) -> NotFound:
        return NotFound(
            f"stream {name!r} does not exist in bucket {bucket!r}; append to it first with "
            f"om.streams.put(record, {name!r}) (an empty list makes an empty stream), or list "
            "what there is with om.streams.list()"
        )
