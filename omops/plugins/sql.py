"""``sql.connection``: a database, named by a SQLAlchemy URL, queried at get time.

``om.datasets.put('postgresql://{user}:{password}@db/sales', 'salesdb')``
stores the URL *template*; nothing is read then. Every ``get`` connects and
runs ``sql=`` (with bound ``params=``) or reads ``table=`` (filters
``col__op=value`` pushed down as a ``WHERE`` with bound parameters, columns
as the ``SELECT`` list); ``chunksize=`` returns an iterator of DataFrames
read through a server-side cursor. A read never commits.

Passwords are never part of what is stored: a literal password in the URL
(or a secret-looking URL parameter) is refused at put; write a placeholder,
filled when read from ``secrets=`` or ``om.secrets``, never from the process
environment. Drivers' error messages are shown with those values blanked.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData, InvalidQuery, OmopsError, PluginError, StorageError
from omops.plugins._links import is_placeholder, refuse_literal, secret_name, shown
from omops.plugins.base import Plugin, ReadQuery, Stored, TableStream
from omops.query import Condition, parse_filters, select_columns
from omops.secrets import PLACEHOLDER, scrub

__all__ = ["DRIVER_EXTRAS", "SqlConnectionPlugin"]

#: The omops extra that installs the driver of a database (by SQLAlchemy backend).
DRIVER_EXTRAS: Mapping[str, str] = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}
_BATCH_ROWS = 65_536


def _url(template: str) -> Any:
    """The SQLAlchemy URL of ``template``, or InvalidData (the text shown masked)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(template.strip())
    except (ArgumentError, ValueError) as exc:
        raise InvalidData(
            f"{shown(template)!r} is not a SQLAlchemy connection URL ({type(exc).__name__}); "
            "write it as dialect[+driver]://{user}:{password}@host[:port]/database"
        ) from None


def _check_template(template: str) -> Any:
    """Refuse literal passwords and unknown dialects; the parsed URL."""
    from sqlalchemy.exc import NoSuchModuleError

    url = _url(template)
    what = f"the connection URL {shown(template)!r}"
    if url.password is not None and not is_placeholder(str(url.password)):
        example = f"'{url.drivername}://{url.username or '{user}'}:{{password}}@...'"
        raise refuse_literal(what, "its password", example)
    for key, value in url.query.items():
        values = value if isinstance(value, tuple) else (value,)
        if secret_name(key) and not all(is_placeholder(v) for v in values):
            raise refuse_literal(what, f"its parameter {key!r}", f"'?{key}={{{key}}}'")
    try:
        url.get_dialect()
    except NoSuchModuleError:
        raise PluginError(
            f"SQLAlchemy has no dialect {url.drivername!r} for {shown(template)!r}: install "
            "the package that provides it (e.g. pip install snowflake-sqlalchemy), or fix "
            "the URL's scheme"
        ) from None
    return url


def _type_name(sa_type: Any) -> str:
    """An Arrow-like type name for :func:`omops.query.parse_filters` (value checks)."""
    try:
        python = sa_type.python_type
    except (NotImplementedError, AttributeError):
        return "unknown"
    if issubclass(python, bool):
        return "bool"
    if issubclass(python, int):
        return "int64"
    if issubclass(python, (float, decimal.Decimal)):
        return "double"
    if issubclass(python, str):
        return "string"
    if issubclass(python, dt.datetime):
        return "timestamp"
    if issubclass(python, dt.date):
        return "date32"
    return "unknown"


def _bindable(value: Any, type_name: str) -> Any:
    """Values as the database driver binds them (ISO text to dates and datetimes)."""
    if isinstance(value, list):
        return [_bindable(v, type_name) for v in value]
    if isinstance(value, str) and type_name in ("timestamp", "date32"):
        import pandas as pd

        stamp = pd.Timestamp(value).to_pydatetime()
        return stamp.date() if type_name == "date32" else stamp
    return value


def _clause(column: Any, cond: Condition) -> Any:
    """The SQLAlchemy expression of one checked filter (values bound, never inlined)."""
    import sqlalchemy as sa

    op, value = cond.op, cond.value
    comparisons: dict[str, Callable[[], Any]] = {
        "eq": lambda: column == value,
        "ne": lambda: column.is_distinct_from(value),  # NULL is not equal, as in pandas
        "lt": lambda: column < value,
        "lte": lambda: column <= value,
        "gt": lambda: column > value,
        "gte": lambda: column >= value,
        "in": lambda: column.in_(value) if value else sa.false(),
        "nin": lambda: sa.or_(column.is_(None), column.not_in(value)) if value else sa.true(),
        "between": lambda: column.between(value[0], value[1]),
        "contains": lambda: column.contains(value, autoescape=True),
        "startswith": lambda: column.startswith(value, autoescape=True),
        "endswith": lambda: column.endswith(value, autoescape=True),
        "isnull": lambda: column.is_(None) if value else column.is_not(None),
        "notnull": lambda: column.is_not(None) if value else column.is_(None),
    }
    return comparisons[op]()


