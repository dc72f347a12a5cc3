"""``url.dataset``: a CSV, Parquet or JSON file at a URL, read when it is read.

``om.datasets.put('https://example.com/data.csv', 'csvdata')`` stores the
link, not the data: every ``get`` reads the file through fsspec (``https://``,
``http://``, ``s3://``, ``gs://``, ``file://``), so it sees the file as it is
then. Filters and column selectors are those of stored frames and run in
DuckDB over an Arrow dataset of the file, so Parquet reads only the columns
and row groups they need. ``put(..., copy=True)`` instead reads the file once
and stores what it holds as a normal revisioned DataFrame.

The format comes from ``format=`` or the extension (``.csv``, ``.tsv``,
``.parquet``, ``.pq``, ``.json``, ``.jsonl``, ``.ndjson``; compressed CSV as
``.csv.gz``). Passwords and tokens never go into the URL or the storage
options: write ``{placeholders}`` there, filled from ``secrets=`` or
``om.secrets`` when read (see :mod:`omops.plugins._links`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa

from omops.blobs import Blobs
from omops.catalog import PartRecord, RevisionRecord
from omops.errors import InvalidData, InvalidQuery, OmopsError, PluginError, StorageError
from omops.plugins._links import (
    check_options,
    fill_options,
    is_placeholder,
    refuse_literal,
    scrubbed_logs,
    secret_name,
    shown,
)
from omops.plugins.base import Plugin, ReadQuery, Stored, TableStream
from omops.query import compile_filters, quote_identifier, select_columns
from omops.secrets import PLACEHOLDER, scrub

__all__ = ["FORMATS", "SCHEMES", "UrlDatasetPlugin"]

#: URL schemes read through fsspec (``s3``/``gs`` need the s3/gcs extras).
SCHEMES: tuple[str, ...] = ("http", "https", "s3", "gs", "gcs", "file")
FORMATS: tuple[str, ...] = ("csv", "parquet", "json")
_EXTRAS = {"s3": "s3", "gs": "gcs", "gcs": "gcs"}
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}
_COMPRESSIONS = (".gz", ".bz2", ".zst", ".xz")
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://\S+")


def _scheme(text: str) -> str | None:
    match = _URL.fullmatch(text.strip())
    return match["scheme"].lower() if match else None


def _format(url: str, given: Any) -> str:
    """``format=`` or the one the path's extension names."""
    if given is not None:
        if given not in FORMATS:
            raise InvalidData(f"format={given!r} is not one of {', '.join(FORMATS)}")
        return str(given)
    path = urlsplit(url).path.lower()
    for suffix in _COMPRESSIONS:
        path = path.removesuffix(suffix)
    for suffix, fmt in _SUFFIXES.items():
        if path.endswith(suffix):
            return fmt
    raise InvalidData(
        f"cannot tell the format of {shown(url)!r} from its extension; pass format= one of "
        f"{', '.join(FORMATS)}, e.g. put(url, name, format='csv')"
    )


