"""Small numeric request bodies as NumPy arrays, for the array lane.

The lane itself (which model revisions take arrays, learnt by checking the
first answer both ways) is :mod:`omops.runtime._arrays`; this module builds
the array from JSON. A small body whose values are all numbers (in any of the
accepted shapes) becomes an array, columns in the fitted order. Anything else
(strings, booleans, nulls, missing columns, records with differing keys,
extra keys such as ``"y"``) takes the usual path with its usual errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from omops.runtime._arrays import ARRAY_ACTIONS, ArrayLane, _same

__all__ = ["ARRAY_ACTIONS", "ArrayLane", "NumericRows", "_same", "numeric_rows"]

#: Bigger requests gain little: the DataFrame check is a fixed cost per request.
MAX_VALUES = 4096
#: Integers beyond this do not convert to float64 exactly.
_EXACT_INT = 2**53


@dataclass(frozen=True)
class NumericRows:
    """The request's values, columns in the model's order."""

    array: np.ndarray
    columns: list[str]


def numeric_rows(payload: Any, expected: list[str] | None) -> NumericRows | None:
    """An array from a body of numbers in any accepted shape, else None.

    Split ``{"columns": [...], "data": [[...], ...]}``, columns ``{"data":
    {"col": [...]}}`` and records ``[{"col": v}, ...]`` (or ``{"data":
    [...]}``, every record with the same keys). The dtype is what pandas
    gives the same values: int64 when every value is an integer, float64
    otherwise. ``expected`` (the fitted column names) orders the columns;
    when some are missing the usual path explains.
    """
    table = _table(payload)
    if table is None:
        return None
    columns, data = table
    width = len(columns)
    if not width or not data or width * len(data) > MAX_VALUES:
        return None
    if not all(type(c) is str for c in columns):
        return None
    order = _order(columns, expected)
    if order is None:
        return None
    array = _array(data)
    if array is None:
        return None
    if order is not _AS_SENT:
        array = array[:, order]
        columns = list(expected or columns)
    return NumericRows(array, columns)


def _table(payload: Any) -> tuple[list[Any], list[list[Any]]] | None:
    """``(columns, rows)`` of a body, each row a list as long as ``columns``; else None."""
    if isinstance(payload, list):
        return _records(payload)
    if not isinstance(payload, Mapping):
        return None
    keys = payload.keys()
    if keys == {"columns", "data"}:
        columns, data = payload["columns"], payload["data"]
        if not isinstance(columns, list) or not isinstance(data, list):
            return None
        width = len(columns)
        if not all(type(row) is list and len(row) == width for row in data):
            return None
        return columns, data
    if keys != {"data"}:
        return None
    data = payload["data"]
    if isinstance(data, list):
        return _records(data)
    if not isinstance(data, Mapping):
        return None
    values = list(data.values())
    if not all(type(v) is list for v in values) or len({len(v) for v in values}) != 1:
        return None
    return list(data), [list(row) for row in zip(*values, strict=True)]


def _records(records: list[Any]) -> tuple[list[Any], list[list[Any]]] | None:
    if not records or not all(type(r) is dict for r in records):
        return None
    columns = list(records[0])
    names = set(columns)
    if not all(r.keys() == names for r in records):
        return None  # pandas fills what a record lacks with NaN: the usual path
    return columns, [[r[c] for c in columns] for r in records]


_AS_SENT: list[int] = []


def _order(columns: list[str], expected: list[str] | None) -> list[int] | None:
    """Column positions in fitted order; ``_AS_SENT`` when already so; None when unsure."""
    if len(set(columns)) != len(columns):
        return None
    if not expected or columns == expected:
        return _AS_SENT
    position = {c: i for i, c in enumerate(columns)}
    if any(c not in position for c in expected):
        return None
    return [position[c] for c in expected]


def _array(data: list[list[Any]]) -> np.ndarray | None:
    kinds = {type(v) for row in data for v in row}
    if kinds == {float}:
        array = np.array(data, dtype=np.float64)
    elif kinds == {int}:
        try:
            return np.array(data, dtype=np.int64)
        except OverflowError:
            return None
    elif kinds == {float, int}:
        if any(type(v) is int and abs(v) > _EXACT_INT for row in data for v in row):
            return None
        array = np.array(data, dtype=np.float64)
    else:  # strings, booleans, nulls, nested values: pandas decides
        return None
    return array if np.isfinite(array).all() else None
