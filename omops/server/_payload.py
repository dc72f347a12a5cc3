"""Request bodies and query strings to DataFrames and filters; values to JSON.

A dataset body is JSON (the shapes of :func:`omops.runtime.inputs.frame_from_json`),
an Arrow IPC stream or a Parquet file; each is refused with 413 when it has
more columns than the server takes, before a frame is built from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException

from omops.errors import InvalidData, InvalidQuery
from omops.runtime.inputs import frame_from_json, parse_json

__all__ = [
    "check_column_count",
    "coerce_filters",
    "frame_from_body",
    "frame_from_json",
    "parse_json",
    "to_json_bytes",
]

LIST_OPERATORS = ("in", "nin", "between")
ARROW_STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


def too_many_columns(count: int, most: int) -> HTTPException:
    return HTTPException(
        413,
        f"the body has {count} columns or more; this server takes at most {most} per request "
        "(OMOPS_SERVER_MAX_COLUMNS, --max-columns): send fewer columns per request",
    )


def check_column_count(payload: Any, most: int) -> None:
    """413 when a JSON body (split, columns or records shape) names more than ``most`` columns.

    Counted before pandas builds anything: a body of 100,000 columns used to
    take seconds to become a frame.
    """
    data = payload.get("data") if isinstance(payload, Mapping) else payload
    columns = payload.get("columns") if isinstance(payload, Mapping) else None
    if isinstance(columns, list):
        count = len(columns)
    elif isinstance(data, Mapping):
        count = len(data)
    elif isinstance(data, list):
        names: set[Any] = set()
        for row in data:
            if isinstance(row, Mapping):
                if len(row) > most:
                    raise too_many_columns(len(row), most)
                names.update(row)
                if len(names) > most:
                    break
        count = len(names)
    else:
        return
    if count > most:
        raise too_many_columns(count, most)


def frame_from_body(body: bytes, media_type: str, most_columns: int) -> Any:
    """A DataFrame from an Arrow IPC stream or Parquet body (index restored when described)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if media_type == ARROW_STREAM:
            reader = pa.ipc.open_stream(body)
            if len(reader.schema) > most_columns:
                raise too_many_columns(len(reader.schema), most_columns)
            table = reader.read_all()
        else:
            file = pq.ParquetFile(pa.BufferReader(body))
            if len(file.schema_arrow) > most_columns:
                raise too_many_columns(len(file.schema_arrow), most_columns)
            table = file.read()
    except (pa.ArrowException, OSError, ValueError) as exc:
        kind = "an Arrow IPC stream" if media_type == ARROW_STREAM else "a Parquet file"
        raise InvalidData(f"the body is not {kind} omops can read: {exc}") from None
    try:
        return table.to_pandas()
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise InvalidData(f"the body's table cannot become a DataFrame: {exc}") from None


def _scalar(text: str, type_name: str) -> Any:
    if "string" in type_name or "utf8" in type_name or type_name.startswith("dictionary"):
        return text
    if type_name.startswith("timestamp") or type_name.startswith("date"):
        import pandas as pd

        try:
            stamp = pd.Timestamp(text)
        except ValueError:
            raise InvalidQuery(f"{text!r} is not a date/time") from None
        return stamp.to_pydatetime()
    if type_name == "bool":
        if text.lower() in ("true", "1"):
            return True
        if text.lower() in ("false", "0"):
            return False
        raise InvalidQuery(f"{text!r} is not true or false")
    try:
        number = float(text)
    except ValueError:
        raise InvalidQuery(f"{text!r} is not a number, but the column is {type_name}") from None
    return int(number) if type_name.startswith(("int", "uint")) and number.is_integer() else number


def _flag(key: str, text: str) -> bool:
    if text.lower() in ("true", "1", ""):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise InvalidQuery(f"filter {key!r} takes true or false, got {text!r}")


def coerce_filters(raw: Mapping[str, str], types: Mapping[str, str]) -> dict[str, Any]:
    """Query-string filters (all text) to typed values, by the column's type."""
    filters: dict[str, Any] = {}
    for key, text in raw.items():
        column, _, op = (
            key.rpartition("__") if "__" in key and key not in types else (key, "", "eq")
        )
        type_name = types.get(column)
        if type_name is None:
            filters[key] = text  # unknown column: the query layer names it
            continue
        if op in ("isnull", "notnull"):
            filters[key] = _flag(key, text)
        elif op in LIST_OPERATORS:
            filters[key] = [_scalar(v, type_name) for v in text.split(",")]
        else:
            filters[key] = _scalar(text, type_name)
    return filters


def to_json_bytes(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
