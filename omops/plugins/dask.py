"""``dask.dataframe``: a Dask DataFrame stored part by part, by the Dask workers.

Each partition is written as one Parquet part in the blob store by whichever
worker holds it (the client never sees the rows), and the parts are committed
as one revision. The result is an ordinary partitioned dataset: ``get``
reads it as one pandas DataFrame, filters run in DuckDB as for any dataset,
and :func:`omops.dask.read_dask` opens it as a Dask DataFrame again without
copying. Workers open the blob store by URL with the client's storage options
(they travel inside Dask's own task graph, as with ``dd.to_parquet``).
"""

from __future__ import annotations

import sys
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData
from omops.plugins.base import Stored
from omops.plugins.pandas import (
    DataFramePlugin,
    _decode_schema,
    _encode_schema,
    _fingerprint,
    _merge_categories,
)

__all__ = ["DaskDataFramePlugin", "write_partition"]


def write_partition(
    frame: Any, url: str, options: dict[str, Any], target: str | None
) -> dict[str, Any] | None:
    """Write one partition as a Parquet blob (runs on a Dask worker); None if it is empty."""
    from omops.blobs import Blobs

    if len(frame) == 0:
        return None
    plugin = DataFramePlugin()
    table = plugin._to_table(frame)
    if target is not None:  # the schema of the first partition, or of the revision appended to
        table = _cast(table, _decode_schema(target))
    key, size = Blobs(url, **options).put_with(lambda out: pq.write_table(table, out))
    return {
        "blob": key,
        "size": size,
        "rows": table.num_rows,
        "schema": _encode_schema(table.schema),
        "categories": plugin._categories(frame),
    }


def _cast(table: pa.Table, target: pa.Schema) -> pa.Table:
    if table.schema.names != target.names:
        raise InvalidData(
            f"a partition's columns {table.schema.names} differ from {target.names}; give "
            "every partition the same columns"
        )
    if table.schema.remove_metadata().equals(target.remove_metadata()):
        return table
    try:
        return table.cast(target.remove_metadata()).replace_schema_metadata(table.schema.metadata)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise InvalidData(f"a partition's column types do not fit the others ({exc})") from exc


class DaskDataFramePlugin(DataFramePlugin):
    """A Dask DataFrame, written partition by partition on the workers."""

    kind = "dask.dataframe"

    @classmethod
    def supports(cls, obj: Any) -> bool:
        dd = sys.modules.get("dask.dataframe")
        return dd is not None and isinstance(obj, dd.DataFrame)

    def put(self, obj: Any, blobs: Any, *, base: RevisionRecord | None = None) -> Stored:
        import dask

        if not self.supports(obj):
            raise InvalidData(
                f"kind {self.kind!r} needs a Dask DataFrame, got {type(obj).__name__}"
            )
        target = base.kind_meta["schema"] if base is not None else None
        if target is None:  # all partitions in the schema of an empty one (the meta)
            target = _encode_schema(self._to_table(obj._meta).schema)
        writes = [
            dask.delayed(write_partition, pure=False)(
                part, blobs.url, blobs.storage_options, target
            )
            for part in obj.to_delayed()
        ]
        written = [w for w in dask.compute(*writes) if w is not None]
        schema = _decode_schema(written[0]["schema"] if written else target)
        categories: dict[str, Any] = self._categories(obj._meta)
        for part in written:
            categories = _merge_categories(categories, part["categories"])
        index = self._index_columns(schema.empty_table())
        meta = {
            "schema": _encode_schema(schema),
            "fingerprint": _fingerprint(schema),
            "columns": [[f.name, str(f.type)] for f in schema if f.name not in index],
            "index": index,
            "categories": categories,
        }
        parts = [PartRecord(blob=w["blob"], size=w["size"], rows=w["rows"]) for w in written]
        return Stored(parts=parts, kind_meta=meta)
