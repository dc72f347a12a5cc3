"""``LazyFrame``: a DataFrame that stays where it is until asked for, computed in DuckDB.

``om.datasets.getl(name)`` gives one over the stored Parquet parts; every
operation (filters, columns, sort, groupby, merge) returns a new LazyFrame
and runs nothing. Results come back whole (``value``), in chunks
(``iterchunks``), or are written part by part as a new dataset
(``persist``), so a frame many times larger than memory can be filtered,
grouped, merged and transformed: DuckDB streams what it can and spills the
rest (joins, sorts, large groupings) to disk under ``OMOPS_MEMORY_LIMIT``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from omops.errors import InvalidData, InvalidQuery
from omops.lazy._engine import Engine
from omops.lazy._plan import (
    Aggregate,
    Compiler,
    Join,
    Limit,
    Node,
    Order,
    Project,
    Scan,
    Where,
)
from omops.lazy._running import Running, joined, sliced
from omops.lazy.sources import ArrowSource, ParquetSource, Source, TransformSource, arrow_frame

if TYPE_CHECKING:
    from omops.metadata import Metadata
    from omops.repository import Repository

__all__ = ["LazyFrame", "LazyGroupBy"]

#: Rows per part that persist() writes.
PART_ROWS = 1_000_000
#: Rows per chunk a transform gets by default.
CHUNK_ROWS = 100_000


class LazyFrame:
    """A lazily computed DataFrame over a DuckDB relation.

    Made by ``om.datasets.getl(name)``; nothing is read until a result is
    asked for (:attr:`value`, :meth:`iterchunks`, :meth:`persist`, ``len()``).

    Examples
    --------
    >>> import pandas as pd, omops, tempfile
    >>> om = omops.Omega(home=tempfile.mkdtemp())
    >>> sales = pd.DataFrame({'region': ['eu', 'us', 'eu'], 'customer': ['a', 'b', 'a'],
    ...                       'amount': [10.0, 20.0, 5.0]})
    >>> _ = om.datasets.put(sales, 'sales')
    >>> mdf = om.datasets.getl('sales')
    >>> mdf.query(region='eu').groupby('customer').agg(total=('amount', 'sum')).value
              total
    customer
    a          15.0
    >>> len(mdf), mdf.columns
    (3, ['region', 'customer', 'amount'])
    >>> def double(df):
    ...     df['amount2'] = df['amount'] * 2
    >>> mdf.transform(double, chunksize=2).persist('doubled').rows
    3
    >>> om.datasets.get('doubled')['amount2'].tolist()
    [20.0, 40.0, 10.0]
    """

    def __init__(
        self,
        node: Node,
        *,
        engine: Engine,
        repository: Repository | None = None,
        series: bool = False,
    ) -> None:
        self._node, self._engine, self._repository = node, engine, repository
        self._series = series

    @classmethod
    def from_source(
        cls, source: Source, *, engine: Engine, repository: Repository | None = None
    ) -> LazyFrame:
        """A lazy frame over all rows of ``source`` (how ``getl`` makes one)."""
        return cls(Scan(data=source), engine=engine, repository=repository)

    def _new(self, node: Node, *, series: bool = False) -> LazyFrame:
        return LazyFrame(node, engine=self._engine, repository=self._repository, series=series)

    def __repr__(self) -> str:
        kind = "series" if self._series else "columns"
        return f"<LazyFrame {kind}={self.columns!r} index={self.index_names!r}>"

    # -- what it holds -------------------------------------------------------

    @property
    def columns(self) -> list[str]:
        """The data columns (not the index), in order."""
        return self._node.data_names()

    @property
    def index_names(self) -> list[str]:
        """The columns that become the index (``__index_level_N__``: an unnamed level)."""
        return [c.name for c in self._node.columns if c.index]

    @property
    def dtypes(self) -> dict[str, str]:
        """Each data column's Arrow type, as text."""
        return {c.name: str(c.type) for c in self._node.columns if not c.index}

    # -- operations that return a lazy frame ---------------------------------

    def query(self, filters: Mapping[str, Any] | None = None, /, **kwfilters: Any) -> LazyFrame:
        """Rows matching filters, with the grammar of ``om.datasets.get``.

        ``col=value`` or ``col__op=value`` (eq, ne, lt, lte, gt, gte, in, nin,
        between, contains, startswith, endswith, isnull, notnull), AND-ed;
        ``filters`` is a dict for columns named like ``filters``. Columns,
        operators and values are checked now.
        """
        merged = {**(filters or {}), **kwfilters}
        if not merged:
            return self
        return self._new(Where(child=self._node, filters=merged), series=self._series)

    def __getitem__(self, columns: str | Sequence[str]) -> LazyFrame:
        """Some columns (a list), or one column as a series (a name); the index stays."""
        if isinstance(columns, str):
            return self._new(self._project([columns]), series=True)
        if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
            raise InvalidQuery(
                f"select columns with a list of names, e.g. mdf[['a', 'b']], got {columns!r}"
            )
        return self._new(self._project(list(columns)))

    def _project(self, names: Sequence[str]) -> Node:
        data = self.columns
        unknown = [n for n in names if n not in data]
        if unknown:
            raise InvalidQuery(f"unknown column(s) {unknown}; columns are {', '.join(data)}")
        wanted = [self._node.position(n) for n in dict.fromkeys(names)]
        index = [i for i, c in enumerate(self._node.columns) if c.index]
        return Project(child=self._node, positions=tuple(wanted + index))

    def sort(self, by: str | Sequence[str], ascending: bool | Sequence[bool] = True) -> LazyFrame:
        """Rows sorted by ``by`` (missing values last), as ``DataFrame.sort_values``."""
        names = [by] if isinstance(by, str) else list(by)
        ups = [ascending] * len(names) if isinstance(ascending, bool) else list(ascending)
        if not names or len(ups) != len(names):
            raise InvalidQuery(
                f"sort needs column names and one ascending flag per column, got {by!r}, "
                f"{ascending!r}"
            )
        keys = tuple((self._node.position(n), bool(up)) for n, up in zip(names, ups, strict=True))
        return self._new(Order(child=self._node, keys=keys), series=self._series)

    sort_values = sort

    def limit(self, n: int) -> LazyFrame:
        """The first ``n`` rows, lazily (see :meth:`head` for a DataFrame)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise InvalidQuery(f"the number of rows must be a whole number >= 0, got {n!r}")
        return self._new(Limit(child=self._node, count=n), series=self._series)

    def groupby(
        self, by: str | Sequence[str], *, dropna: bool = True, sort: bool = True
    ) -> LazyGroupBy:
        """Group rows by the values of ``by``; aggregate with :meth:`LazyGroupBy.agg`."""
        names = [by] if isinstance(by, str) else list(by)
        if not names:
            raise InvalidQuery("groupby needs at least one column")
        return LazyGroupBy(self, [self._node.position(n) for n in names], dropna=dropna)

    def merge(
        self,
        other: LazyFrame | Any,
        *,
        on: str | Sequence[str] | None = None,
        left_on: str | Sequence[str] | None = None,
        right_on: str | Sequence[str] | None = None,
        how: str = "inner",
        suffixes: tuple[str, str] = ("_x", "_y"),
    ) -> LazyFrame:
        """Join with another lazy frame (or a pandas DataFrame), as ``pd.merge``.

        ``how`` is inner, left, right or outer; keys are matched as pandas
        does (missing values match each other). The result has a new index
        and no defined row order: sort it when order matters.
        """
        if how not in ("inner", "left", "right", "outer"):
            raise InvalidQuery(f"how must be inner, left, right or outer, got {how!r}")
        right = other._node if isinstance(other, LazyFrame) else Scan(data=ArrowSource(other))
        if isinstance(other, LazyFrame) and other._engine is not self._engine:
            raise InvalidQuery("merge frames of the same Omega (other is read through another)")
        shared = left_on is None and right_on is None
        if shared:
            if on is None:
                common = [n for n in self.columns if n in {c.name for c in right.columns}]
                if not common:
                    raise InvalidQuery("the frames share no column to merge on; give on=")
                on = common
            left_keys = right_keys = [on] if isinstance(on, str) else list(on)
        else:
            if on is not None or left_on is None or right_on is None:
                raise InvalidQuery("give on=, or both left_on= and right_on=")
            left_keys = [left_on] if isinstance(left_on, str) else list(left_on)
            right_keys = [right_on] if isinstance(right_on, str) else list(right_on)
            if len(left_keys) != len(right_keys):
                raise InvalidQuery("left_on and right_on need the same number of columns")
        join = Join(
            left=self._node,
            right=right,
            how=how,
            left_on=tuple(self._node.position(k) for k in left_keys),
            right_on=tuple(right.position(k) for k in right_keys),
            suffixes=tuple(suffixes),  # type: ignore[arg-type]
            shared_keys=shared,
        )
        return self._new(join)

    def transform(self, fn: Callable[[Any], Any], chunksize: int = CHUNK_ROWS) -> LazyFrame:
        """``fn`` applied to each chunk of ``chunksize`` rows, while the rows are read.

        ``fn`` gets a pandas DataFrame (index restored, as ``get`` gives it)
        and returns a DataFrame, or changes the chunk in place and returns
        None. The first chunk is run now to learn the result's columns; the
        rest run when the result is read, persisted, or used by a further
        operation, a chunk at a time.
        """
        if not callable(fn):
            raise InvalidQuery(f"transform needs a function of a DataFrame, got {fn!r}")
        if not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1:
            raise InvalidQuery(f"chunksize must be a whole number of rows >= 1, got {chunksize!r}")
        return self._new(Scan(data=TransformSource(self, fn, chunksize)))

    # -- results -------------------------------------------------------------

    def __len__(self) -> int:
        known = self._node.source().rows if isinstance(self._node, Scan) else None
        if known is not None:
            return known
        compiler = Compiler()
        sql = f"SELECT count(*) FROM ({self._node.sql(compiler)}) AS t"
        with self._run(sql, compiler) as result:
            return int(result.fetchall()[0][0])

    @property
    def value(self) -> Any:
        """The whole result as a pandas DataFrame (a Series for ``mdf['col']``)."""
        return self.to_pandas()

    def to_pandas(self) -> Any:
        """The whole result as a pandas DataFrame (a Series for ``mdf['col']``)."""
        transform = self._transform()
        if transform is not None:  # the function's frames as they are, no DuckDB between
            import pandas as pd

            frames = list(transform.frames())
            return pd.concat(frames) if frames else self._empty_frame()
        compiler = Compiler()
        with self._run(self._node.sql(compiler), compiler) as result:
            table = result.to_arrow_table()
        return self._pandas(self._named(table))

    def head(self, n: int = 5) -> Any:
        """The first ``n`` rows as a pandas DataFrame (reads only those)."""
        return self.limit(n).value

    def iterchunks(self, size: int = CHUNK_ROWS) -> Iterator[Any]:
        """The result as pandas DataFrames of ``size`` rows (the last may be shorter).

        Rows are read while the chunks are consumed: about one chunk is in memory.
        """
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise InvalidQuery(f"size must be a whole number of rows >= 1, got {size!r}")
        transform = self._transform()
        if transform is not None:
            yield from sliced(transform.frames(), size)
            return
        for table in self._tables(size):
            yield self._pandas(table)

    def _transform(self) -> TransformSource | None:
        """The transform this frame is, unchanged since, or None."""
        source = self._node.source() if isinstance(self._node, Scan) else None
        return source if isinstance(source, TransformSource) else None

    def _tables(self, size: int) -> Iterator[pa.Table]:
        """The result as Arrow tables of exactly ``size`` rows, user names (last: the rest)."""
        compiler = Compiler()
        with self._run(self._node.sql(compiler), compiler, stream=True) as result:
            reader = result.to_arrow_reader(size)
            held: list[pa.RecordBatch] = []
            rows = 0
            for batch in reader:
                held.append(batch)
                rows += batch.num_rows
                while rows >= size:
                    table = pa.Table.from_batches(held, schema=reader.schema)
                    yield self._named(table.slice(0, size))
                    rest = table.slice(size)
                    held, rows = rest.to_batches(), rest.num_rows
            if rows:
                yield self._named(pa.Table.from_batches(held, schema=reader.schema))

    def persist(
        self,
        name: str,
        *,
        part_rows: int | None = None,
        attributes: Mapping[str, Any] | None = None,
        tag: str | Sequence[str] | None = None,
        into: Repository | None = None,
    ) -> Metadata:
        """Store the result as dataset ``name`` (a new revision), one part at a time.

        The result is never in memory whole: rows are written as Parquet parts
        of ``part_rows`` rows (by default 1,000,000; a transform's results as
        they come, joined while shorter than its ``chunksize``) and committed
        as one revision, which then reads like any dataset (``get``, ``getl``,
        REST). About one part is in memory at a time. ``into`` names another
        repository (``om['prod'].datasets``); by default the one it was read from.
        """
        from omops.plugins.pandas import FrameChunks

        target = into if into is not None else self._repository
        if target is None:
            raise InvalidData("this lazy frame belongs to no repository: persist(name, into=...)")
        if part_rows is not None and (
            not isinstance(part_rows, int) or isinstance(part_rows, bool) or part_rows < 1
        ):
            raise InvalidQuery(f"part_rows must be a whole number >= 1, got {part_rows!r}")
        chunks = FrameChunks(lambda: self._parts(part_rows), empty=self._empty_frame)
        return target.put(chunks, name, attributes, append=False, tag=tag)

    def _parts(self, part_rows: int | None) -> Iterator[Any]:
        source = self._transform()
        if source is not None:  # the function's frames as they are
            yield from joined(source.frames(), part_rows or source.chunksize)
            return
        yield from (self._frame(t) for t in self._tables(part_rows or PART_ROWS))

    def to_dask(self) -> Any:
        """A Dask DataFrame over the stored parts (``getl(name)``, optionally columns).

        One partition per part, read where the parts are (see
        :func:`omops.dask.dask_frame`). Other results: persist them first.
        """
        from omops.dask import dask_frame

        node = self._node
        columns = None
        if isinstance(node, Project):
            columns = [c.name for c in node.columns if not c.index]
            node = node.child
        source = node.source() if isinstance(node, Scan) else None
        if not isinstance(source, ParquetSource):
            raise InvalidQuery(
                "to_dask works on a stored dataset as getl gives it (columns may be chosen); "
                "persist this result first: mdf.persist('name'); "
                "om.datasets.getl('name').to_dask()"
            )
        if not source.parts:
            raise InvalidData("the dataset has no rows to read as a Dask DataFrame")
        return dask_frame(source.blobs, source.parts, source.kind_meta, columns=columns)

    # -- running -------------------------------------------------------------

    def _filesystems(self) -> list[Any]:
        found: list[Any] = []
        stack = [self._node]
        while stack:
            node = stack.pop()
            if isinstance(node, Scan):
                found += node.data.filesystems
            stack += [getattr(node, a) for a in ("child", "left", "right") if hasattr(node, a)]
        return found

    def _run(self, sql: str, compiler: Compiler, *, stream: bool = False) -> Any:
        return Running(self._engine.cursor(self._filesystems(), stream=stream), sql, compiler)

    def _named(self, table: pa.Table) -> pa.Table:
        return table.rename_columns([c.name for c in self._node.columns])

    def _frame(self, table: pa.Table) -> Any:
        """A DataFrame of rows of this frame (user names)."""
        source = self._node.source()
        if source is not None:
            return source.frame(table)
        return arrow_frame(table, self.index_names)

    def _pandas(self, table: pa.Table) -> Any:
        frame = self._frame(table)
        return frame.iloc[:, 0] if self._series else frame

    def _empty_frame(self) -> Any:
        """A DataFrame with this frame's columns and no rows."""
        schema = pa.schema([pa.field(c.name, c.type) for c in self._node.columns])
        return self._frame(schema.empty_table())


