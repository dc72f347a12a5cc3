"""Catalog: metadata, revisions and tags of stored objects in SQLite or PostgreSQL."""

from omops.catalog._migrate import Migration, SchemaStatus
from omops.catalog.store import (
    LATEST,
    Catalog,
    MissingBlobs,
    NewPart,
    NewRevision,
    ObjectRecord,
    PartRecord,
    RevisionRecord,
)

__all__ = [
    "LATEST",
    "Catalog",
    "Migration",
    "MissingBlobs",
    "NewPart",
    "NewRevision",
    "ObjectRecord",
    "PartRecord",
    "RevisionRecord",
    "SchemaStatus",
]
