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
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["ARRAYS", "ARRAY_ACTIONS", "ArrayLane", "frame_array"]

ARRAY_ACTIONS = frozenset({"predict", "predict_proba", "decision_function", "transform"})
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


#: The lane of this process: which model revisions take arrays, learnt once each.
ARRAYS = ArrayLane()