class LazyGroupBy:
    """Groups of a lazy frame; :meth:`agg` (or ``sum()``, ``mean()`` ...) makes a lazy frame."""

    def __init__(self, frame: LazyFrame, keys: Sequence[int], *, dropna: bool) -> None:
        self._frame, self._keys, self._dropna = frame, tuple(keys), dropna

    def agg(self, spec: Mapping[str, str] | None = None, /, **named: tuple[str, str]) -> LazyFrame:
        """Aggregate each group, pandas' named form or a dict of column to function.

        ``agg(total=('amount', 'sum'), n=('amount', 'count'))`` or
        ``agg({'amount': 'sum'})``. Functions: sum, mean, median, std, var,
        min, max, count (non-missing), nunique, size. The groups' keys are the
        index, sorted; rows with a missing key are left out (``dropna``).
        """
        pairs: dict[str, tuple[str, str]] = {}
        for column, function in (spec or {}).items():
            if not isinstance(function, str):
                raise InvalidQuery(
                    f"agg({{{column!r}: ...}}) takes one function name per column, got "
                    f"{function!r}; use named aggregations: agg(name=('col', 'sum'), ...)"
                )
            pairs[column] = (column, function)
        for name, pair in named.items():
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise InvalidQuery(
                    f"agg({name}=...) takes (column, function), e.g. ('amount', 'sum'); "
                    f"got {pair!r}"
                )
            pairs[name] = pair
        if not pairs:
            raise InvalidQuery("agg needs at least one aggregation, e.g. total=('amount', 'sum')")
        node = self._frame._node
        aggregations = tuple(
            (name, node.position(column), function) for name, (column, function) in pairs.items()
        )
        return self._frame._new(
            Aggregate(child=node, keys=self._keys, aggregations=aggregations, dropna=self._dropna)
        )

    def _all(self, function: str) -> LazyFrame:
        node = self._frame._node
        numeric_only = function in ("sum", "mean", "median", "std", "var")
        names = [
            c.name
            for i, c in enumerate(node.columns)
            if not c.index and i not in self._keys and (not numeric_only or _is_number(c.type))
        ]
        return self.agg({name: function for name in names})

    def sum(self) -> LazyFrame:
        """The sum of every other numeric column per group."""
        return self._all("sum")

    def mean(self) -> LazyFrame:
        """The mean of every other numeric column per group."""
        return self._all("mean")

    def min(self) -> LazyFrame:
        """The smallest value of every other column per group."""
        return self._all("min")

    def max(self) -> LazyFrame:
        """The largest value of every other column per group."""
        return self._all("max")

    def count(self) -> LazyFrame:
        """The non-missing values of every other column per group."""
        return self._all("count")

    def size(self) -> LazyFrame:
        """Rows per group, as a series named ``size``."""
        aggregate = Aggregate(
            child=self._frame._node,
            keys=self._keys,
            aggregations=(("size", 0, "size"),),
            dropna=self._dropna,
        )
        return self._frame._new(aggregate, series=True)


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