class SqlConnectionPlugin(Plugin):
    """A SQLAlchemy URL template; reads run ``sql=`` or read ``table=`` at get time."""

    kind = "sql.connection"
    stores = ("datasets",)
    tabular = True
    read_options = frozenset({"sql", "params", "table", "chunksize", "secrets"})

    @classmethod
    def supports(cls, obj: Any) -> bool:
        from omops.plugins.simple import location

        return isinstance(obj, str) and location(obj) == "connection"

    def definition(self, obj: Any) -> dict[str, Any]:
        """The ``kind_meta`` of a connection: its checked URL template and dialect."""
        if not isinstance(obj, str):
            raise InvalidData(
                f"kind {self.kind!r} needs a connection URL such as "
                f"'postgresql://{{user}}:{{password}}@host/db', got {type(obj).__name__}"
            )
        url = _check_template(obj)
        return {"url": obj.strip(), "dialect": url.get_backend_name()}

    def put(self, obj: Any, blobs: Blobs, *, base: RevisionRecord | None = None) -> Stored:
        return Stored(parts=[], kind_meta=self.definition(obj))

    def snapshot(self, obj: Any, *, options: Mapping[str, Any], query: ReadQuery) -> Any:
        if query.options.get("chunksize") is not None:
            raise InvalidQuery("copy=True reads the whole result; drop chunksize=")
        return self.get(None, [], self.definition(obj), query=query)  # type: ignore[arg-type]

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return {"url": shown(kind_meta["url"]), "dialect": kind_meta.get("dialect")}

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
        chunksize = query.options.get("chunksize")
        if chunksize is not None and (
            isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1
        ):
            raise InvalidQuery(f"chunksize must be a positive integer, got {chunksize!r}")
        read = _Read(kind_meta, query)
        try:
            frames = read.frames(chunksize or None)
            if chunksize is None:
                frame = next(frames)
                frames.close()
                return frame
        except BaseException:
            read.close()
            raise
        return frames

    def stream(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
        batch_rows: int = _BATCH_ROWS,
    ) -> TableStream:
        read = _Read(kind_meta, query or ReadQuery())
        try:
            return read.stream(batch_rows)
        except BaseException:
            read.close()
            raise

    def arrow(self, kind_meta: Mapping[str, Any], query: ReadQuery) -> pa.RecordBatchReader:
        """The rows as a ``pyarrow.RecordBatchReader``, read from the database as it is
        consumed (once): for DuckDB relations (see :mod:`omops.plugins.external`)."""
        stream = self.stream(None, [], kind_meta, query=query)  # type: ignore[arg-type]
        return pa.RecordBatchReader.from_batches(stream.schema, stream.batches)


