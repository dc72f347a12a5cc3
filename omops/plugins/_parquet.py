"""Reading Parquet parts: whole, sliced (``offset``/``limit``) or filtered in DuckDB.

The pandas plugin's readers. Everything here yields or returns Arrow data in
a target schema (the stored one, less the columns not asked for), so callers
decide whether it becomes pandas objects (``get``) or a stream of batches
(the REST server). A slice opens only the parts and row groups it needs; a
filtered read runs in DuckDB with ``LIMIT``/``OFFSET`` and streams its result.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from omops.blobs import Blobs
from omops.catalog import PartRecord
from omops.errors import InvalidQuery
from omops.query import compile_filters

__all__ = ["BATCH_ROWS", "FilteredRead", "conform", "read_parts", "slice_parts"]

#: Rows per batch of a streamed read.
BATCH_ROWS = 65_536
_ALIAS = re.compile(r'"?\bc(\d+)\b"?')


def conform(data: Any, target: pa.Schema) -> Any:
    """A table or batch under ``target``'s names and types, matching columns by position."""
    columns = [
        c.cast(f.type) if c.type != f.type else c for c, f in zip(data.columns, target, strict=True)
    ]
    if isinstance(data, pa.RecordBatch):
        return pa.RecordBatch.from_arrays(columns, schema=target)
    return pa.Table.from_arrays(columns, schema=target)


def _open(blobs: Blobs, part: PartRecord) -> pq.ParquetFile:
    # Blobs never change once written, so a local one can be memory-mapped:
    # pages come straight from the page cache, without a read copy.
    local = blobs.is_local
    return pq.ParquetFile(
        blobs.path(part.blob),
        filesystem=None if local else blobs.fs,
        memory_map=local,
        pre_buffer=not local,
    )


