"""``pandas.dataframe`` and ``pandas.series``: Parquet parts, filtered in DuckDB.

Each put writes one Parquet part; an append revision reads as all parts of
the revision it extends plus its own. The index is always stored as columns,
so it survives filters and appends. Index, dtypes (time zones, categoricals,
nullable types) round-trip through the Arrow schema and pandas metadata kept
in ``kind_meta``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData, InvalidQuery
from omops.plugins.base import Plugin, ReadQuery, Stored
from omops.query import compile_filters, select_columns

__all__ = ["DataFramePlugin", "SeriesPlugin"]

_MAX_CATEGORIES = 100_000
_SERIES_COLUMN = "value"


def _encode_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


@functools.lru_cache(maxsize=256)
def _decode_schema(text: str) -> pa.Schema:
    # Cached: every get of a dataset decodes the same text (schemas are immutable).
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def _fingerprint(schema: pa.Schema) -> str:
    text = schema.remove_metadata().to_string().encode()
    return hashlib.sha1(text, usedforsecurity=False).hexdigest()


def _as_schema(table: pa.Table, target: pa.Schema) -> pa.Table:
    """``table`` under ``target``'s names and types, matching columns by position."""
    columns = [
        c.cast(f.type) if c.type != f.type else c
        for c, f in zip(table.columns, target, strict=True)
    ]
    return pa.Table.from_arrays(columns, schema=target)


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


def _aliased(
    filters: Mapping[str, Any], alias: Mapping[str, str], columns: Mapping[str, str]
) -> dict[str, Any]:
    """``filters`` with each column name (``col`` or ``col__op``) replaced by its alias."""
    out = {}
    for key, value in filters.items():
        if key in columns:
            out[alias[key]] = value
        else:
            column, _, op = key.rpartition("__")
            out[f"{alias[column]}__{op}"] = value
    return out


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


class _DuckDB:
    """DuckDB connections of this process, made once and reused; threads take cursors.

    Local blobs share one connection. Each other fsspec filesystem instance gets
    its own, with the filesystem registered: DuckDB takes one filesystem per
    protocol and connection, so two ``s3://`` stores with different credentials
    could not share one. (fsspec reuses instances, so stores on one filesystem,
    e.g. all ``memory://`` ones, share a connection.)
    """

    def __init__(self) -> None:
        self._conns: dict[int, tuple[Any, Any]] = {}
        self._pid: int | None = None
        self._lock = threading.Lock()

    def cursor(self, blobs: Blobs):  # noqa: ANN201
        import duckdb

        key = 0 if blobs.is_local else id(blobs.fs)
        with self._lock:
            if self._pid != os.getpid():  # never use a connection inherited over fork
                self._conns, self._pid = {}, os.getpid()
            found = self._conns.get(key)
            if found is None:
                conn = duckdb.connect(config={"threads": max(os.cpu_count() or 1, 1)})
                if not blobs.is_local:
                    conn.register_filesystem(blobs.fs)
                # The filesystem is kept with its connection so that its id stays unique.
                found = self._conns[key] = (conn, blobs.fs)
            return found[0].cursor()


_DUCKDB = _DuckDB()


