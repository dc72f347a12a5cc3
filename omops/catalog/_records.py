"""What the catalog hands out and takes in: frozen records of objects, revisions, parts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omops.errors import StorageError

__all__ = [
    "LATEST",
    "MissingBlobs",
    "NewPart",
    "NewRevision",
    "ObjectRecord",
    "PartRecord",
    "RevisionRecord",
]

#: The tag that every commit moves to its new revision.
LATEST = "latest"


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
