"""Catalog rows of revisions and tags: resolve references, list, move tags."""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from omops.catalog._records import LATEST, RevisionRecord
from omops.catalog._statements import RESOLVE_TAG
from omops.catalog._tables import revisions, tags
from omops.errors import InvalidName, NotFound
from omops.names import split_ref

__all__ = [
    "MIN_PREFIX",
    "exists",
    "latest",
    "latest_of",
    "resolve",
    "remove_tag",
    "revision_record",
    "revisions_of",
    "set_tags",
    "tags_of",
]

#: Characters of a revision id a prefix needs to name it.
MIN_PREFIX = 4
_HEX = re.compile(r"[0-9a-f]+")


def revision_record(row: sa.Row) -> RevisionRecord:
    return RevisionRecord(**row._mapping)


def resolve(conn: Connection, object_id: int, ref: str) -> RevisionRecord:
    """The revision ``ref`` names, or NotFound listing the tags.

    ``ref`` is a tag or revision prefix, followed by one ``^`` per revision
    back in put order (``'^'``: the one before ``latest``; see
    :func:`omops.names.split_ref`).
    """
    base, back = split_ref(ref)
    found = _resolve(conn, object_id, base or LATEST)
    return _before(conn, object_id, found, back, ref) if back else found


def _before(
    conn: Connection, object_id: int, found: RevisionRecord, back: int, ref: str
) -> RevisionRecord:
    """The revision put ``back`` revisions before ``found``."""
    row = conn.execute(
        sa.select(revisions)
        .where(revisions.c.object_id == object_id, revisions.c.id < found.id)
        .order_by(revisions.c.id.desc())
        .offset(back - 1)
        .limit(1)
    ).first()
    if row is None:
        older = conn.execute(
            sa.select(sa.func.count())
            .select_from(revisions)
            .where(revisions.c.object_id == object_id, revisions.c.id < found.id)
        ).scalar_one()
        raise NotFound(
            f"no revision {ref!r}: it asks for {back} revision(s) before "
            f"{found.revision[:12]}, which has {older} before it (see revisions())"
        )
    return revision_record(row)


def _resolve(conn: Connection, object_id: int, ref: str) -> RevisionRecord:
    row = conn.execute(RESOLVE_TAG, {"object_id": object_id, "tag": ref}).first()
    if row:
        return revision_record(row)
    if len(ref) >= MIN_PREFIX and _HEX.fullmatch(ref):
        rows = conn.execute(
            sa.select(revisions)
            .where(revisions.c.object_id == object_id, revisions.c.revision.startswith(ref))
            .limit(2)
        ).all()
        if len(rows) == 1:
            return revision_record(rows[0])
        if len(rows) > 1:
            raise InvalidName(f"revision prefix {ref!r} is ambiguous; give more characters")
    known = sorted(
        conn.execute(sa.select(tags.c.tag).where(tags.c.object_id == object_id)).scalars()
    )
    raise NotFound(
        f"no tag or revision {ref!r}; tags are {known}, or give at least "
        f"{MIN_PREFIX} leading characters of a revision id (see revisions())"
    )


def latest(conn: Connection, object_id: int) -> RevisionRecord | None:
    row = conn.execute(RESOLVE_TAG, {"object_id": object_id, "tag": LATEST}).first()
    return revision_record(row) if row else None


def latest_of(conn: Connection, object_ids: Sequence[int]) -> dict[int, RevisionRecord]:
    """The ``latest`` revision of each of ``object_ids`` that has one."""
    query = (
        sa.select(revisions)
        .join(tags, tags.c.revision_id == revisions.c.id)
        .where(tags.c.tag == LATEST, tags.c.object_id.in_(list(object_ids)))
    )
    return {row.object_id: revision_record(row) for row in conn.execute(query)}


def revisions_of(conn: Connection, object_id: int) -> list[tuple[RevisionRecord, list[str]]]:
    rows = conn.execute(
        sa.select(revisions).where(revisions.c.object_id == object_id).order_by(revisions.c.id)
    ).all()
    tag_rows = conn.execute(
        sa.select(tags.c.revision_id, tags.c.tag)
        .where(tags.c.object_id == object_id)
        .order_by(tags.c.tag)
    ).all()
    by_revision: dict[int, list[str]] = {}
    for revision_id, tag in tag_rows:
        by_revision.setdefault(revision_id, []).append(tag)
    return [(revision_record(r), by_revision.get(r.id, [])) for r in rows]


def tags_of(conn: Connection, revision: RevisionRecord) -> list[str]:
    query = sa.select(tags.c.tag).where(tags.c.revision_id == revision.id)
    return sorted(conn.execute(query).scalars())


def exists(conn: Connection, object_id: int, revision: RevisionRecord) -> bool:
    """Whether the revision is still there (ids of dropped rows can be reused by SQLite)."""
    query = sa.select(revisions.c.id).where(
        revisions.c.id == revision.id,
        revisions.c.object_id == object_id,
        revisions.c.revision == revision.revision,
    )
    return conn.execute(query).first() is not None


def set_tags(conn: Connection, object_id: int, revision_id: int, names: Sequence[str]) -> None:
    """Point each tag in ``names`` at the revision, moving those that pointed elsewhere."""
    for tag in dict.fromkeys(names):
        conn.execute(tags.delete().where(tags.c.object_id == object_id, tags.c.tag == tag))
        conn.execute(tags.insert().values(object_id=object_id, tag=tag, revision_id=revision_id))


def remove_tag(conn: Connection, object_id: int, tag: str) -> None:
    conn.execute(tags.delete().where(tags.c.object_id == object_id, tags.c.tag == tag))