class DataFramePlugin(Plugin):
    """A pandas DataFrame as Parquet parts; supports append, filters and column selection."""

    kind = "pandas.dataframe"
    caches_reads = True
    stores = ("datasets",)
    appendable = True

    @classmethod
    def supports(cls, obj: Any) -> bool:
        pandas = sys.modules.get("pandas")
        return pandas is not None and isinstance(obj, pandas.DataFrame)

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
        if frame.columns.has_duplicates:
            dupes = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
            raise InvalidData(f"duplicate column names {dupes}; rename them before storing")
        try:
            return pa.Table.from_pandas(frame, preserve_index=True)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise InvalidData(
                f"cannot convert the DataFrame to Arrow: {exc}. Columns must hold one type "
                "each; store arbitrary objects with kind='python.pickle'"
            ) from exc

    @staticmethod
    def _index_columns(table: pa.Table) -> list[str]:
        meta = table.schema.pandas_metadata or {}
        return [c for c in meta.get("index_columns", []) if isinstance(c, str)]

    def _conform(self, table: pa.Table, base: RevisionRecord | None) -> pa.Table:
        """Cast an appended part to the schema of the revision it extends."""
        if base is None:
            return table
        target = _decode_schema(base.kind_meta["schema"])
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
        frame = self._frame(obj)
        table = self._conform(self._to_table(frame), base)
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
        key, size = blobs.put_with(lambda out: pq.write_table(table, out, **options))
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
        query = query or ReadQuery()
        schema = _decode_schema(kind_meta["schema"])
        index = list(kind_meta.get("index", []))
        data_columns = [name for name, _ in kind_meta["columns"]]
        chosen = select_columns(data_columns, query.columns, exclude=query.exclude)
        fields = [f for f in schema if f.name in index or chosen is None or f.name in chosen]
        if chosen is not None:
            order = {name: i for i, name in enumerate(chosen)}
            fields.sort(key=lambda f: (f.name in index, order.get(f.name, 0)))
        target = pa.schema(fields, metadata=schema.metadata)
        if query.filters:
            table = self._read_filtered(blobs, parts, schema, target, query.filters)
        else:
            spec = kind_meta.get("range_index")
            if (
                spec is not None
                and len(parts) == 1
                and len(index) == 1
                and (parts[0].rows == len(range(spec["start"], spec["stop"], spec["step"])))
            ):
                target = _without_index(target, index[0], spec)
            table = self._read_all(blobs, parts, target)
        return self._to_pandas(table, kind_meta)

    def _read_all(self, blobs: Blobs, parts: Sequence[PartRecord], target: pa.Schema) -> pa.Table:
        if not parts:
            return target.empty_table()
        names = target.names
        local = blobs.is_local
        filesystem = None if local else blobs.fs
        tables = []
        for part in parts:
            # Blobs never change once written, so a local one can be memory-mapped:
            # pages come straight from the page cache, without a read copy. One file
            # through ParquetFile, not read_table: the same read without building a
            # dataset, ~0.6 ms less per part (most of a small frame's read).
            with pq.ParquetFile(
                blobs.path(part.blob),
                filesystem=filesystem,
                memory_map=local,
                pre_buffer=not local,
            ) as file:
                read = file.read(columns=names, use_pandas_metadata=False)
            tables.append(_as_schema(read, target))
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def _read_filtered(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        schema: pa.Schema,
        target: pa.Schema,
        filters: Mapping[str, Any],
    ) -> pa.Table:
        import duckdb

        if not parts:
            return target.empty_table()
        # Filters see data columns and named index levels, not pandas' __index_level_N__.
        types = {f.name: str(f.type) for f in schema if not f.name.startswith("__index_level_")}
        compile_filters(filters, types)  # checks names, operators and values, in user terms
        # DuckDB matches identifiers case-insensitively ("A" and "a" would clash), so
        # the SQL names every column by position: c0, c1 ... in the files' order.
        alias = {name: f"c{i}" for i, name in enumerate(schema.names)}
        predicate = compile_filters(
            _aliased(filters, alias, types), {alias[name]: kind for name, kind in types.items()}
        )
        select = ", ".join(alias[name] for name in target.names)
        sql = (
            f"SELECT {select} FROM read_parquet($files) AS t({', '.join(alias.values())})"
            f" WHERE {predicate.sql}"
        )
        params = {**predicate.params, "files": [blobs.url_of(p.blob) for p in parts]}
        cursor = _DUCKDB.cursor(blobs)
        try:
            result = cursor.sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:
            raise InvalidQuery(f"filter {dict(filters)!r} cannot be applied: {exc}") from exc
        finally:
            cursor.close()
        return _as_schema(result, target)

    def _to_pandas(self, table: pa.Table, kind_meta: Mapping[str, Any]) -> Any:
        import pandas as pd

        frame = table.to_pandas()
        for name, spec in (kind_meta.get("categories") or {}).items():
            if spec is None or name not in frame.columns:
                continue
            if isinstance(frame[name].dtype, pd.CategoricalDtype):
                frame[name] = frame[name].cat.set_categories(
                    spec["values"], ordered=spec["ordered"]
                )
        return frame

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

    def get(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
    ) -> Any:
        frame = super().get(blobs, parts, kind_meta, query=query)
        series = frame.iloc[:, 0]
        series.name = kind_meta.get("series_name")
        return series
