"""Task results as plain JSON values."""

from __future__ import annotations

import sys
from typing import Any

import orjson

from omops.errors import InvalidData

__all__ = ["to_json"]


def to_json(value: Any) -> Any:
    """Plain JSON values from NumPy/pandas results (arrays become lists)."""
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        if isinstance(value, pandas.DataFrame):
            return orjson.loads(value.to_json(orient="split", date_format="iso"))
        if isinstance(value, (pandas.Series, pandas.Index)):
            value = value.to_numpy()
    try:
        text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=_numpy_default)
        return orjson.loads(text)
    except TypeError as exc:
        raise InvalidData(
            f"the task result of type {type(value).__name__} is not JSON-able; "
            "store it with rName= instead"
        ) from exc


def _numpy_default(value: Any) -> Any:
    """What orjson leaves to us: non-contiguous or object arrays, NumPy scalars it skips."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")
