"""Where a lazy frame's rows come from: a DuckDB relation, and how its rows become pandas.

A :class:`Source` is the one thing a kind of data must provide to be read
lazily: its Arrow schema (the index columns included), the fsspec
filesystems DuckDB must be able to read, a DuckDB relation over the rows
(made on the cursor a query runs on), and how a table of (some of) its
columns becomes a pandas object. A plugin makes the source of a stored
object (:meth:`omops.plugins.base.Plugin.lazy_source`): Parquet parts in the
blob store here; a SQL query or a file at a URL are as small. Everything a
:class:`~omops.lazy.LazyFrame` does is SQL over such relations.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from omops.errors import InvalidData

if TYPE_CHECKING:
    from omops.blobs import Blobs
    from omops.catalog import PartRecord
    from omops.lazy.frame import LazyFrame

__all__ = [
    "ArrowSource",
    "ExternalSource",
    "ParquetSource",
    "Source",
    "TransformSource",
    "arrow_frame",
]

_INDEX_LEVEL = "__index_level_"


def arrow_frame(table: pa.Table, index: Sequence[str]) -> Any:
    """A DataFrame from ``table``, its ``index`` columns as the index (unnamed ones unnamed).

    The index is built from its columns directly: ``set_index`` would copy the frame.
    """
    import pandas as pd

    present = [name for name in index if name in table.column_names]
    frame = table.drop_columns(present).replace_schema_metadata(None).to_pandas()
    if present:
        names = [None if n.startswith(_INDEX_LEVEL) else n for n in present]
        levels = [table.column(n).to_pandas() for n in present]
        frame.index = (
            pd.Index(levels[0], name=names[0])
            if len(levels) == 1
            else pd.MultiIndex.from_arrays(levels, names=names)
        )
    return frame


class Source:
    """The rows of a lazy frame, as DuckDB reads them.

    Attributes
    ----------
    schema : pyarrow.Schema
        The columns of :meth:`relation`, in order, index columns included.
    index : list of str
        The columns that are the pandas index.
    filesystems : list
        fsspec filesystems DuckDB must have registered to read the rows
        (none for local files and data in memory).
    rows : int or None
        The number of rows, when known without reading them.
    """

    schema: pa.Schema
    index: list[str]
    filesystems: list[Any] = []
    rows: int | None = None
    #: What made the last read of a Python-made relation fail: DuckDB wraps it in
    #: its own error, and the lazy frame raises this one instead.
    failure: BaseException | None = None

    def relation(self, cursor: Any) -> Any:
        """A DuckDB relation over the rows, on ``cursor``, its columns in ``schema``'s order."""
        raise NotImplementedError

    def frame(self, table: pa.Table) -> Any:
        """A pandas DataFrame from rows of this source (any of its columns, by name)."""
        return arrow_frame(table, self.index)


class ParquetSource(Source):
    """A stored DataFrame's Parquet parts in the blob store, read where they are.

    Parameters
    ----------
    blobs : Blobs
    parts : list of PartRecord
        The parts of the revision, in order.
    kind_meta : dict
        The revision's ``kind_meta`` (schema, index, categories).
    from_table : callable
        The plugin's ``from_table(table, kind_meta)``: restores dtypes and index.
    """

    def __init__(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        from_table: Callable[[pa.Table, Mapping[str, Any]], Any],
    ) -> None:
        from omops.plugins.pandas import _decode_schema

        self.blobs, self.parts, self.kind_meta = blobs, list(parts), kind_meta
        self.schema = _decode_schema(kind_meta["schema"])
        self.index = list(kind_meta.get("index", []))
        self.filesystems = [] if blobs.is_local else [blobs.fs]
        known = [p.rows for p in self.parts]
        self.rows = None if None in known else sum(known)  # type: ignore[arg-type]
        self._from_table = from_table

    def relation(self, cursor: Any) -> Any:
        if not self.parts:
            return cursor.from_arrow(self.schema.empty_table())
        return cursor.read_parquet([self.blobs.url_of(p.blob) for p in self.parts])

    def frame(self, table: pa.Table) -> Any:
        """Exactly what ``om.datasets.get`` gives for these columns: dtypes, categories, index."""
        from omops.plugins._parquet import conform

        target = pa.schema(
            [self.schema.field(name) for name in table.column_names], metadata=self.schema.metadata
        )
        return self._from_table(conform(table, target), self.kind_meta)


class ArrowSource(Source):
    """Rows already in memory: a pandas DataFrame or an Arrow table (e.g. a merge's other side)."""

    def __init__(self, data: Any) -> None:
        if isinstance(data, pa.Table):
            table = data
        else:
            table = _table_of(data)
        meta = table.schema.pandas_metadata or {}
        self.index = [c for c in meta.get("index_columns", []) if isinstance(c, str)]
        self.table, self.schema, self.rows = table, table.schema, table.num_rows

    def relation(self, cursor: Any) -> Any:
        return cursor.from_arrow(self.table)


