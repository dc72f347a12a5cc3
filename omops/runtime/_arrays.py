"""The array lane: a model that takes arrays gets one instead of a DataFrame.

Most of a small prediction's time goes to the model checking a DataFrame
(scikit-learn spends about 1 ms on a 1-row frame, 0.2 ms on the same values as
a NumPy array). When a model's plugin says it
:meth:`~omops.plugins.base.Plugin.takes_arrays` and the input is plain numbers
in the fitted column order, the runtime (tasks) and the REST server
(:mod:`omops.server._arrays`, which builds the array from JSON) hand it the
array.

The first such call per (model revision, action, dtype) is answered the usual
way and checked against the array answer; only if the two agree does the lane
serve that revision from then on.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MAX_VALUES", "ArrayLane", "Rows", "arrow_rows", "frame_array", "numeric_rows"]

_NUMBERS = frozenset({"float64", "int64"})


def frame_array(frame: Any, fitted: list[str] | None) -> np.ndarray | None:
    """The values of a DataFrame of float64/int64 columns as one array, else None.

    Only when the columns are exactly ``fitted`` (the names the model was
    fitted with; any names when it had none), so that every error the
    DataFrame would raise (a column missing or out of order) still comes from
    the usual path. NaN or infinite values take the usual path too.
    """
    pandas = sys.modules.get("pandas")
    if pandas is None or type(frame) is not pandas.DataFrame or frame.shape[0] == 0:
        return None
    columns = list(frame.columns)
    if fitted and columns != fitted:
        return None
    if not columns or len(set(columns)) != len(columns):
        return None
    if not all(str(dtype) in _NUMBERS for dtype in frame.dtypes):
        return None
    array = frame.to_numpy()
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return None
    return array


class ArrayLane:
    """Which (model revision, action, dtype) may take the array lane, learnt once each."""

    def __init__(self, size: int = 4096) -> None:
        self._verdicts: dict[tuple[Any, ...], bool] = {}
        self._size = size
        self._lock = threading.Lock()

    def answer(
        self,
        key: tuple[Any, ...],
        array: np.ndarray,
        takes_arrays: Callable[[], bool],
        by_array: Callable[[np.ndarray], Any],
        usual: Callable[[], tuple[Any, Any]],
    ) -> tuple[Any, Any]:
        """``(input, result)``: ``(array, by_array(array))`` on the lane, else ``usual()``.

        ``usual`` builds the input the usual way, raises the usual errors and
        returns it with the result; the array answer is used only once the
        usual answer for this key was seen to equal it.
        """
        key = (*key, array.dtype.str)
        verdict = self._verdicts.get(key)
        if verdict:
            return array, by_array(array)
        if verdict is False:
            return usual()
        if not takes_arrays():
            self._learn(key, False)
            return usual()
        X, expected = usual()  # noqa: N806
        try:
            got = by_array(array)
        except Exception:  # noqa: BLE001 - any difference means "not this lane"
            self._learn(key, False)
        else:
            self._learn(key, _same(expected, got))
        return X, expected

    def _learn(self, key: tuple[Any, ...], verdict: bool) -> None:
        with self._lock:
            if len(self._verdicts) >= self._size:
                self._verdicts.clear()
            self._verdicts[key] = verdict


def _same(a: Any, b: Any) -> bool:
    """Equal results; floats within a rounding difference (the memory layout may differ)."""
    if type(a) is not type(b):
        return False
    if not isinstance(a, np.ndarray):
        return bool(a == b) if np.isscalar(a) else False
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return bool(np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True))
    return bool(np.array_equal(a, b))


#: Up to this many values each one's type is checked in Python; larger bodies are
#: converted by NumPy at once (a bool among numbers then counts as a number, as
#: scikit-learn would count it).
MAX_VALUES = 4096
#: Integers beyond this do not convert to float64 exactly.
_EXACT_INT = 2**53


@dataclass(frozen=True)
class Rows:
    """Numbers laid out as an array, with their column names (the model's order)."""

    array: np.ndarray
    columns: list[str]

    def frame(self) -> Any:
        """The same values as the DataFrame a JSON body of them would give."""
        import pandas as pd

        return pd.DataFrame(self.array, columns=pd.Index(self.columns, dtype=object))

    def __len__(self) -> int:
        return len(self.array)


def numeric_rows(payload: Any, expected: list[str] | None) -> Rows | None:
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
    if not columns or not data or not all(type(c) is str for c in columns):
        return None
    order = _order(columns, expected)
    if order is None:
        return None
    array = _array(data) if len(columns) * len(data) <= MAX_VALUES else _bulk_array(data)
    if array is None or array.shape[1] != len(columns):
        return None
    if order != list(range(len(columns))):
        array = array[:, order]
        columns = list(expected or columns)
    return Rows(array, columns)


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
        if len(data) * width > MAX_VALUES:
            return columns, data  # NumPy checks the shape of large ones (_bulk_array)
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


def _order(columns: list[str], expected: list[str] | None) -> list[int] | None:
    """Column positions in fitted order (all of them, as sent, without names); None when unsure."""
    if len(set(columns)) != len(columns):
        return None
    if not expected or columns == expected:
        return list(range(len(columns)))
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


def _bulk_array(data: list[list[Any]]) -> np.ndarray | None:
    """A large body's values in one NumPy conversion: float64 or int64, else None."""
    try:
        array = np.array(data)
    except (ValueError, OverflowError):  # ragged rows, huge ints
        return None
    if array.ndim != 2 or array.dtype not in (np.float64, np.int64):  # also ragged rows
        return None  # strings, nulls, booleans only, unsigned or object values
    return array if array.dtype == np.int64 or np.isfinite(array).all() else None


def arrow_rows(table: Any, expected: list[str] | None) -> Rows | None:
    """The columns of an Arrow table as one array, in fitted order, when all are float64
    (or all int64) without nulls; else None (the usual path converts with pandas)."""
    import pyarrow as pa

    names = list(expected or table.column_names)
    if not names or table.num_rows == 0 or not set(names) <= set(table.column_names):
        return None
    if len(set(table.column_names)) != len(table.column_names):
        return None
    columns = [table.column(name) for name in names]
    types = {column.type for column in columns}
    if types not in ({pa.float64()}, {pa.int64()}) or any(c.null_count for c in columns):
        return None
    array = np.column_stack([c.to_numpy() for c in columns])
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        return None
    return Rows(array, names)
