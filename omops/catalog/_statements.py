"""SELECTs the catalog runs on every read, built once with bound parameters.

Building a statement per call costs more than running it: SQLAlchemy caches
the compiled form per statement object, and the fast path
(:mod:`omops.catalog._fastpath`) compiles each of these once per engine.
"""

from __future__ import annotations

import sqlalchemy as sa

from omops.catalog._tables import objects, parts, revisions, tags

__all__ = ["FIND", "LOOKUP", "PARTS", "RESOLVE_TAG", "REVISION_EXISTS"]

# The revision string too, not just the id: SQLite may give a dropped
# revision's id to a new one.
_THIS_REVISION = sa.and_(
    revisions.c.id == sa.bindparam("revision_id"),
    revisions.c.revision == sa.bindparam("revision"),
)

# The revision's append chain: itself, its base, the base's base ...
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

#: The blobs of a revision (``revision_id``, ``revision``) in read order, oldest first.
PARTS = (
    sa.select(parts.c.blob, parts.c.size, parts.c.rows)
    .join(_CHAIN, parts.c.revision_id == _CHAIN.c.id)
    .order_by(_CHAIN.c.depth.desc(), parts.c.position)
)

#: A row when the revision (``revision_id``, ``revision``) still exists.
REVISION_EXISTS = sa.select(revisions.c.id).where(_THIS_REVISION)

#: The object ``name`` in ``bucket`` and ``store``.
FIND = sa.select(objects).where(
    objects.c.bucket == sa.bindparam("bucket"),
    objects.c.store == sa.bindparam("store"),
    objects.c.name == sa.bindparam("name"),
)

#: The revision that ``tag`` of object ``object_id`` points at.
RESOLVE_TAG = (
    sa.select(revisions)
    .join(tags, tags.c.revision_id == revisions.c.id)
    .where(tags.c.object_id == sa.bindparam("object_id"), tags.c.tag == sa.bindparam("tag"))
)

#: The revision ``tag`` of ``name`` in ``bucket`` and ``store`` points at: the
#: unique (bucket, store, name) index finds the object, the tags primary key
#: its revision.
LOOKUP = (
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