class ExternalSource(Source):
    """Rows read where they live at query time: a URL's file or a SQL database's rows.

    Parameters
    ----------
    make : callable
        Returns the rows as Arrow, unfiltered: a ``pyarrow.dataset.Dataset`` or
        ``pyarrow.Table`` (a URL's file) or a ``pyarrow.RecordBatchReader`` (a
        SQL result, read once). Every query after the first calls ``make``
        again: the file is opened again, the database runs the statement
        again, so each query sees the data as it is then.
        See :func:`omops.plugins.external.arrow_source`.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        first = make()  # the schema, and the rows of the first query
        self.schema = first.schema
        self.index = []
        self.filesystems = []  # Arrow reads the file or the database itself
        self._first: Any = first

    def relation(self, cursor: Any) -> Any:
        data, self._first = self._first, None
        return cursor.from_arrow(self._make() if data is None else data)

    def frame(self, table: pa.Table) -> Any:
        return table.replace_schema_metadata(None).to_pandas()


def _table_of(frame: Any) -> pa.Table:
    import pandas as pd

    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    if not isinstance(frame, pd.DataFrame):
        raise InvalidData(
            f"expected a pandas DataFrame or a LazyFrame, got {type(frame).__name__}; "
            "read stored data lazily with om.datasets.getl(name)"
        )
    try:
        return pa.Table.from_pandas(frame, preserve_index=True)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise InvalidData(f"the DataFrame cannot become an Arrow table: {exc}") from exc


class TransformSource(Source):
    """The rows ``fn`` makes of each chunk of another lazy frame, made while they are read.

    ``fn`` takes a DataFrame of up to ``chunksize`` rows (index restored, as
    ``om.datasets.get`` gives it) and returns a DataFrame (or a Series, or
    None after changing the chunk in place). Its first chunk's result fixes
    the schema; later results are cast to it.
    """

    def __init__(self, parent: LazyFrame, fn: Callable[[Any], Any], chunksize: int) -> None:
        self.parent, self.fn, self.chunksize = parent, fn, chunksize
        self.filesystems = list(parent._filesystems())
        first = next(self.frames(limit=1), None)
        if first is None:  # no rows: the schema of fn applied to no rows
            first = self._apply(parent._empty_frame(), 0)
        self.schema = _table_of(first).schema
        meta = self.schema.pandas_metadata or {}
        self.index = [c for c in meta.get("index_columns", []) if isinstance(c, str)]

    def _apply(self, chunk: Any, number: int) -> Any:
        """``fn(chunk)`` as a DataFrame."""
        import pandas as pd

        out = self.fn(chunk)
        out = chunk if out is None else out
        if isinstance(out, pd.Series):
            out = out.to_frame()
        if not isinstance(out, pd.DataFrame):
            raise InvalidData(
                f"transform: the function must return a DataFrame (or change the chunk in "
                f"place and return None), got {type(out).__name__} for chunk {number}"
            )
        return out

    def frames(self, limit: int | None = None) -> Iterator[Any]:
        """Each chunk's result, as ``fn`` returned it (a DataFrame with the first's columns)."""
        chunks = self.parent.iterchunks(self.chunksize)
        first: list[Any] | None = None
        try:
            for number, chunk in enumerate(itertools.islice(chunks, limit)):
                frame = self._apply(chunk, number)
                names = [*map(str, frame.columns), *map(str, frame.index.names)]
                if first is None:
                    first = names
                elif names != first:
                    raise InvalidData(
                        f"transform: chunk {number} has columns and index {names}, the first "
                        f"chunk had {first}; return the same columns for every chunk"
                    )
                yield frame
        finally:
            chunks.close()  # now, not when an error's traceback lets go of it

    def tables(self) -> Iterator[pa.Table]:
        """Each chunk's result as an Arrow table, cast to the first one's schema."""
        for number, frame in enumerate(self.frames()):
            yield _cast(_table_of(frame), self.schema, number)

    def relation(self, cursor: Any) -> Any:
        self.failure = None

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                for table in self.tables():
                    yield from table.to_batches()
            except Exception as exc:
                self.failure = exc
                raise

        reader = pa.RecordBatchReader.from_batches(self.schema, batches())
        return cursor.from_arrow(reader)


def _cast(table: pa.Table, target: pa.Schema, number: int) -> pa.Table:
    if table.schema.equals(target, check_metadata=False):
        return table
    if table.schema.names != target.names:
        raise InvalidData(
            f"transform: chunk {number} has columns {table.schema.names}, the first chunk "
            f"had {target.names}; return the same columns for every chunk"
        )
    try:
        return table.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise InvalidData(
            f"transform: chunk {number}'s column types differ from the first chunk's and "
            f"cannot be cast to them ({exc}); give every chunk the same types (e.g. astype)"
        ) from exc