def read_parts(blobs: Blobs, parts: Sequence[PartRecord], target: pa.Schema) -> pa.Table:
    """All rows of ``parts``, the columns of ``target``."""
    if not parts:
        return target.empty_table()
    tables = []
    for part in parts:
        # One file through ParquetFile, not read_table: the same read without
        # building a dataset, ~0.6 ms less per part (most of a small frame's read).
        with _open(blobs, part) as file:
            read = file.read(columns=target.names, use_pandas_metadata=False)
        tables.append(conform(read, target))
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def slice_parts(
    blobs: Blobs,
    parts: Sequence[PartRecord],
    target: pa.Schema,
    *,
    offset: int = 0,
    limit: int | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Batches of rows ``offset`` to ``offset + limit`` of ``parts``, read part by part.

    Parts and row groups before ``offset`` are skipped unread (their row
    counts are in the catalog and the Parquet footer); reading stops at
    ``limit``. At most one row group is decoded at a time.
    """
    skip, left = offset, limit
    for part in parts:
        if left == 0:
            return
        if part.rows is not None and skip >= part.rows:
            skip -= part.rows
            continue
        with _open(blobs, part) as file:
            groups = []
            for i in range(file.num_row_groups):
                size = file.metadata.row_group(i).num_rows
                if skip >= size and not groups:
                    skip -= size
                else:
                    groups.append(i)
            if not groups:
                continue
            batches = file.iter_batches(
                batch_size=batch_rows,
                row_groups=groups,
                columns=target.names,
                use_pandas_metadata=False,
            )
            for batch in batches:
                if skip:
                    if skip >= batch.num_rows:
                        skip -= batch.num_rows
                        continue
                    batch, skip = batch.slice(skip), 0
                if left is not None:
                    batch = batch.slice(0, left)
                    left -= batch.num_rows
                yield conform(batch, target)
                if left == 0:
                    return


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


class _DuckDB:
    """DuckDB connections of this process, made once and reused; threads take cursors.

    Local blobs share one connection. Each other fsspec filesystem instance gets
    its own, with the filesystem registered: DuckDB takes one filesystem per
    protocol and connection, so two ``s3://`` stores with different credentials
    could not share one. (fsspec reuses instances, so stores on one filesystem,
    e.g. all ``memory://`` ones, share a connection.) A connection is a cache
    of the process, not state: it holds nothing a reader could see.

    ``threads``: DuckDB threads per connection (default: one per core).
    """

    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads
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
                config: dict[str, Any] = {"threads": self._threads or max(os.cpu_count() or 1, 1)}
                if blobs.is_local:
                    # The OS caches local files already; DuckDB's own copy would grow
                    # with every file read, up to its memory limit.
                    config["enable_external_file_cache"] = False
                conn = duckdb.connect(config=config)
                if not blobs.is_local:
                    conn.register_filesystem(blobs.fs)
                # The filesystem is kept with its connection so that its id stays unique.
                found = self._conns[key] = (conn, blobs.fs)
            return found[0].cursor()


_DUCKDB = _DuckDB()
#: Streamed reads scan with one thread: DuckDB reads ahead about one row group per
#: thread, so one thread bounds a stream's memory (~150 MB at most, measured on
#: 1M-row groups) whatever the number of cores, and the stream's consumer (an
#: encoder, the network) is the slower side anyway.
_STREAMS = _DuckDB(threads=1)


class FilteredRead:
    """A filtered read of parts in DuckDB: SQL with bound parameters, run on demand.

    Parameters
    ----------
    blobs, parts
        Where the Parquet files are.
    schema : pyarrow.Schema
        The stored schema (all columns, in the files' order).
    target : pyarrow.Schema
        The columns to return, in order.
    filters : mapping
        ``col__op=value`` filters; checked against the schema here.
    offset, limit
        The rows of the filtered result to return.
    """

    def __init__(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        schema: pa.Schema,
        target: pa.Schema,
        filters: Mapping[str, Any],
        *,
        offset: int = 0,
        limit: int | None = None,
    ) -> None:
        self.blobs, self.target, self.filters = blobs, target, dict(filters)
        # Filters see data columns and named index levels, not pandas' __index_level_N__.
        types = {f.name: str(f.type) for f in schema if not f.name.startswith("__index_level_")}
        compile_filters(filters, types)  # checks names, operators and values, in user terms
        # DuckDB matches identifiers case-insensitively ("A" and "a" would clash), so
        # the SQL names every column by position: c0, c1 ... in the files' order.
        alias = {name: f"c{i}" for i, name in enumerate(schema.names)}
        self._names = {f"c{i}": name for i, name in enumerate(schema.names)}
        predicate = compile_filters(
            _aliased(filters, alias, types), {alias[name]: kind for name, kind in types.items()}
        )
        source = (
            f"FROM read_parquet($files) AS t({', '.join(alias.values())}) WHERE {predicate.sql}"
        )
        select = ", ".join(alias[name] for name in target.names)
        window = (f" LIMIT {int(limit)}" if limit is not None else "") + (
            f" OFFSET {int(offset)}" if offset else ""
        )
        self._sql = f"SELECT {select} {source}{window}"
        self._count_sql = f"SELECT count(*) FROM (SELECT 1 {source}{window})"
        self._params = {**predicate.params, "files": [blobs.url_of(p.blob) for p in parts]}
        self._empty = not parts

    def table(self) -> pa.Table:
        """The whole result."""
        if self._empty:
            return self.target.empty_table()
        cursor = _DUCKDB.cursor(self.blobs)
        try:
            result = self._run(cursor, self._sql).to_arrow_table()
        except Exception as exc:
            raise self._error(exc) from None
        finally:
            cursor.close()
        return conform(result, self.target)

    def count(self) -> int:
        """How many rows the read returns (one more scan of the filtered columns)."""
        if self._empty:
            return 0
        cursor = _DUCKDB.cursor(self.blobs)
        try:
            return int(self._run(cursor, self._count_sql).fetchall()[0][0])
        except Exception as exc:
            raise self._error(exc) from None
        finally:
            cursor.close()

    def batches(self, batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """The result as a stream of batches; DuckDB runs ahead by a bounded buffer."""
        if self._empty:
            return
        cursor = _STREAMS.cursor(self.blobs)
        try:
            try:
                reader = self._run(cursor, self._sql).to_arrow_reader(batch_rows)
                for batch in reader:
                    yield conform(batch, self.target)
            except Exception as exc:
                raise self._error(exc) from None
        finally:
            cursor.close()

    def _run(self, cursor: Any, sql: str) -> Any:
        return cursor.sql(sql, params=self._params)

    def _error(self, exc: Exception) -> Exception:
        """DuckDB's error in the user's terms: no SQL, no column aliases."""
        import duckdb

        if not isinstance(exc, duckdb.Error):
            return exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        text = _ALIAS.sub(lambda m: repr(self._names.get(f"c{m[1]}", m[0])), first)
        if isinstance(exc, (duckdb.IOException, duckdb.InvalidInputException)):
            # A missing or unreadable file: the repository names the object and the blob.
            return OSError(text)
        return InvalidQuery(
            f"filters {self.filters!r} cannot be applied to the stored columns: {text}; "
            "give each filter a value of its column's type"
        )
