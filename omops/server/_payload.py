"""Request bodies and query strings to DataFrames and filters; results to JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from omops.errors import InvalidData, InvalidQuery

__all__ = ["coerce_filters", "frame_from_json", "frame_to_json", "parse_json", "to_json_bytes"]

LIST_OPERATORS = ("in", "nin", "between")
#: Up to this many values, a body of floats only becomes a frame without pandas' inference.
_SMALL = 4096


def parse_json(body: bytes) -> Any:
    if not body:
        raise InvalidData(
            'the request has no body; send JSON like {"columns": [...], "data": [[...]]}'
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidData(f"the body is not valid JSON: {exc}") from None


def _check_columns(columns: Any) -> list[str]:
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InvalidData("'columns' must be a list of column names (strings)")
    if len(set(columns)) != len(columns):
        raise InvalidData("'columns' has duplicate names")
    return columns


def frame_from_json(payload: Any, *, plain_names: bool = False) -> Any:
    """A DataFrame with at least one column from one of the accepted shapes (see ``_frame``).

    ``plain_names``: column names in a plain (object) Index rather than pandas'
    Arrow-backed strings, which are several times slower to check for a model
    (scikit-learn compares them on every predict). For model inputs only: a
    stored frame keeps pandas' default.
    """
    frame = _frame(payload, plain_names)
    if not len(frame.columns):
        raise InvalidData(
            'the body names no columns; send {"columns": ["x"], "data": [[1.0]]}, '
            '{"data": {"x": [1.0]}} or records [{"x": 1.0}]'
        )
    return frame


def _frame(payload: Any, plain_names: bool = False) -> Any:
    """A DataFrame from one of the accepted shapes.

    ``{"columns": [...], "data": [[...], ...]}`` (split), ``{"data": {"col":
    [...]}}`` (columns), ``[{"col": v}, ...]`` or ``{"data": [{...}]}`` (records).
    """
    import numpy as np
    import pandas as pd

    data = payload.get("data") if isinstance(payload, Mapping) else payload
    columns = payload.get("columns") if isinstance(payload, Mapping) else None
    try:
        if columns is not None:
            columns = _check_columns(columns)
            if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
                raise InvalidData("with 'columns', 'data' must be a list of rows (lists)")
            bad = [i for i, row in enumerate(data) if len(row) != len(columns)]
            if bad:
                raise InvalidData(
                    f"row {bad[0]} has {len(data[bad[0]])} values but there are {len(columns)} columns"
                )
            if plain_names:
                columns = pd.Index(columns, dtype=object)
            if (
                data
                and len(data) * len(columns) <= _SMALL
                and all(type(v) is float for row in data for v in row)
            ):
                # What pandas infers for all-float rows (float64 columns), ~3x faster.
                return pd.DataFrame(np.array(data, dtype=np.float64), columns=columns)
            return pd.DataFrame(data, columns=columns)
        if isinstance(data, Mapping):
            _check_columns(list(data))
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != len(data) or len({len(v) for v in lists}) > 1:
                raise InvalidData(
                    "with 'data' as {column: [values]}, every value must be a list of one length"
                )
            return pd.DataFrame(dict(data))
        if isinstance(data, list) and all(isinstance(r, Mapping) for r in data):
            for row in data:
                _check_columns(list(row))
            return pd.DataFrame.from_records(data)
    except (ValueError, TypeError) as exc:
        raise InvalidData(f"cannot build a table from the body: {exc}") from None
    raise InvalidData(
        'send {"columns": [...], "data": [[...]]}, {"data": {"col": [...]}} or records '
        '[{"col": value}, ...]'
    )


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


def frame_to_json(frame: Any, orient: str) -> bytes:
    """A DataFrame as JSON bytes, ``records`` or ``split``."""
    if orient not in ("records", "split"):
        raise InvalidQuery(f"orient {orient!r} is not one of records, split")
    return frame.to_json(orient=orient, date_format="iso", date_unit="us").encode()