def _check_url(url: str) -> None:
    """Refuse a literal password or token in the URL itself (placeholders are fine)."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo and not is_placeholder(userinfo.split(":", 1)[1]):
        raise refuse_literal(
            f"the URL {shown(url)!r}", "its user info", "'https://{user}:{password}@host/x.csv'"
        )
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if secret_name(key) and not is_placeholder(value):
            raise refuse_literal(
                f"the URL {shown(url)!r}", f"its parameter {key!r}", f"'?{key}={{{key}}}'"
            )


class UrlDatasetPlugin(Plugin):
    """A link to a CSV, Parquet or JSON file, read through fsspec at get time."""

    kind = "url.dataset"
    stores = ("datasets",)
    tabular = True
    put_options = frozenset({"format", "storage_options"})
    read_options = frozenset({"secrets"})

    @classmethod
    def supports(cls, obj: Any) -> bool:
        return isinstance(obj, str) and _scheme(obj) in SCHEMES

    # -- put ---------------------------------------------------------------

    def definition(self, obj: Any, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """The ``kind_meta`` of a link: the URL, its format and storage options, checked."""
        if not isinstance(obj, str) or _scheme(obj) is None:
            raise InvalidData(
                f"kind {self.kind!r} needs a URL such as 'https://host/data.csv', got "
                f"{type(obj).__name__}"
            )
        url = obj.strip()
        scheme = _scheme(url)
        if scheme not in SCHEMES:
            raise InvalidData(
                f"{shown(url)!r}: URLs of scheme {scheme!r} cannot be read; omops reads "
                f"{', '.join(s + '://' for s in SCHEMES)}"
            )
        options = dict(options or {})
        unknown = sorted(set(options) - self.put_options)
        if unknown:
            raise InvalidData(f"kind {self.kind!r} takes no option(s) {unknown}")
        _check_url(url)
        what = f"the URL dataset {shown(url)!r}"
        return {
            "url": url,
            "format": _format(url, options.get("format")),
            "storage_options": check_options(options.get("storage_options"), what),
        }

    def put(
        self,
        obj: Any,
        blobs: Blobs,
        *,
        base: RevisionRecord | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Stored:
        # Nothing is read or written: the file is read when the dataset is.
        return Stored(parts=[], kind_meta=self.definition(obj, options))

    def snapshot(self, obj: Any, *, options: Mapping[str, Any], query: ReadQuery) -> Any:
        return self.get(None, [], self.definition(obj, options), query=query)  # type: ignore[arg-type]

    def describe(self, kind_meta: Mapping[str, Any]) -> dict[str, Any]:
        return {"url": shown(kind_meta["url"]), "format": kind_meta["format"]}

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
        source = _Source(kind_meta, query)
        with source.errors():
            table = source.run(query).to_arrow_table()
        return table.to_pandas()

    def stream(
        self,
        blobs: Blobs,
        parts: Sequence[PartRecord],
        kind_meta: Mapping[str, Any],
        *,
        query: ReadQuery | None = None,
        batch_rows: int = 65_536,
    ) -> TableStream:
        query = query or ReadQuery()
        source = _Source(kind_meta, query)
        with source.errors():
            reader = source.run(query).to_arrow_reader(batch_rows)
        schema = reader.schema

        def batches() -> Iterator[pa.RecordBatch]:
            with source.errors():
                yield from reader

        def count() -> int:
            with source.errors():
                return int(source.run(query, count=True).fetchall()[0][0])

        return TableStream(schema, list(schema.names), batches(), count)

    def arrow(self, kind_meta: Mapping[str, Any], query: ReadQuery) -> Any:
        """The file as a ``pyarrow.dataset.Dataset`` (CSV, Parquet) or ``pyarrow.Table``
        (JSON), unfiltered: for DuckDB relations (see :mod:`omops.plugins.external`)."""
        source = _Source(kind_meta, query)
        with source.errors():
            return source.arrow()


class _Source:
    """One read of a URL dataset: the filled URL, the file as Arrow, DuckDB over it."""

    def __init__(self, kind_meta: Mapping[str, Any], query: ReadQuery) -> None:
        self.template = str(kind_meta["url"])
        self.format = str(kind_meta["format"])
        self._used: list[str] = []
        self.url = self._fill(query, self.template)
        self.options = fill_options(
            kind_meta.get("storage_options") or {}, lambda text: self._fill(query, text)
        )
        self._conn: Any = None

    def _fill(self, query: ReadQuery, text: str) -> str:
        """``text`` filled; the values used are kept, to be scrubbed from error messages."""
        for name in PLACEHOLDER.findall(text):
            self._used.append(query.filled("{" + name + "}"))
        return query.filled(text)

    def errors(self) -> Any:
        return _translated(self.template, self._used)

    def _filesystem(self) -> tuple[Any, str]:
        import fsspec

        scheme = _scheme(self.url) or "file"
        try:
            return fsspec.core.url_to_fs(self.url, **self.options)
        except ImportError:
            extra = _EXTRAS.get(scheme)
            hint = f"pip install 'omops[{extra}]'" if extra else "install its fsspec package"
            raise PluginError(f"reading {scheme}:// URLs needs more packages: {hint}") from None

    def arrow(self) -> Any:
        """The file as an Arrow dataset (CSV, Parquet: read as scanned) or table (JSON)."""
        import pyarrow.dataset as ds
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        fs, path = self._filesystem()
        if self.format == "json":
            return _read_json(fs, path)
        if self.format == "parquet":
            fmt: Any = ds.ParquetFileFormat()
        else:
            import pyarrow.csv as csv

            tab = ".tsv" in urlsplit(self.url).path.lower()
            fmt = ds.CsvFileFormat(parse_options=csv.ParseOptions(delimiter="\t" if tab else ","))
        return ds.dataset(path, format=fmt, filesystem=PyFileSystem(FSSpecHandler(fs)))

    def run(self, query: ReadQuery, *, count: bool = False) -> Any:
        """DuckDB's result of ``query`` (columns, filters, window) over the file."""
        import duckdb

        data = self.arrow()
        schema = data.schema
        names = [f.name for f in schema]
        chosen = select_columns(names, query.columns, exclude=query.exclude) or names
        predicate = compile_filters(query.filters, {f.name: str(f.type) for f in schema})
        window = (f" LIMIT {int(query.limit)}" if query.limit is not None else "") + (
            f" OFFSET {int(query.offset)}" if query.offset else ""
        )
        select = ", ".join(quote_identifier(c) for c in chosen)
        sql = f"SELECT {select} FROM source WHERE {predicate.sql}{window}"
        if count:
            sql = f"SELECT count(*) FROM ({sql})"
        # A connection per read: in memory, a few ms, and nothing shared between Omegas.
        self._conn = duckdb.connect(config={"threads": 2})
        self._conn.register("source", data)
        return self._conn.sql(sql, params=predicate.params or None)