class _Read:
    """One read: the engine of the filled URL, the statement, the translated errors."""

    def __init__(self, kind_meta: Mapping[str, Any], query: ReadQuery) -> None:
        self.template = str(kind_meta["url"])
        self.query = query
        options = query.options
        self.sql, self.table = options.get("sql"), options.get("table")
        self.params = options.get("params")
        self._check_options()
        self._used: list[str] = []
        self._datetimes: list[str] = []
        self.engine = self._engine()
        self.conn: Any = None

    # -- set-up --------------------------------------------------------------

    def _check_options(self) -> None:
        if (self.sql is None) == (self.table is None):
            raise InvalidQuery(
                f"a SQL connection is read with sql='select ...' or table='name' (one of them), "
                f"got {'both' if self.sql is not None else 'neither'}"
            )
        if self.sql is not None and not (isinstance(self.sql, str) and self.sql.strip()):
            raise InvalidQuery(f"sql= must be a SQL statement, got {self.sql!r}")
        if self.table is not None and not (isinstance(self.table, str) and self.table.strip()):
            raise InvalidQuery(f"table= must be a table name, got {self.table!r}")
        if self.params is not None and (self.sql is None or not isinstance(self.params, Mapping)):
            raise InvalidQuery(
                "params= is a dict of the :names in sql=, e.g. "
                "get(name, sql='select * from t where a > :a', params={'a': 10})"
            )
        if self.sql is not None and self.query.filters:
            raise InvalidQuery(
                "filters apply to table= reads (pushed down as WHERE); with sql=, write the "
                "condition in the SQL with a bound parameter: sql='... where a > :a', "
                "params={'a': 10}"
            )

    def _fill(self, text: str) -> str:
        for name in PLACEHOLDER.findall(text):
            self._used.append(self.query.filled("{" + name + "}"))
        return self.query.filled(text)

    def _filled_url(self) -> Any:
        url = _url(self.template)
        fill = self._fill
        query = {
            key: tuple(fill(v) for v in value) if isinstance(value, tuple) else fill(value)
            for key, value in url.query.items()
        }
        return url.set(
            username=None if url.username is None else fill(url.username),
            password=None if url.password is None else fill(str(url.password)),
            host=None if url.host is None else fill(url.host),
            database=None if url.database is None else fill(url.database),
            query=query,
        )

    def _engine(self) -> Any:
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        url = self._filled_url()
        try:
            # NullPool: the connection is closed with the read, nothing is kept per URL.
            return sa.create_engine(url, poolclass=NullPool)
        except ImportError as exc:
            extra = DRIVER_EXTRAS.get(url.get_backend_name())
            hint = f"pip install 'omops[{extra}]'" if extra else "install its Python driver"
            raise PluginError(
                f"the connection {shown(self.template)!r} needs the database driver "
                f"{exc.name or url.get_driver_name()!r}: {hint}"
            ) from None
        except sa.exc.SQLAlchemyError as exc:
            raise self._error(exc, connecting=True) from None

    def _connect(self) -> Any:
        import sqlalchemy as sa

        try:
            self.conn = self.engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            raise self._error(exc, connecting=True) from None
        except ImportError as exc:  # some dialects import their driver on first connect
            raise PluginError(
                f"the connection {shown(self.template)!r} needs the database driver "
                f"{exc.name!r}: install it"
            ) from None
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()  # rolls back: a read never commits
            self.conn = None
        self.engine.dispose()

    # -- statements ----------------------------------------------------------

    def _reflect(self, conn: Any) -> Any:
        import sqlalchemy as sa

        schema, _, name = self.table.strip().rpartition(".")
        try:
            return sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=conn)
        except sa.exc.NoSuchTableError:
            tables = sa.inspect(conn).get_table_names(schema=schema or None)
            listed = ", ".join(tables[:20]) + (" ..." if len(tables) > 20 else "")
            raise InvalidQuery(
                f"table {self.table!r} does not exist in {shown(self.template)!r}; its tables "
                f"are: {listed or '(none)'}"
            ) from None

    def _table_statement(self, conn: Any, *, window: bool = True) -> Any:
        import sqlalchemy as sa

        table = self._reflect(conn)
        for column in table.columns:
            if isinstance(column.type, sa.Float):
                column.type.asdecimal = False  # MySQL's DOUBLE reflects as decimals
        names = [c.name for c in table.columns]
        types = {c.name: _type_name(c.type) for c in table.columns}
        self._datetimes = [name for name, kind in types.items() if kind == "timestamp"]
        chosen = select_columns(names, self.query.columns, exclude=self.query.exclude) or names
        stmt = sa.select(*(table.c[name] for name in chosen))
        for cond in parse_filters(self.query.filters, types):
            value = _bindable(cond.value, types[cond.column])
            stmt = stmt.where(_clause(table.c[cond.column], Condition(cond.column, cond.op, value)))
        if window and (self.query.limit is not None or self.query.offset):
            # A window of an unordered table needs an order to mean anything: its key's.
            stmt = stmt.order_by(*(table.primary_key.columns or table.columns))
            stmt = stmt.limit(self.query.limit).offset(self.query.offset or None)
        return stmt

    def _statement(self, conn: Any) -> tuple[Any, dict[str, Any]]:
        import sqlalchemy as sa

        if self.table is not None:
            return self._table_statement(conn), {}
        return sa.text(self.sql), dict(self.params or {})

    # -- reading -------------------------------------------------------------

    def frames(self, chunksize: int | None) -> Iterator[Any]:
        """DataFrames of the result: one, or one per ``chunksize`` rows. The statement is
        checked and run here; rows are fetched as the iterator is consumed."""
        conn = self._connect()
        if chunksize is not None:
            conn = conn.execution_options(stream_results=True, max_row_buffer=chunksize)
        with self.errors():
            stmt, params = self._statement(conn)
            result = conn.execute(stmt, params)
        return self._frames(result, chunksize)

    def _frames(self, result: Any, chunksize: int | None) -> Iterator[Any]:
        try:
            with self.errors():
                keys = list(result.keys())
                window = self.sql is not None  # table reads are windowed in SQL
                skip, left = (self.query.offset, self.query.limit) if window else (0, None)
                yielded = False
                while True:
                    raw = result.fetchmany(chunksize) if chunksize else result.fetchall()
                    rows, skip, left = _window(raw, skip, left)
                    if rows:
                        yield self._frame(rows, keys)
                        yielded = True
                    if not raw or not chunksize or left == 0:
                        break
                if not yielded:  # an empty result is one empty frame, with the columns
                    yield self._frame([], keys)
        finally:
            self.close()

    def _frame(self, rows: Sequence[Any], keys: list[str]) -> Any:
        """A DataFrame of ``rows``: decimals as floats (as pandas' read_sql), datetime
        columns of a table as datetimes even in a chunk of only NULLs."""
        import pandas as pd

        frame = pd.DataFrame.from_records(rows, columns=keys, coerce_float=True)
        for name in self._datetimes:
            if name in frame.columns and frame[name].dtype == object:
                frame[name] = pd.to_datetime(frame[name])
        return self._columns(frame)

    def _columns(self, frame: Any) -> Any:
        """``columns=`` of a ``sql=`` read, from the result (table reads select them in SQL)."""
        if self.sql is None or self.query.columns is None:
            return frame
        chosen = select_columns(list(frame.columns), self.query.columns, exclude=self.query.exclude)
        return frame[chosen]

    def stream(self, batch_rows: int) -> TableStream:
        """The result as Arrow batches (the REST server's reads); the first is read now."""
        frames = self.frames(batch_rows)
        first = next(frames)
        batch = pa.RecordBatch.from_pandas(first, preserve_index=False)
        schema = batch.schema

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                if batch.num_rows:
                    yield batch
                for frame in frames:
                    if len(frame):
                        yield self._conform(frame, schema)
            finally:
                frames.close()

        return TableStream(schema, list(schema.names), batches(), self._count)

    def _conform(self, frame: Any, schema: pa.Schema) -> pa.RecordBatch:
        found = pa.RecordBatch.from_pandas(frame, preserve_index=False)
        try:
            return found.cast(schema) if found.schema != schema else found
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidData(
                f"the column types of the result changed between batches ({exc}); read it "
                "with a query that casts them, or in one piece"
            ) from None

    def _count(self) -> int:
        """Rows of the read, by a count in the database (a read of its own)."""
        import sqlalchemy as sa

        with self.engine.connect() as conn, self.errors():
            if self.table is not None:
                inner = self._table_statement(conn, window=False).subquery()
                total = conn.execute(sa.select(sa.func.count()).select_from(inner)).scalar()
            else:
                sql = self.sql.strip().rstrip(";")
                text = sa.text(f"SELECT count(*) FROM ({sql}) AS omops_count")
                total = conn.execute(text, dict(self.params or {})).scalar()
        rows = max(0, int(total) - self.query.offset)
        return rows if self.query.limit is None else min(rows, self.query.limit)

    # -- errors ----------------------------------------------------------------

    def errors(self) -> Any:
        return _Translated(self)

    def _error(self, exc: Exception, *, connecting: bool = False) -> OmopsError:
        import sqlalchemy as sa

        orig = getattr(exc, "orig", None) or exc
        text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        text = scrub(text.split(" (Background on this error at:")[0], self._used)
        where = shown(self.template)
        invalidated = getattr(exc, "connection_invalidated", False)
        if connecting or invalidated or isinstance(exc, sa.exc.InterfaceError):
            return StorageError(f"cannot connect to {where!r}: {text}")
        if isinstance(exc, (sa.exc.ArgumentError, sa.exc.StatementError)) and not isinstance(
            exc, sa.exc.DBAPIError
        ):
            return InvalidQuery(
                f"the query cannot run: {text}. Give a value for every :name of the query in params="
            )
        return InvalidQuery(f"the query failed in {where!r}: {text}")


class _Translated:
    """SQLAlchemy's errors inside the block as omops errors, secrets blanked."""

    def __init__(self, read: _Read) -> None:
        self.read = read

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        import sqlalchemy as sa

        if isinstance(exc, sa.exc.SQLAlchemyError):
            # Not chained: the driver's exception may quote the filled URL.
            raise self.read._error(exc) from None
        return False


def _window(
    rows: Sequence[Any], skip: int, left: int | None
) -> tuple[Sequence[Any], int, int | None]:
    """``rows`` less the ``skip`` first, at most ``left`` of them; what is left to skip/take."""
    if skip:
        dropped = min(skip, len(rows))
        rows, skip = rows[dropped:], skip - dropped
    if left is not None:
        rows = rows[:left]
        left -= len(rows)
    return rows, skip, left
