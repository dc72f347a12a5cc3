"""The inputs of a model action, read and aligned the same way wherever it runs.

An action's ``X`` and ``Y`` arrive as a dataset reference (``'stats[^sales]'``,
``{'name': 'stats', 'sales__gte': 100}``), as data in memory (a DataFrame,
an array, a list), as a JSON request body (:class:`JsonBody`) or as an Arrow
table (an Arrow IPC request body). :func:`read_input` turns each into what
the model is given; :func:`align` puts a frame's columns in the order the
model was fitted with, by name, everywhere.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from omops.errors import InvalidData
from omops.plugins._tables import MAX_DEPTH, check_objects
from omops.runtime._arrays import Rows

if TYPE_CHECKING:
    from omops.omega import Omega

__all__ = [
    "JsonBody",
    "align",
    "check_columns",
    "frame_from_json",
    "parse_json",
    "read_input",
    "targets",
]

#: Up to this many values, a body of floats only becomes a frame without pandas' inference.
_SMALL = 4096


@dataclass(frozen=True)
class JsonBody:
    """A parsed JSON request body holding rows: split, columns or records shape."""

    payload: Any


def parse_json(body: bytes) -> Any:
    """The JSON value of a request body; InvalidData for no body or bad JSON."""
    if not body:
        raise InvalidData(
            'the request has no body; send JSON like {"columns": [...], "data": [[...]]}'
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc).lower() or "recursion" in str(exc).lower():
            # orjson stops at 1,024 levels; the frame checks its cells at MAX_DEPTH.
            raise InvalidData(
                f"the body nests arrays or objects too deeply ({exc}); a table cell may "
                f"nest at most {MAX_DEPTH} levels"
            ) from None
        raise InvalidData(f"the body is not valid JSON: {exc}") from None


def check_columns(columns: Any) -> list[str]:
    """``columns`` as a list of distinct strings, else InvalidData."""
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InvalidData("'columns' must be a list of column names (strings)")
    if len(set(columns)) != len(columns):
        raise InvalidData("'columns' has duplicate names")
    return columns


def frame_from_json(payload: Any, *, plain_names: bool = False) -> Any:
    """A DataFrame with at least one column from one of the accepted shapes.

    ``{"columns": [...], "data": [[...], ...]}`` (split), ``{"data": {"col":
    [...]}}`` (columns), ``{"data": {"col": {"0": v, ...}}}`` (pandas'
    ``to_json()``: the keys become the index), ``[{"col": v}, ...]`` or
    ``{"data": [{...}]}`` (records).
    Cells holding lists or objects may nest at most 32 levels (``MAX_DEPTH``),
    as in a stored dataset; deeper ones are refused here, before a model or
    Arrow recurses into them.

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


def _frame(payload: Any, plain_names: bool) -> Any:
    import pandas as pd

    data = payload.get("data") if isinstance(payload, Mapping) else payload
    columns = payload.get("columns") if isinstance(payload, Mapping) else None
    try:
        if columns is not None:
            return _split_frame(check_columns(columns), data, plain_names)
        if isinstance(data, Mapping):
            check_columns(list(data))
            if data and all(isinstance(v, Mapping) for v in data.values()):
                return _checked(_keyed_frame(data))
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != len(data) or len({len(v) for v in lists}) > 1:
                raise InvalidData(
                    "with 'data' as {column: [values]}, every value must be a list of one length"
                )
            return _checked(pd.DataFrame(dict(data)))
        if isinstance(data, list) and all(isinstance(r, Mapping) for r in data):
            for row in data:
                check_columns(list(row))
            return _checked(pd.DataFrame.from_records(data))
    except (ValueError, TypeError) as exc:
        if isinstance(exc, InvalidData):
            raise
        raise InvalidData(f"cannot build a table from the body: {exc}") from None
    raise InvalidData(
        'send {"columns": [...], "data": [[...]]}, {"data": {"col": [...]}} or records '
        '[{"col": value}, ...]'
    )


def _keyed_frame(data: Mapping[str, Mapping[str, Any]]) -> Any:
    """``{"col": {"0": v, "1": w}}`` (pandas' ``to_json()``): rows by key, the keys the index.

    Keys that are all integers written as text (what ``to_json`` makes of the
    default index) become integers again; a row missing in a column is null.
    """
    import pandas as pd

    keys = list(dict.fromkeys(k for column in data.values() for k in column))
    try:
        index: list[Any] = [int(k) for k in keys]
    except ValueError:
        index = keys
    if len(set(index)) != len(index):
        index = keys  # "1" and "01" are two rows, not one
    rows = {c: [values.get(k) for k in keys] for c, values in data.items()}
    return pd.DataFrame(rows, index=pd.Index(index))