def _read_json(fs: Any, path: str) -> pa.Table:
    """A JSON array of records, or JSON lines, as an Arrow table (read whole)."""
    import pandas as pd

    with fs.open(path, "rb", compression="infer") as handle:
        data = handle.read()
    head = data.lstrip()[:1]
    try:
        frame = pd.read_json(io.BytesIO(data), orient="records", lines=head == b"{")
    except ValueError as exc:
        raise InvalidData(
            f"the file is not JSON records (an array of objects, or one object per line): {exc}"
        ) from exc
    return pa.Table.from_pandas(frame, preserve_index=False)


@contextmanager
def _translated(url: str, secrets: Sequence[str]) -> Iterator[None]:
    """Errors of reading the file as omops errors naming the URL (masked); the filled
    secrets kept out of the filesystems' logs meanwhile."""
    with scrubbed_logs(secrets):
        try:
            yield
        except (OmopsError, MemoryError):
            raise
        except Exception as exc:
            raise _error(url, exc, secrets) from None


def _error(url: str, exc: Exception, secrets: Sequence[str]) -> OmopsError:
    import duckdb

    where = shown(url)
    # The first line only, with the secrets filled in the URL or options blanked out:
    # the exception itself is not chained, as its text may hold the filled URL.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = scrub(text, secrets)
    if isinstance(exc, FileNotFoundError):
        return StorageError(
            f"the URL dataset's file {where!r} does not exist (or is not readable): {text}. "
            "Fix the URL with put(url, name) again"
        )
    if isinstance(exc, duckdb.Error) and not isinstance(
        exc, (duckdb.IOException, duckdb.InvalidInputException)
    ):
        return InvalidQuery(f"the filters cannot be applied to {where!r}: {text}")
    if isinstance(exc, (pa.ArrowInvalid, UnicodeDecodeError, duckdb.InvalidInputException)):
        return InvalidData(f"{where!r} cannot be read as its format says: {text}")
    if isinstance(exc, OSError):
        return StorageError(f"cannot read the URL dataset's file {where!r}: {text}")
    return StorageError(f"cannot read {where!r}: {type(exc).__name__}: {text}")
