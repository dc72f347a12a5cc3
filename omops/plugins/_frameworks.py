"""What the model-framework plugins share: lazy imports, inputs as arrays, parameters as JSON.

Nothing here imports a framework at module import time: each plugin asks for
its framework with :func:`framework` when it first needs it, and a missing one
becomes a :class:`~omops.errors.PluginError` naming the extra to install.
"""

from __future__ import annotations

import importlib
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from omops.blobs import Blobs
from omops.catalog import PartRecord
from omops.errors import InvalidData, PluginError

__all__ = [
    "INPUT_COLUMNS",
    "as_matrix",
    "blob_file",
    "check_action",
    "columns_of",
    "framework",
    "import_object",
    "non_default_params",
    "remember_columns",
    "remembered_columns",
    "stored_file",
    "to_numpy",
]

#: The attribute where a model without column names of its own (Keras,
#: PyTorch) keeps the input columns it was fitted on or declared with.
INPUT_COLUMNS = "omops_input_columns"


def framework(kind: str, module: str, *, extra: str, what: str) -> ModuleType:
    """Import ``module`` for ``kind``; PluginError with the pip command when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PluginError(
            f"kind {kind!r} needs {what} ({exc}): pip install 'omops[{extra}]'"
        ) from None


def check_action(kind: str, actions: frozenset[str], action: str) -> None:
    if action not in actions:
        raise InvalidData(
            f"kind {kind!r} has no action {action!r}; it has {', '.join(sorted(actions))}"
        )


def columns_of(X: Any) -> list[str] | None:  # noqa: N803
    """The column names of a DataFrame, else None."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(X, pandas.DataFrame):
        return [str(c) for c in X.columns]
    return None


def remember_columns(model: Any, X: Any) -> None:  # noqa: N803
    """Keep the columns a model was just fitted on (frameworks that do not keep them)."""
    columns = columns_of(X)
    if columns is not None:
        try:
            setattr(model, INPUT_COLUMNS, tuple(columns))
        except (AttributeError, TypeError, RuntimeError):  # a model that takes no attributes
            pass


def remembered_columns(model: Any) -> list[str] | None:
    """The columns kept by :func:`remember_columns` or set by the user, else None."""
    columns = getattr(model, INPUT_COLUMNS, None)
    if columns is None:
        return None
    if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
        raise InvalidData(
            f"{INPUT_COLUMNS} must be a sequence of column names (strings), got {columns!r}"
        )
    return list(columns)


def as_matrix(X: Any, dtype: Any, kind: str) -> Any:  # noqa: N803
    """``X`` (a DataFrame, Series, array or list) as a 2-D NumPy array of ``dtype``.

    Columns must be numbers or booleans; missing values become NaN.
    """
    import numpy as np

    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(X, pandas.Series):
        X = X.to_frame()  # noqa: N806
    if pandas is not None and isinstance(X, pandas.DataFrame):
        for name, column_dtype in X.dtypes.items():
            if not (
                pandas.api.types.is_numeric_dtype(column_dtype)
                or pandas.api.types.is_bool_dtype(column_dtype)
            ):
                raise InvalidData(
                    f"kind {kind!r} takes numbers only; column {name!r} has dtype {column_dtype}"
                )
        return X.to_numpy(dtype=dtype, na_value=np.nan)
    array = np.asarray(X)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.dtype.kind not in "biuf":
        raise InvalidData(f"kind {kind!r} takes numbers only; got an array of dtype {array.dtype}")
    return array.astype(dtype, copy=False)


def to_numpy(value: Any) -> Any:
    """A 1-D Series or list result as a NumPy array; other values unchanged."""
    import numpy as np

    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.Series):
        return value.to_numpy()
    if isinstance(value, list):
        return np.asarray(value)
    return value


def non_default_params(model: Any, kind: str) -> dict[str, Any]:
    """The scikit-learn-style parameters of ``model`` that differ from its class defaults.

    Only these are stored (as JSON), so a later version of the framework
    applies its own defaults to the rest. A parameter that is not plain JSON
    (a function, an object) cannot be stored without pickle: InvalidData.
    """
    defaults = type(model)().get_params(deep=False)
    found: dict[str, Any] = {}
    for name, value in model.get_params(deep=False).items():
        if _same_value(value, defaults.get(name, object())):
            continue
        found[name] = _json_value(value, name, kind)
    return found


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return False


def _json_value(value: Any, name: str, kind: str) -> Any:
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        value = item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v, name, kind) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _json_value(v, name, kind) for k, v in value.items()}
    raise InvalidData(
        f"kind {kind!r} stores parameters as JSON; parameter {name!r} is {value!r} "
        f"({type(value).__name__}), which would need pickle: set it to a plain value"
    )


def import_object(path: str, what: str) -> Any:
    """The object named ``'package.module:name'`` (a class or function of an installed package)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute or module_name == "__main__":
        raise InvalidData(
            f"{what} must be named 'package.module:name' in an installed package, got {path!r}"
        )
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidData(f"{what} {path!r} cannot be imported here: {exc}") from None
    return found


def stored_file(blobs: Blobs, path: Path) -> PartRecord:
    """A file written by a framework, copied into ``blobs`` as one part."""

    def write(out: Any) -> None:
        with path.open("rb") as source:
            shutil.copyfileobj(source, out, 1 << 20)

    key, size = blobs.put_with(write)
    return PartRecord(blob=key, size=size)


@contextmanager
def blob_file(blobs: Blobs, key: str, name: str) -> Iterator[Path]:
    """A blob as a file called ``name`` in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="omops-") as folder:
        path = Path(folder) / name
        with blobs.open(key) as source, path.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        yield path


@contextmanager
def scratch() -> Iterator[Path]:
    """A temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="omops-") as folder:
        yield Path(folder)


def env_setting(name: str) -> str | None:
    """An environment variable read when a model is loaded (never at import)."""
    value = os.environ.get(name, "").strip()
    return value or None


def call_or_invalid(kind: str, what: str, call: Callable[[], Any], errors: tuple[type, ...]) -> Any:
    """``call()``, its framework's own errors about the input as InvalidData."""
    try:
        return call()
    except errors as exc:
        raise InvalidData(f"kind {kind!r} could not {what}: {exc}") from None


def describe_model(kind_meta: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The user-facing part of ``kind_meta``."""
    return {k: kind_meta[k] for k in keys if k in kind_meta}