def _split_frame(columns: list[str], data: Any, plain_names: bool) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(data, Mapping):  # {"columns": [...], "data": {"col": [...]}}
        if list(data) != columns:
            missing = [c for c in columns if c not in data]
            if missing:
                raise InvalidData(f"'data' lacks the column(s) {missing} named in 'columns'")
        return _frame({"data": {c: data[c] for c in columns}}, plain_names)
    if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
        raise InvalidData("with 'columns', 'data' must be a list of rows (lists)")
    bad = [i for i, row in enumerate(data) if len(row) != len(columns)]
    if bad:
        raise InvalidData(
            f"row {bad[0]} has {len(data[bad[0]])} values but there are {len(columns)} columns"
        )
    index = pd.Index(columns, dtype=object) if plain_names else columns
    if (
        data
        and len(data) * len(columns) <= _SMALL
        and all(type(v) is float for row in data for v in row)
    ):
        # What pandas infers for all-float rows (float64 columns), ~3x faster.
        return pd.DataFrame(np.array(data, dtype=np.float64), columns=index)
    return _checked(pd.DataFrame(data, columns=index))


def _checked(frame: Any) -> Any:
    """``frame``, unless a cell nests lists or objects deeper than a dataset may."""
    check_objects(frame)  # only object columns are walked: numbers and text cost nothing
    return frame


def targets(payload: Any) -> Any:
    """``"y"`` of a JSON body as a 1-D array of scalars, or None."""
    if not isinstance(payload, Mapping) or payload.get("y") is None:
        return None
    import numpy as np

    y = payload["y"]
    if not isinstance(y, list) or any(isinstance(v, (list, dict)) for v in y):
        raise InvalidData('"y" must be a list of target values, one per row, like "y": [0, 1]')
    try:
        return np.asarray(y)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidData(f'"y" is not a list of target values: {exc}') from None


def read_input(om: Omega, spec: Any, *, target: bool = False) -> Any:
    """What the model is given for ``spec`` (a reference, data in memory, a body).

    Dataset references are read from ``om.datasets``. A one-column frame read
    for a target becomes a Series (what estimators expect for y). A JSON body
    becomes a DataFrame (see :func:`frame_from_json`); an Arrow table too.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        value = om.datasets.get(spec)
    elif isinstance(spec, Mapping):
        if not isinstance(spec.get("name"), str):
            raise InvalidData(
                "a data argument must be a dataset name or {'name': ..., **filters}, "
                f"got {dict(spec)!r}"
            )
        value = om.datasets.get(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
    elif isinstance(spec, JsonBody):
        value = frame_from_json(spec.payload, plain_names=True)
    elif _is_arrow_table(spec):
        value = spec.to_pandas()
    elif isinstance(spec, Rows):
        value = spec.frame()
    else:
        value = spec
    return _as_target(value) if target else _as_table(value)


def _is_arrow_table(value: Any) -> bool:
    pyarrow = sys.modules.get("pyarrow")
    return pyarrow is not None and isinstance(value, pyarrow.Table)


def _as_target(y: Any) -> Any:
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(y, pandas.DataFrame) and y.shape[1] == 1:
        return y.iloc[:, 0]
    if isinstance(y, list):
        import numpy as np

        return np.asarray(y)
    return y


def _as_table(x: Any) -> Any:
    """A 1-D input (a Series, a list, a vector) as one column: a model wants rows."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(x, pandas.Series):
        return x.to_frame()
    if isinstance(x, list):
        import numpy as np

        x = np.asarray(x)
    if getattr(x, "ndim", None) == 1:
        return x.reshape(-1, 1)
    return x


def align(x: Any, expected: list[str] | None) -> Any:
    """``x``'s columns in the order the model was fitted with.

    Columns are matched by name, extra ones are dropped; missing ones raise
    InvalidData naming them. Inputs without column names (arrays) and models
    fitted without names pass unchanged.
    """
    if not expected or not hasattr(x, "columns"):
        return x
    columns = list(x.columns)  # once: probing a pandas 3 string Index name by name is slow
    if columns == expected:
        return x
    present = set(columns)
    missing = [c for c in expected if c not in present]
    if missing:
        raise InvalidData(
            f"input lacks column(s) {missing}; the model expects {expected}, got {columns}"
        )
    return x[expected]
