"""``Metadata``: what the catalog knows about one object, at one revision."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omops.errors import InvalidData

if TYPE_CHECKING:
    from omops.repository import Repository

__all__ = ["Metadata", "human_size"]


@dataclass
class Metadata:
    """What the catalog knows about one object (at one revision).

    ``attributes`` is yours to edit; :meth:`save` persists it.

    Attributes
    ----------
    name, bucket, store, kind : str
    revision : str
        Id of the revision this metadata describes.
    tags : list of str
        Tags on that revision.
    created, modified : datetime
        When the object was first stored and last changed (UTC).
    attributes : dict
        User attributes.
    size : int
        Bytes in the blob store for this revision.
    rows : int or None
        Rows, for DataFrames and Series.
    columns : list of str or None
        Columns, for DataFrames and Series.
    origin : dict or None
        Where a promoted object came from.
    kind_meta : dict
        What the plugin recorded to read the object back.
    """

    name: str
    bucket: str
    store: str
    kind: str
    revision: str
    tags: list[str]
    created: dt.datetime
    modified: dt.datetime
    attributes: dict[str, Any]
    size: int
    rows: int | None
    columns: list[str] | None
    origin: dict[str, Any] | None
    kind_meta: dict[str, Any] = field(repr=False)
    details: dict[str, Any] = field(default_factory=dict, repr=False)
    _repository: Repository | None = field(default=None, repr=False, compare=False)

    def save(self) -> Metadata:
        """Persist edited ``attributes``."""
        if self._repository is None:
            raise InvalidData("this Metadata is not bound to a repository")
        self._repository.set_attributes(self.name, self.attributes)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view (datetimes as ISO strings), without the plugin's kind_meta."""
        return {
            "name": self.name,
            "bucket": self.bucket,
            "store": self.store,
            "kind": self.kind,
            "revision": self.revision,
            "tags": list(self.tags),
            "created": self.created.isoformat(),
            "modified": self.modified.isoformat(),
            "attributes": dict(self.attributes),
            "size": self.size,
            "rows": self.rows,
            "columns": self.columns,
            "origin": self.origin,
            **self.details,
        }


def human_size(size: int | None) -> str:
    """Bytes as people read them, the same in the CLI and the dashboard: ``1536`` -> ``'1.5 KB'``."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
