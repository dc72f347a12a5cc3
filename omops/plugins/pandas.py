"""``pandas.dataframe`` and ``pandas.series``: Parquet parts, filtered in DuckDB.

Each put writes one Parquet part; an append revision reads as all parts of
the revision it extends plus its own. The index is always stored as columns,
so it survives filters and appends. Index, dtypes (time zones, categoricals,
nullable types) round-trip through the Arrow schema and pandas metadata kept
in ``kind_meta``. A put refuses what Parquet could not read back (see
:mod:`omops.plugins._tables`) before anything is written.

Reads go through Arrow: :meth:`DataFramePlugin.read_table` gives the table
(what the read cache keeps, immutable), :meth:`DataFramePlugin.from_table`
a new pandas object from it, and :meth:`DataFramePlugin.stream` the rows as
batches with ``offset``/``limit`` and filters applied while reading.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData
from omops.plugins import _tables
from omops.plugins._parquet import BATCH_ROWS, FilteredRead, read_parts, slice_parts
from omops.plugins.base import Plugin, ReadQuery, Stored, TableStream
from omops.query import select_columns

__all__ = ["DataFramePlugin", "FrameChunks", "SeriesPlugin"]

_MAX_CATEGORIES = 100_000
#: Tables larger than this are converted to pandas with threads.
_THREADED_BYTES = 16 * 2**20
_SERIES_COLUMN = "value"


class FrameChunks:
    """A DataFrame given as chunks, to be stored one Parquet part per chunk.

    ``om.datasets.put(FrameChunks(make), name)`` writes each DataFrame that
    ``make()`` yields as one part (the first fixes the columns and types; the
    others are cast to them) and commits them as one revision, so a frame
    larger than memory is stored a chunk at a time. ``make`` is called again
    if the put has to write its blobs again (a concurrent drop deleted one).

    Parameters
    ----------
    make : callable
        Returns an iterable of DataFrames (e.g. ``lambda: pd.read_csv(path,
        chunksize=10**6)``).
    empty : callable, optional
        Returns a DataFrame with the columns and no rows, stored when ``make``
        yields nothing; without it, no chunks is an error.

    Examples
    --------
    >>> import pandas as pd, omops, tempfile
    >>> om = omops.Omega(home=tempfile.mkdtemp())
    >>> chunks = FrameChunks(lambda: (pd.DataFrame({'x': [i, i + 1]}) for i in range(0, 6, 2)))
    >>> om.datasets.put(chunks, 'xs').rows, om.datasets.get('xs')['x'].tolist()
    (6, [0, 1, 2, 3, 4, 5])
    """

    def __init__(
        self, make: Callable[[], Iterable[Any]], *, empty: Callable[[], Any] | None = None
    ) -> None:
        self.make, self.empty = make, empty


def _encode_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


@functools.lru_cache(maxsize=256)
def _decode_schema(text: str) -> pa.Schema:
    # Cached: every get of a dataset decodes the same text (schemas are immutable).
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def _fingerprint(schema: pa.Schema) -> str:
    text = schema.remove_metadata().to_string().encode()
    return hashlib.sha1(text, usedforsecurity=False).hexdigest()


def _without_index(target: pa.Schema, column: str, spec: Mapping[str, Any]) -> pa.Schema:
    """``target`` less the index column, its pandas metadata naming a RangeIndex instead."""
    pandas_meta = json.loads(target.metadata[b"pandas"])
    pandas_meta["index_columns"] = [
        {
            "kind": "range",
            "name": spec["name"],
            "start": spec["start"],
            "stop": spec["stop"],
            "step": spec["step"],
        }
    ]
    pandas_meta["columns"] = [c for c in pandas_meta["columns"] if c.get("field_name") != column]
    return pa.schema(
        [f for f in target if f.name != column],
        metadata={**target.metadata, b"pandas": json.dumps(pandas_meta).encode()},
    )


def _jsonable(values: Sequence[Any]) -> list[Any] | None:
    out = []
    for value in values:
        if hasattr(value, "item") and type(value).__module__ == "numpy":
            value = value.item()
        if not isinstance(value, (str, int, float, bool)):
            return None
        out.append(value)
    return out


def _merge_categories(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(old)
    for name, spec in new.items():
        before = merged.get(name, spec)
        if spec is None or before is None:
            merged[name] = None
        else:
            values = list(dict.fromkeys([*before["values"], *spec["values"]]))
            fits = len(values) <= _MAX_CATEGORIES
            merged[name] = {"values": values, "ordered": before["ordered"]} if fits else None
    return merged


class DataFramePlugin(Plugin):
    """A pandas DataFrame as Parquet parts; supports append, filters and column selection."""

    kind = "pandas.dataframe"
    caches_reads = True
    tabular = True
    stores = ("datasets",)
    appendable = True

    @classmethod
    def supports(cls, obj: Any) -> bool:
        pandas = sys.modules.get("pandas")
        return isinstance(obj, FrameChunks) or (
            pandas is not None and isinstance(obj, pandas.DataFrame)
        )

    # -- put ---------------------------------------------------------------

    def _frame(self, obj: Any) -> Any:
        import pandas as pd

        if not isinstance(obj, pd.DataFrame):
            raise InvalidData(
                f"kind {self.kind!r} needs a pandas DataFrame, got {type(obj).__name__}"
            )
        return obj

    def _to_table(self, frame: Any) -> pa.Table:
        import pandas as pd

        if isinstance(frame.columns, pd.MultiIndex):
            raise InvalidData(
                "DataFrames with MultiIndex columns cannot be stored; flatten them first, "
                "e.g. df.columns = ['_'.join(map(str, c)) for c in df.columns]"
            )
        _tables.check_columns(frame)
        _tables.check_objects(frame)
        try:
            table = pa.Table.from_pandas(frame, preserve_index=True)
        except (pa.ArrowException, TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise InvalidData(
                f"cannot convert the DataFrame to Arrow: {exc}. Columns must hold one type "
                "each; store arbitrary objects with kind='python.pickle'"
            ) from exc
        _tables.check_schema(table.schema)
        _tables.check_names_round_trip(frame, table)
        return table

    @staticmethod
    def _index_columns(table: pa.Table) -> list[str]:
        meta = table.schema.pandas_metadata or {}
        return [c for c in meta.get("index_columns", []) if isinstance(c, str)]

    def _conform(self, table: pa.Table, target: pa.Schema | None) -> pa.Table:
        """Cast an appended part (or a later chunk) to the schema it must have."""
        if target is None:
            return table
        if table.schema.names != target.names:
            raise InvalidData(
                f"cannot append: columns {table.schema.names} differ from the stored "
                f"{target.names}; reorder or rename them, or put with append=False to replace"
            )
        if table.schema.remove_metadata().equals(target.remove_metadata()):
            return table
        try:
            cast = table.cast(target.remove_metadata())
            return cast.replace_schema_metadata(table.schema.metadata)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise InvalidData(
                f"cannot append: the column types do not fit the stored schema ({exc}); "
                "convert them, or put with append=False to replace"
            ) from exc

    @staticmethod
    def _categories(frame: Any) -> dict[str, Any]:
        """Categories of each categorical column, so reads restore them exactly."""
        import pandas as pd

        found: dict[str, Any] = {}
        for name, dtype in frame.dtypes.items():
            if isinstance(dtype, pd.CategoricalDtype):
                values = _jsonable(list(dtype.categories))
                fits = values is not None and len(values) <= _MAX_CATEGORIES
                spec = {"values": values, "ordered": bool(dtype.ordered)}
                found[str(name)] = spec if fits else None
        return found

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        target = _decode_schema(base.kind_meta["schema"]) if base is not None else None
        if isinstance(obj, FrameChunks) and type(self) is DataFramePlugin:
            return self._put_chunks(obj, blobs, target)
        return self._write(self._frame(obj), blobs, target)

    def _write(self, frame: Any, blobs: Blobs, target: pa.Schema | None) -> Stored:
        """One Parquet part of ``frame``, cast to ``target`` when given."""
        table = self._conform(self._to_table(frame), target)
        index = self._index_columns(table)
        range_index = self._range_index(frame, index)
        options: dict[str, Any] = {}
        if range_index is not None and not any(pa.types.is_nested(f.type) for f in table.schema):
            # An arithmetic sequence: delta encoding stores it in a few bytes, where the
            # default (a dictionary tried and given up, then plain) costs 8 bytes a row.
            # Other columns keep the default dictionary (named here by top-level name,
            # which is their Parquet path only when no column is nested).
            options = {
                "use_dictionary": [n for n in table.column_names if n != index[0]],
                "column_encoding": {index[0]: "DELTA_BINARY_PACKED"},
            }
        try:
            key, size = blobs.put_with(lambda out: pq.write_table(table, out, **options))
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            # Nothing was stored: the temporary file is gone with the failed write.
            raise InvalidData(f"the DataFrame cannot be stored as Parquet: {exc}") from exc
        schema = table.schema
        meta = {
            "schema": _encode_schema(schema),
            "fingerprint": _fingerprint(schema),
            "columns": [[f.name, str(f.type)] for f in schema if f.name not in index],
            "index": index,
            "categories": self._categories(frame),
        }
        if range_index is not None:
            meta["range_index"] = range_index
        return Stored(parts=[PartRecord(blob=key, size=size, rows=table.num_rows)], kind_meta=meta)

    def _put_chunks(self, chunks: FrameChunks, blobs: Blobs, target: pa.Schema | None) -> Stored:
        """One part per chunk, each cast to ``target`` (the first chunk's schema if None)."""
        parts: list[PartRecord] = []
        meta: dict[str, Any] | None = None
        for frame in chunks.make():
            frame = self._frame(frame)
            if len(frame) == 0 and meta is not None:
                continue
            stored = self._write(frame, blobs, target)
            target = _decode_schema(stored.kind_meta["schema"])
            parts += stored.parts
            meta = stored.kind_meta if meta is None else self._merged(meta, stored.kind_meta)
        if meta is None:
            if chunks.empty is None:
                raise InvalidData("the chunks were none: there is no DataFrame to store")
            return self._write(self._frame(chunks.empty()), blobs, target)
        if len(parts) > 1:
            meta.pop("range_index", None)  # the parts' indexes concatenate: no range any more
        return Stored(parts=parts, kind_meta=meta)

    @staticmethod
    def _merged(meta: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
        categories = _merge_categories(meta.get("categories") or {}, new.get("categories") or {})
        return {**meta, "categories": categories}

    @staticmethod
    def _range_index(frame: Any, index: Sequence[str]) -> dict[str, Any] | None:
        """``start``, ``stop``, ``step``, ``name`` of a RangeIndex (still stored as a column).

        A read of the whole part rebuilds the RangeIndex from these instead of
        reading the column: the class survives and the read is one column lighter.
        """
        import pandas as pd

        found = frame.index
        if not isinstance(found, pd.RangeIndex) or len(index) != 1:
            return None
        if found.name is not None and (not isinstance(found.name, str) or found.name != index[0]):
            return None
        return {"start": found.start, "stop": found.stop, "step": found.step, "name": found.name}

    def extend(self, stored: Stored, base: RevisionRecord | None) -> dict[str, Any]:
        if base is None:
            return stored.kind_meta
        if base.kind_meta.get("fingerprint") != stored.kind_meta["fingerprint"]:
            raise InvalidData(
                "the dataset's schema changed while appending (another writer replaced it); "
                "put again"
            )
        meta = {
            **stored.kind_meta,
            "categories": _merge_categories(
                base.kind_meta.get("categories") or {}, stored.kind_meta["categories"]
            ),
        }
        meta.pop("range_index", None)  # the parts' indexes concatenate: no range any more
        return meta

    # -- get ---------------------------------------------------------------

    def get(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> Any:
        return self.from_table(self.read_table(blobs, parts, kind_meta, query=query), kind_meta)

    @staticmethod
    def _target(kind_meta: Mapping[str, Any], query: ReadQuery) -> tuple[pa.Schema, pa.Schema]:
        """The stored schema, and the one to read: the columns asked for, then the index."""
        schema = _decode_schema(kind_meta["schema"])
        index = list(kind_meta.get("index", []))
        data_columns = [name for name, _ in kind_meta["columns"]]
        chosen = select_columns(data_columns, query.columns, exclude=query.exclude)
        fields = [f for f in schema if f.name in index or chosen is None or f.name in chosen]
        if chosen is not None:
            order = {name: i for i, name in enumerate(chosen)}
            fields.sort(key=lambda f: (f.name in index, order.get(f.name, 0)))
        return schema, pa.schema(fields, metadata=schema.metadata)

    def read_table(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> pa.Table:
        """The rows asked for as an Arrow table (index columns included)."""
        query = query or ReadQuery()
        schema, target = self._target(kind_meta, query)
        if query.filters:
            return FilteredRead(
                blobs, parts, schema, target, query.filters, offset=query.offset, limit=query.limit
            ).table()
        if query.limit is not None or query.offset:
            batches = slice_parts(blobs, parts, target, offset=query.offset, limit=query.limit)
            return pa.Table.from_batches(list(batches), schema=target)
        index = list(kind_meta.get("index", []))
        spec = kind_meta.get("range_index")
        if (
            spec is not None
            and len(parts) == 1
            and len(index) == 1
            and (parts[0].rows == len(range(spec["start"], spec["stop"], spec["step"])))
        ):
            target = _without_index(target, index[0], spec)
        return read_parts(blobs, parts, target)

    def stream(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
        batch_rows: int = BATCH_ROWS,
    ) -> TableStream:
        """The rows asked for as batches, read as they are consumed (see :class:`TableStream`)."""
        query = query or ReadQuery()
        schema, target = self._target(kind_meta, query)
        index = list(kind_meta.get("index", []))
        data = [f.name for f in target if f.name not in index]
        if query.filters:
            read = FilteredRead(
                blobs, parts, schema, target, query.filters, offset=query.offset, limit=query.limit
            )
            return TableStream(target, data, read.batches(batch_rows), read.count)
        total = sum(self._rows(blobs, p) for p in parts)
        rows = max(0, total - query.offset)
        if query.limit is not None:
            rows = min(rows, query.limit)
        batches = slice_parts(
            blobs, parts, target, offset=query.offset, limit=query.limit, batch_rows=batch_rows
        )
        return TableStream(target, data, batches, lambda: rows)

    @staticmethod
    def _rows(blobs: Blobs, part: PartRecord) -> int:
        if part.rows is not None:
            return part.rows
        with pq.ParquetFile(blobs.open(part.blob)) as file:
            return file.metadata.num_rows

    def lazy_source(
        self, blobs: Blobs, parts: Sequence[PartRecord], kind_meta: Mapping[str, Any]
    ) -> Any:
        """The Parquet parts, read in place by DuckDB (see :class:`omops.lazy.sources.ParquetSource`)."""
        from omops.lazy.sources import ParquetSource

        return ParquetSource(blobs, parts, kind_meta, DataFramePlugin().from_table)

    def from_table(self, table: pa.Table, kind_meta: Mapping[str, Any]) -> Any:
        """A new DataFrame from a table :meth:`read_table` gave (which stays unchanged)."""
        import pandas as pd

        # Threads pay for large tables only: for a small one they double the time.
        frame = table.to_pandas(use_threads=table.nbytes > _THREADED_BYTES)
        for name, spec in (kind_meta.get("categories") or {}).items():
            if spec is None or name not in frame.columns:
                continue
            if isinstance(frame[name].dtype, pd.CategoricalDtype):
                frame[name] = frame[name].cat.set_categories(
                    spec["values"], ordered=spec["ordered"]
                )
        return frame

    def safe_copy(self, obj: Any) -> Any | None:
        """A deep copy, unless a column holds Python objects (dicts, lists: shared by it)."""
        dtypes = [obj.dtype] if getattr(obj, "ndim", 2) == 1 else list(obj.dtypes)
        if any(isinstance(d, np.dtype) and d.kind == "O" for d in dtypes):
            return None
        return obj.copy(deep=True)

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "columns": [name for name, _ in kind_meta["columns"]],
            "dtypes": dict(map(tuple, kind_meta["columns"])),
            "index": kind_meta.get("index", []),
        }


class SeriesPlugin(DataFramePlugin):
    """A pandas Series, stored as a one-column DataFrame (column = its name or ``value``)."""

    kind = "pandas.series"

    @classmethod
    def supports(cls, obj: Any) -> bool:
        pandas = sys.modules.get("pandas")
        return pandas is not None and isinstance(obj, pandas.Series)

    def _frame(self, obj: Any) -> Any:
        import pandas as pd

        if not isinstance(obj, pd.Series):
            raise InvalidData(f"kind {self.kind!r} needs a pandas Series, got {type(obj).__name__}")
        column = str(obj.name) if obj.name is not None else _SERIES_COLUMN
        return obj.to_frame(name=column)

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        stored = super().put(obj, blobs, base=base)
        name = obj.name
        plain = name is None or isinstance(name, (str, int, float, bool))
        stored.kind_meta["series_name"] = name if plain else str(name)
        return stored

    def from_table(self, table: pa.Table, kind_meta: Mapping[str, Any]) -> Any:
        frame = super().from_table(table, kind_meta)
        series = frame.iloc[:, 0]
        series.name = kind_meta.get("series_name")
        return series
