"""Dataset answers built batch by batch: JSON, NDJSON, Arrow IPC stream, Parquet.

Each encoder takes a :class:`~omops.plugins.TableStream` and yields bytes,
one piece per record batch, so that an answer of any size is sent with about
one batch in memory. The first piece is produced only after the first batch
was read: the router computes it before it answers, so a read that fails at
once still gets an error status instead of a cut-off 200.

JSON values follow one rule (documented in the README): floats are written
in the shortest form that reads back to the same float64 (orjson), and NaN
and infinities, which JSON has no form for, are written as ``null``; Arrow and
Parquet answers keep infinities (NaN, pandas' missing value, is stored as
null). Timestamps are ISO 8601 text with the stored
precision (microseconds at least); zoned ones in UTC with a ``Z``. Dates and
times of day are ISO text, durations ISO 8601 durations (``P0DT0H0M1.5S``),
decimals numbers with their exact digits, bytes base64 text.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from omops.plugins import TableStream

__all__ = [
    "ARROW_STREAM",
    "JSON",
    "MEDIA_TYPES",
    "NDJSON",
    "PARQUET",
    "encode",
    "json_values",
    "negotiate",
]

JSON = "application/json"
NDJSON = "application/x-ndjson"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
#: The answers a dataset read can give, besides JSON, by the Accept header.
MEDIA_TYPES = (NDJSON, ARROW_STREAM, PARQUET)
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
#: What the encoders yield: bytes, or views of bytes (sent without a copy).
Piece = bytes | memoryview


def negotiate(accept: str | None) -> str:
    """The media type to answer with: the first of :data:`MEDIA_TYPES` the client lists, else JSON."""
    if not accept:
        return JSON
    listed = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    for media_type in listed:
        if media_type in MEDIA_TYPES:
            return media_type
    return JSON


def encode(stream: TableStream, media_type: str, orient: str = "records") -> Iterator[Piece]:
    """The pieces of the answer in ``media_type``; closes the stream when done or dropped."""
    if media_type == NDJSON:
        pieces = _ndjson(stream)
    elif media_type == ARROW_STREAM:
        pieces = _arrow(stream)
    elif media_type == PARQUET:
        pieces = _parquet(stream)
    elif orient == "split":
        pieces = _split(stream)
    else:
        pieces = _records(stream)
    try:
        yield from pieces
    finally:
        stream.close()


# -- JSON ------------------------------------------------------------------


def _default(value: Any) -> Any:
    """What orjson cannot write itself, as found inside nested cells."""
    if isinstance(value, decimal.Decimal):
        return orjson.Fragment(str(value)) if value.is_finite() else None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dt.timedelta):
        import pandas as pd

        return pd.Timedelta(value).isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _timestamps(array: pa.Array) -> pa.Array:
    kind = array.type
    unit = "ns" if kind.unit == "ns" else "us"  # at least microseconds, as before
    if kind.tz is not None:
        return pc.strftime(array.cast(pa.timestamp(unit, "UTC")), format="%Y-%m-%dT%H:%M:%SZ")
    return pc.strftime(array.cast(pa.timestamp(unit)), format="%Y-%m-%dT%H:%M:%S")


def _durations(array: pa.Array) -> pa.Array:
    import pandas as pd

    values = array.to_pandas()
    return pa.array([None if pd.isna(v) else v.isoformat() for v in values], pa.string())


def _json_array(array: pa.Array) -> pa.Array:
    """``array`` with the types JSON writes as text made text, the rest as they are."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        return _json_array(array.dictionary_decode())
    if pa.types.is_timestamp(kind):
        return _timestamps(array)
    if pa.types.is_date(kind) or pa.types.is_time(kind):
        return array.cast(pa.string())
    if pa.types.is_duration(kind):
        return _durations(array)
    return array


def json_values(batch: pa.RecordBatch, columns: list[str]) -> pa.RecordBatch:
    """The ``columns`` of ``batch``, ready for ``to_pylist()`` and orjson."""
    return pa.RecordBatch.from_arrays(
        [_json_array(batch.column(name)) for name in columns], names=columns
    )


def _record_rows(stream: TableStream) -> Iterator[list[dict[str, Any]]]:
    for batch in stream.batches:
        if batch.num_rows:
            yield json_values(batch, stream.data_columns).to_pylist()


def _array_pieces(lists: Iterator[list[Any]], opening: bytes, closing: bytes) -> Iterator[Piece]:
    """One JSON array of the items of ``lists``, a list at a time, between ``opening``
    and ``closing``.

    Each list is written by one orjson call and sent without its brackets (a
    view, no copy); the separator before it is sent after it was written, so the
    first piece comes only once the first batch was read.
    """
    separator = opening
    for items in lists:
        data = orjson.dumps(items, option=_OPTIONS, default=_default)
        del items  # not kept while the piece is sent
        yield separator
        yield memoryview(data)[1:-1]
        separator = b","
    yield (opening + closing) if separator == opening else closing


def _records(stream: TableStream) -> Iterator[Piece]:
    return _array_pieces(_record_rows(stream), b"[", b"]")


def _split(stream: TableStream) -> Iterator[Piece]:
    def rows() -> Iterator[list[Any]]:
        for batch in stream.batches:
            if batch.num_rows:
                values = json_values(batch, stream.data_columns)
                yield list(zip(*(column.to_pylist() for column in values.columns), strict=True))

    opening = b'{"columns":' + orjson.dumps(stream.data_columns) + b',"data":['
    return _array_pieces(rows(), opening, b"]}")


def _ndjson(stream: TableStream) -> Iterator[Piece]:
    options = _OPTIONS | orjson.OPT_APPEND_NEWLINE
    written = False
    for rows in _record_rows(stream):
        # One growing buffer per batch: a joined list of small pieces, held while the
        # next batch is built, fragmented the heap (~2x the peak memory, measured).
        piece = bytearray()
        for row in rows:
            piece += orjson.dumps(row, option=options, default=_default)
        del rows
        yield memoryview(piece)
        written = True
    if not written:
        yield b""


# -- Arrow and Parquet -----------------------------------------------------


class _Sink:
    """A write-only file that keeps what was written until :meth:`take` hands it out."""

    closed = False

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._size = 0

    def write(self, data: Any) -> int:
        piece = bytes(data)
        self._pieces.append(piece)
        self._size += len(piece)
        return len(piece)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self._pieces)
        self._pieces = []
        return out


def _arrow(stream: TableStream) -> Iterator[Piece]:
    sink = _Sink()
    with pa.ipc.new_stream(sink, stream.schema) as writer:
        for batch in stream.batches:
            writer.write_batch(batch)
            yield sink.take()
    yield sink.take()  # the end-of-stream marker (and the schema, if no batch came)


def _parquet(stream: TableStream) -> Iterator[Piece]:
    import pyarrow.parquet as pq

    sink = _Sink()
    with pq.ParquetWriter(pa.PythonFile(sink, mode="w"), stream.schema) as writer:
        for batch in stream.batches:
            writer.write_batch(batch)  # one row group per batch, written at once
            yield sink.take()
    yield sink.take()  # the footer
