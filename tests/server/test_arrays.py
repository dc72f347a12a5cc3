"""The array lane: small numeric bodies reach scikit-learn models as NumPy arrays.

Unit tests of :func:`numeric_rows`, :class:`ArrayLane` and ``_same``, then the
lane through the in-process app: the answers are those of the model on a
DataFrame, the second request really hands the model an ndarray, and errors,
new revisions and tracking behave as on the usual path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

import omops
from omops.cli.app import app as cli
from omops.omega import Omega
from omops.runtime._arrays import MAX_VALUES, ArrayLane, _same, numeric_rows
from omops.runtime._arrays import Rows as NumericRows
from omops.server import create_app
from omops.server.app import app_from_environment

from .support import PREDICT, assert_error, classifier, local_client

ACTIONS = ["predict", "predict_proba", "decision_function"]


# -- numeric_rows -------------------------------------------------------------------------


def test_all_floats_are_float64() -> None:
    rows = numeric_rows({"columns": ["x", "y"], "data": [[1.0, 2.5], [3.0, -4.0]]}, ["x", "y"])
    assert rows is not None
    assert rows.array.dtype == np.float64
    np.testing.assert_array_equal(rows.array, [[1.0, 2.5], [3.0, -4.0]])
    assert rows.columns == ["x", "y"]


def test_all_ints_are_int64() -> None:
    rows = numeric_rows({"columns": ["x", "y"], "data": [[1, 2], [3, -4]]}, ["x", "y"])
    assert rows is not None
    assert rows.array.dtype == np.int64
    np.testing.assert_array_equal(rows.array, [[1, 2], [3, -4]])


def test_ints_and_floats_are_float64() -> None:
    rows = numeric_rows({"columns": ["x", "y"], "data": [[1, 2.5], [3, 4]]}, ["x", "y"])
    assert rows is not None
    assert rows.array.dtype == np.float64
    np.testing.assert_array_equal(rows.array, [[1.0, 2.5], [3.0, 4.0]])


def test_without_fitted_names_the_columns_stay_as_sent() -> None:
    rows = numeric_rows({"columns": ["b", "a"], "data": [[1.0, 2.0]]}, None)
    assert rows is not None
    assert rows.columns == ["b", "a"]
    np.testing.assert_array_equal(rows.array, [[1.0, 2.0]])


def test_columns_are_put_in_the_fitted_order_and_extras_dropped() -> None:
    payload = {
        "columns": ["c", "extra", "a", "b"],
        "data": [[3.0, 99.0, 1.0, 2.0], [30.0, 990.0, 10.0, 20.0]],
    }
    rows = numeric_rows(payload, ["a", "b", "c"])
    assert rows is not None
    assert rows.columns == ["a", "b", "c"]
    np.testing.assert_array_equal(rows.array, [[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])


def test_up_to_max_values_take_the_lane() -> None:
    payload = {"columns": ["x", "y"], "data": [[1.0, 2.0]] * (MAX_VALUES // 2)}
    rows = numeric_rows(payload, ["x", "y"])
    assert rows is not None and rows.array.shape == (MAX_VALUES // 2, 2)


@pytest.mark.parametrize(
    ("data", "dtype"),
    [
        pytest.param([[1.0, 2.0]] * MAX_VALUES, np.float64, id="floats"),
        pytest.param([[1, 2]] * MAX_VALUES, np.int64, id="ints"),
        pytest.param([[1, 2.5]] * MAX_VALUES, np.float64, id="ints-and-floats"),
    ],
)
def test_larger_bodies_are_converted_at_once(data: list[list[Any]], dtype: Any) -> None:
    rows = numeric_rows({"columns": ["y", "x"], "data": data}, ["x", "y"])
    assert rows is not None and rows.array.dtype == dtype and rows.columns == ["x", "y"]
    np.testing.assert_array_equal(rows.array, np.array(data, dtype=dtype)[:, [1, 0]])


@pytest.mark.parametrize(
    "row",
    [
        pytest.param([1.0, "a"], id="string"),
        pytest.param([1.0, None], id="null"),
        pytest.param([True, False], id="booleans-only"),
        pytest.param([1.0, float("nan")], id="nan"),
        pytest.param([1.0, [2.0]], id="nested"),
        pytest.param([1, 2**64], id="beyond-int64"),
        pytest.param([1.0], id="short-row"),
        pytest.param([1.0, 2.0, 3.0], id="long-row"),
    ],
)
def test_larger_bodies_of_anything_else_take_the_usual_path(row: list[Any]) -> None:
    data = [[1.0, 2.0]] * MAX_VALUES + [row] if type(row[0]) is float else [row] * MAX_VALUES
    assert numeric_rows({"columns": ["x", "y"], "data": data}, ["x", "y"]) is None


def test_larger_bodies_count_a_boolean_among_numbers_as_a_number() -> None:
    data = [[1.0, 2.0]] * MAX_VALUES + [[True, 2.0]]
    rows = numeric_rows({"columns": ["x", "y"], "data": data}, ["x", "y"])
    assert rows is not None and rows.array[-1].tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"columns": ["x"], "data": [["1.0"]]}, id="string"),
        pytest.param({"columns": ["x", "y"], "data": [[1.0, "a"]]}, id="string-among-numbers"),
        pytest.param({"columns": ["x"], "data": [[True]]}, id="boolean"),
        pytest.param({"columns": ["x", "y"], "data": [[1, True]]}, id="boolean-among-ints"),
        pytest.param({"columns": ["x"], "data": [[None]]}, id="null"),
        pytest.param({"columns": ["x"], "data": [[1.0], [None]]}, id="null-among-floats"),
        pytest.param({"columns": ["x"], "data": [[[1.0]]]}, id="nested-list"),
        pytest.param({"columns": ["x"], "data": [[{"v": 1.0}]]}, id="nested-object"),
        pytest.param({"columns": ["x"], "data": [[float("nan")]]}, id="nan"),
        pytest.param({"columns": ["x"], "data": [[float("inf")]]}, id="infinity"),
        pytest.param({"columns": ["y"], "data": [[1.0]]}, id="missing-column"),
        pytest.param({"columns": ["x", "x"], "data": [[1.0, 2.0]]}, id="duplicate-columns"),
        pytest.param({"columns": ["x", 1], "data": [[1.0, 2.0]]}, id="non-string-column"),
        pytest.param({"columns": ["x"], "data": [[1.0]], "y": [1]}, id="targets"),
        pytest.param({"columns": ["x"], "data": [[1.0]], "index": [0]}, id="index"),
        pytest.param([{"x": 1.0}, {"x": 2.0, "y": 1.0}], id="records-differing-keys"),
        pytest.param([{"x": 1.0}, 2.0], id="records-and-a-number"),
        pytest.param([], id="no-records"),
        pytest.param({"data": [{"x": 1.0}], "y": [1]}, id="records-and-targets"),
        pytest.param([{"x": "1.0"}], id="records-string"),
        pytest.param({"data": {"x": [1.0], "y": [1.0, 2.0]}}, id="columns-unequal"),
        pytest.param({"data": {"x": 1.0}}, id="columns-not-lists"),
        pytest.param({"data": {}}, id="columns-none"),
        pytest.param({"data": {"x": [None]}}, id="columns-null"),
        pytest.param({"data": "x"}, id="data-a-string"),
        pytest.param({"columns": ["x"], "data": []}, id="no-rows"),
        pytest.param({"columns": [], "data": [[]]}, id="no-columns"),
        pytest.param({"columns": ["x"], "data": "1.0"}, id="data-not-a-list"),
        pytest.param({"columns": "x", "data": [[1.0]]}, id="columns-not-a-list"),
        pytest.param({"columns": ["x"], "data": [1.0]}, id="rows-not-lists"),
        pytest.param({"columns": ["x"], "data": [(1.0,)]}, id="row-a-tuple"),
        pytest.param({"columns": ["x"], "data": [[1.0], [2.0, 3.0]]}, id="ragged"),
        pytest.param({"columns": ["x"], "data": [[1.0], []]}, id="short-row"),
        pytest.param({"columns": ["x"], "data": [[2**53 + 1], [0.5]]}, id="inexact-int"),
        pytest.param({"columns": ["x"], "data": [[-(2**53) - 1], [0.5]]}, id="inexact-neg"),
        pytest.param({"columns": ["x"], "data": [[2**63]]}, id="beyond-int64"),
        pytest.param({"columns": ["x"], "data": [[-(2**63) - 1]]}, id="below-int64"),
        pytest.param({"columns": ["x"], "data": [[10**30], [1]]}, id="huge-int"),
        pytest.param(None, id="no-body"),
        pytest.param("x", id="a-string"),
    ],
)
def test_anything_else_takes_the_usual_path(payload: Any) -> None:
    assert numeric_rows(payload, ["x"]) is None


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param([{"b": 2.0, "a": 1.0}, {"a": 10.0, "b": 20.0}], id="records"),
        pytest.param({"data": [{"b": 2.0, "a": 1.0}, {"b": 20.0, "a": 10.0}]}, id="in-data"),
        pytest.param({"data": {"b": [2.0, 20.0], "a": [1.0, 10.0]}}, id="columns"),
    ],
)
def test_records_and_columns_bodies_take_the_lane_too(payload: Any) -> None:
    rows = numeric_rows(payload, ["a", "b"])
    assert rows is not None and rows.columns == ["a", "b"]
    np.testing.assert_array_equal(rows.array, [[1.0, 2.0], [10.0, 20.0]])
    unnamed = numeric_rows(payload, None)  # a model fitted without names: as sent
    assert unnamed is not None and unnamed.columns == ["b", "a"]
    np.testing.assert_array_equal(unnamed.array, [[2.0, 1.0], [20.0, 10.0]])


def test_the_extreme_exact_ints_take_the_lane() -> None:
    rows = numeric_rows({"columns": ["x"], "data": [[2**53], [0.5]]}, ["x"])
    assert rows is not None and rows.array[0, 0] == 2**53
    rows = numeric_rows({"columns": ["x"], "data": [[2**63 - 1], [-(2**63)]]}, ["x"])
    assert rows is not None and rows.array.dtype == np.int64
    assert rows.array[:, 0].tolist() == [2**63 - 1, -(2**63)]


# -- ArrayLane.answer ---------------------------------------------------------------------


def _rows(*values: float | int) -> NumericRows:
    rows = numeric_rows({"columns": ["x"], "data": [[v] for v in values]}, ["x"])
    assert rows is not None
    return rows


class Calls:
    """Plain callables for :meth:`ArrayLane.answer` that count their calls."""

    def __init__(
        self,
        usual: Any = None,
        by_array: Any = None,
        *,
        takes: bool = True,
        array_error: Exception | None = None,
        usual_error: Exception | None = None,
    ) -> None:
        self.usual_result = np.array([1, 0]) if usual is None else usual
        self.array_result = self.usual_result.copy() if by_array is None else by_array
        self.takes, self.array_error, self.usual_error = takes, array_error, usual_error
        self.counts = {"takes": 0, "by_array": 0, "usual": 0}
        self.arrays: list[np.ndarray] = []

    def takes_arrays(self) -> bool:
        self.counts["takes"] += 1
        return self.takes

    def by_array(self, array: np.ndarray) -> Any:
        self.counts["by_array"] += 1
        self.arrays.append(array)
        if self.array_error is not None:
            raise self.array_error
        return self.array_result

    def usual(self) -> tuple[Any, Any]:
        self.counts["usual"] += 1
        if self.usual_error is not None:
            raise self.usual_error
        return "the frame", self.usual_result

    def answer(self, lane: ArrayLane, rows: NumericRows, key: tuple[Any, ...] = ("m", 1)) -> Any:
        return lane.answer(key, rows.array, self.takes_arrays, self.by_array, self.usual)


def test_the_first_answer_is_the_usual_one_then_the_array_one() -> None:
    lane, calls, rows = ArrayLane(), Calls(), _rows(1.0, 18.0)
    X, result = calls.answer(lane, rows)  # noqa: N806
    assert X == "the frame" and result is calls.usual_result
    assert calls.counts == {"takes": 1, "by_array": 1, "usual": 1}
    assert calls.arrays == [rows.array]

    X, result = calls.answer(lane, rows)  # noqa: N806
    assert X is rows.array and result is calls.array_result
    assert calls.counts == {"takes": 1, "by_array": 2, "usual": 1}


def test_a_different_answer_keeps_the_usual_path() -> None:
    lane, calls, rows = ArrayLane(), Calls(np.array([1, 0]), np.array([0, 1])), _rows(1.0, 18.0)
    for _ in range(3):
        X, result = calls.answer(lane, rows)  # noqa: N806
        assert X == "the frame" and result is calls.usual_result
    assert calls.counts == {"takes": 1, "by_array": 1, "usual": 3}


def test_an_error_of_the_array_keeps_the_usual_path() -> None:
    lane, calls, rows = ArrayLane(), Calls(array_error=ValueError("no names")), _rows(1.0)
    for _ in range(3):
        X, result = calls.answer(lane, rows)  # noqa: N806
        assert X == "the frame" and result is calls.usual_result
    assert calls.counts == {"takes": 1, "by_array": 1, "usual": 3}


def test_a_plugin_without_arrays_never_gets_one() -> None:
    lane, calls, rows = ArrayLane(), Calls(takes=False), _rows(1.0)
    for _ in range(3):
        X, result = calls.answer(lane, rows)  # noqa: N806
        assert X == "the frame" and result is calls.usual_result
    assert calls.counts == {"takes": 1, "by_array": 0, "usual": 3}


def test_each_dtype_is_learnt_on_its_own() -> None:
    lane, calls, floats = ArrayLane(), Calls(), _rows(1.0)
    calls.answer(lane, floats)
    assert calls.answer(lane, floats)[0] is floats.array
    ints = _rows(1, 2)
    assert ints.array.dtype == np.int64
    X, _ = calls.answer(lane, ints)  # noqa: N806
    assert X == "the frame", "int64 is learnt anew"
    assert calls.counts["usual"] == 2 and calls.counts["takes"] == 2
    assert calls.answer(lane, ints)[0] is ints.array


def test_each_key_is_learnt_on_its_own() -> None:
    lane, calls, rows = ArrayLane(), Calls(), _rows(1.0)
    calls.answer(lane, rows, ("m", 1, "predict"))
    assert calls.answer(lane, rows, ("m", 1, "predict"))[0] is rows.array
    assert calls.answer(lane, rows, ("m", 2, "predict"))[0] == "the frame"
    assert calls.answer(lane, rows, ("m", 1, "predict_proba"))[0] == "the frame"


def test_errors_of_the_usual_path_propagate_and_teach_nothing() -> None:
    lane, rows = ArrayLane(), _rows(1.0)
    failing = Calls(usual_error=LookupError("usual error"))
    with pytest.raises(LookupError, match="usual error"):
        failing.answer(lane, rows)
    assert failing.counts["by_array"] == 0
    calls = Calls()
    assert calls.answer(lane, rows)[0] == "the frame", "nothing was learnt from the error"
    assert calls.answer(lane, rows)[0] is rows.array


def test_errors_of_a_learnt_array_propagate() -> None:
    lane, calls, rows = ArrayLane(), Calls(), _rows(1.0)
    calls.answer(lane, rows)
    calls.array_error = ValueError("bad input")
    with pytest.raises(ValueError, match="bad input"):
        calls.answer(lane, rows)


def test_a_full_lane_starts_afresh() -> None:
    lane, calls, rows = ArrayLane(size=2), Calls(), _rows(1.0)
    for model in ("a", "b", "c"):
        calls.answer(lane, rows, (model,))
    assert calls.answer(lane, rows, ("c",))[0] is rows.array
    assert calls.answer(lane, rows, ("a",))[0] == "the frame", "forgotten, learnt again"


# -- _same --------------------------------------------------------------------------------


def test_float_arrays_within_rounding_are_the_same() -> None:
    a = np.array([[0.1, 0.2], [0.3, 0.4]])
    assert _same(a, a.copy())
    assert _same(a, a + 1e-17)
    assert _same(a, np.asfortranarray(a))
    assert _same(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]))
    assert not _same(a, a + 1e-6)
    assert not _same(np.array([np.nan, 1.0]), np.array([0.0, 1.0]))


def test_int_and_label_arrays_must_be_equal() -> None:
    assert _same(np.array([0, 1, 1]), np.array([0, 1, 1]))
    assert not _same(np.array([0, 1, 1]), np.array([0, 1, 0]))
    labels = np.array(["no", "yes"], dtype=object)
    assert _same(labels, labels.copy())
    assert not _same(labels, np.array(["no", "no"], dtype=object))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(np.zeros(2), np.zeros((2, 1)), id="shape"),
        pytest.param(np.zeros(2), np.zeros(3), id="length"),
        pytest.param(np.zeros(2), np.zeros(2, dtype=np.float32), id="float-width"),
        pytest.param(np.zeros(2), np.zeros(2, dtype=np.int64), id="float-int"),
        pytest.param(np.array([0, 1]), np.array([0, 1], dtype=np.int32), id="int-width"),
        pytest.param(np.zeros(2), [0.0, 0.0], id="array-list"),
        pytest.param([0.0, 0.0], [0.0, 0.0], id="lists"),
        pytest.param(pd.DataFrame({"x": [1.0]}), pd.DataFrame({"x": [1.0]}), id="frames"),
        pytest.param(pd.Series([1.0]), pd.Series([1.0]), id="series"),
        pytest.param(1.0, 2.0, id="other-scalar"),
        pytest.param(1, 1.0, id="scalar-types"),
        pytest.param(np.float64(1.0), 1.0, id="numpy-python-scalar"),
        pytest.param(None, None, id="none"),
    ],
)
def test_not_the_same(a: Any, b: Any) -> None:
    assert not _same(a, b)


def test_equal_scalars_are_the_same() -> None:
    assert _same(0.5, 0.5)
    assert _same(np.float64(0.5), np.float64(0.5))
    assert _same("yes", "yes")


# -- through the app ----------------------------------------------------------------------


def pair_frame() -> pd.DataFrame:
    """Columns ``a`` and ``b``, three classes of ``a - b``."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    frame["label"] = np.digitize(frame["a"] - frame["b"], [-0.5, 0.5])
    return frame


def pair_model() -> LogisticRegression:
    frame = pair_frame()
    return LogisticRegression().fit(frame[["a", "b"]], frame["label"])


def post(client: TestClient, name: str, action: str, body: Any) -> dict[str, Any]:
    response = client.post(f"/api/v1/model/{name}/{action}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def by_frame(model: Any, action: str, body: dict[str, Any], fitted: list[str]) -> Any:
    """What the model answers for the body's values as a DataFrame."""
    frame = pd.DataFrame(body["data"], columns=body["columns"])[fitted]
    return getattr(model, action)(frame).tolist()


PAIR_BODIES = {
    "one-row": {"columns": ["a", "b"], "data": [[0.7, -0.4]]},
    "rows": {"columns": ["a", "b"], "data": [[0.7, -0.4], [-1.25, 0.3], [0.1, 0.1], [2.0, 1.5]]},
    "reordered": {"columns": ["b", "a"], "data": [[-0.4, 0.7], [0.3, -1.25], [1.5, 2.0]]},
    "extra-column": {"columns": ["z", "b", "a"], "data": [[5.0, -0.4, 0.7], [6.0, 0.3, -1.25]]},
    "ints": {"columns": ["a", "b"], "data": [[1, 0], [-1, 2], [0, 0]]},
    "ints-and-floats": {"columns": ["b", "a"], "data": [[1, 0.25], [-0.5, 2]]},
}


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("shape", sorted(PAIR_BODIES))
def test_the_lane_answers_as_the_dataframe_does(
    client: TestClient, store: Omega, seen: list[type], action: str, shape: str
) -> None:
    model = pair_model()
    store.models.put(model, "pair")
    body = PAIR_BODIES[shape]
    want = by_frame(model, action, body, ["a", "b"])

    first = post(client, "pair", action, body)
    assert first["result"] == want
    assert first["rows"] == len(body["data"])
    assert seen == [pd.DataFrame, np.ndarray], "answered the usual way, checked by array"

    seen.clear()
    second = post(client, "pair", action, body)
    assert second == first
    assert seen == [np.ndarray], "the second request takes the lane"


@pytest.mark.parametrize("action", ACTIONS)
def test_the_stored_forecast_takes_the_lane(
    client: TestClient, seen: list[type], action: str
) -> None:
    body = {"columns": ["x"], "data": [[1.0], [9.5], [18.0]]}
    want = by_frame(classifier(), action, body, ["x"])
    assert post(client, "forecast", action, body)["result"] == want
    seen.clear()
    one = {"columns": ["x"], "data": [[12.0]]}
    assert post(client, "forecast", action, one)["result"] == by_frame(
        classifier(), action, one, ["x"]
    )
    assert seen == [np.ndarray]


def test_the_lane_also_transforms(client: TestClient, store: Omega, seen: list[type]) -> None:
    scaler = StandardScaler().fit(pair_frame()[["a", "b"]])
    store.models.put(scaler, "scaler")
    body = {"columns": ["b", "a"], "data": [[0.5, 1.0], [-2.0, 0.0]]}
    want = by_frame(scaler, "transform", body, ["a", "b"])
    assert post(client, "scaler", "transform", body)["result"] == want
    seen.clear()
    assert post(client, "scaler", "transform", body)["result"] == want
    assert seen == [np.ndarray]


def test_the_lane_is_used_by_put_too(client: TestClient, seen: list[type]) -> None:
    body = {"columns": ["x"], "data": [[18.0]]}
    for _ in range(2):
        response = client.put(PREDICT, json=body)
        assert response.status_code == 200 and response.json()["result"] == [1]
    assert seen == [pd.DataFrame, np.ndarray, np.ndarray]


def test_a_column_transformer_by_name_never_gets_an_array(
    client: TestClient, store: Omega, seen: list[type]
) -> None:
    frame = pair_frame()
    model = make_pipeline(
        ColumnTransformer([("scale", StandardScaler(), ["b", "a"])]), LogisticRegression()
    ).fit(frame[["a", "b"]], frame["label"])
    store.models.put(model, "named")
    bodies = [PAIR_BODIES["rows"], PAIR_BODIES["reordered"], PAIR_BODIES["rows"]]
    for body in bodies:
        for action in ACTIONS:
            assert post(client, "named", action, body)["result"] == by_frame(
                model, action, body, ["a", "b"]
            )
    assert seen and set(seen) == {pd.DataFrame}


def test_a_dataset_input_takes_the_lane_as_on_every_path(
    client: TestClient, seen: list[type]
) -> None:
    for _ in range(3):
        response = client.post(PREDICT, params={"datax": "stats[x]"})
        assert response.json()["result"] == [0] * 10 + [1] * 10
    assert seen == [pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]


def test_other_bodies_take_the_usual_path(client: TestClient, seen: list[type]) -> None:
    one = {"columns": ["x"], "data": [[18.0]]}
    post(client, "forecast", "predict", one)
    post(client, "forecast", "predict", one)
    seen.clear()
    with_targets = {"columns": ["x"], "data": [[18.0], [19.0]], "y": [1, 1]}
    assert post(client, "forecast", "predict", with_targets)["result"] == [1, 1]
    assert post(client, "forecast", "score", {**one, "y": [1]})["result"] == 1.0
    assert set(seen) == {pd.DataFrame}
    for body in (  # read as a frame, aligned to the fitted columns: then plain numbers
        [{"x": 18.0}, {"x": 19.0, "extra": 1.0}],  # differing keys
        {"data": {"x": [18.0, 19.0], "flag": [True, False]}},  # a boolean, not a feature
    ):
        assert post(client, "forecast", "predict", body)["result"] == [1, 1]


def test_records_and_columns_bodies_are_laned_with_the_same_answers(
    client: TestClient, seen: list[type]
) -> None:
    split = {"columns": ["x"], "data": [[18.0], [-3.0]]}
    expected = post(client, "forecast", "predict", split)["result"]
    post(client, "forecast", "predict", split)
    seen.clear()
    for body in ([{"x": 18.0}, {"x": -3.0}], {"data": {"x": [18.0, -3.0]}}):
        assert post(client, "forecast", "predict", body)["result"] == expected
    assert seen == [np.ndarray, np.ndarray]


def test_a_missing_column_is_still_a_400_after_learning(
    client: TestClient, seen: list[type]
) -> None:
    one = {"columns": ["x"], "data": [[1.0]]}
    post(client, "forecast", "predict", one)
    post(client, "forecast", "predict", one)
    assert seen[-1] is np.ndarray
    response = client.post(PREDICT, json={"columns": ["z"], "data": [[1.0]]})
    assert_error(response, 400, "lacks column(s) ['x']")
    response = client.post(PREDICT, json={"columns": ["z"], "data": [[1]]})
    assert_error(response, 400, "lacks column(s) ['x']")


@pytest.mark.filterwarnings("ignore:X has feature names:UserWarning")
def test_a_wrong_number_of_features_is_still_a_400_after_learning(
    client: TestClient, store: Omega, seen: list[type]
) -> None:
    """A model fitted on an array has no column names: the width is checked by the model."""
    frame = pair_frame()
    model = LogisticRegression().fit(frame[["a", "b"]].to_numpy(), frame["label"])
    store.models.put(model, "plain")
    body = {"columns": ["p", "q"], "data": [[0.7, -0.4]]}
    want = model.predict(np.array(body["data"])).tolist()
    assert post(client, "plain", "predict", body)["result"] == want
    assert post(client, "plain", "predict", body)["result"] == want
    assert seen[-1] is np.ndarray
    for data in ([[0.7, -0.4, 1.0]], [[0.7]]):
        width = len(data[0])
        response = client.post(
            "/api/v1/model/plain/predict", json={"columns": list("pqr")[:width], "data": data}
        )
        assert_error(response, 400, f"{width} features", "could not predict")


def test_a_new_revision_is_served_with_its_own_answers(
    client: TestClient, store: Omega, seen: list[type]
) -> None:
    body = {"columns": ["x"], "data": [[1.0], [18.0]]}
    first = store.models.metadata("forecast").revision
    for _ in range(2):
        answer = post(client, "forecast", "predict", body)
        assert answer["result"] == [0, 1] and answer["revision"] == first
    proba = post(client, "forecast", "predict_proba", body)["result"]
    post(client, "forecast", "predict_proba", body)
    assert seen[-1] is np.ndarray

    revision = store.models.put(classifier(flipped=True), "forecast").revision
    seen.clear()
    answer = post(client, "forecast", "predict", body)
    assert answer["result"] == [1, 0] and answer["revision"] == revision
    assert seen == [pd.DataFrame, np.ndarray], "the new revision is learnt anew"
    seen.clear()
    assert post(client, "forecast", "predict", body)["result"] == [1, 0]
    assert seen == [np.ndarray]
    flipped = post(client, "forecast", "predict_proba", body)["result"]
    assert flipped == by_frame(classifier(flipped=True), "predict_proba", body, ["x"])
    assert flipped != proba
    assert post(client, "forecast@v1", "predict", body)["result"] == [0, 1]


# -- tracking -----------------------------------------------------------------------------


def test_a_laned_prediction_is_tracked_with_the_column_names(
    client: TestClient, store: Omega, seen: list[type]
) -> None:
    store.models.put(pair_model(), "pair")
    exp = store.runtime.experiment("prod")
    exp.track("pair")
    body = {"columns": ["b", "extra", "a"], "data": [[-0.4, 9.0, 0.7], [0.3, 9.0, -1.25]]}
    answers = [post(client, "pair", "predict", body)["result"] for _ in range(2)]
    assert seen[-1] is np.ndarray

    predictions = exp.data(event="predict")
    assert len(predictions) == 2
    for value, answer in zip(predictions["value"], answers, strict=True):
        assert value["input"]["rows"] == 2
        assert value["input"]["data"]["columns"] == ["a", "b"]
        assert value["input"]["data"]["data"] == [[0.7, -0.4], [-1.25, 0.3]]
        assert value["output"] == answer
    first, laned = predictions["value"]
    assert laned["input"] == first["input"]  # the same record as from the DataFrame


def kept_pipeline() -> Pipeline:
    """Fitted on columns a, b; ``feature_names_in_`` fails on its 'passthrough' first step."""
    frame = pair_frame()
    model = Pipeline([("keep", "passthrough"), ("lr", LogisticRegression())])
    return model.fit(frame[["a", "b"]], frame["label"])


KEPT_BAD_BODIES = {
    "reordered": {"columns": ["b", "a"], "data": [[-2.0, 2.0]]},
    "missing": {"columns": ["a", "c"], "data": [[2.0, -2.0]]},
}


@pytest.mark.parametrize("bad", sorted(KEPT_BAD_BODIES))
def test_a_pipeline_without_top_level_names_refuses_wrong_columns(
    client: TestClient, store: Omega, bad: str
) -> None:
    """The usual path (nothing learnt yet): the pipeline's own check answers 400."""
    assert "feature_names" not in store.models.put(kept_pipeline(), "kept").kind_meta
    response = client.post("/api/v1/model/kept/predict", json=KEPT_BAD_BODIES[bad])
    assert_error(response, 400, "feature names")


@pytest.mark.parametrize("bad", sorted(KEPT_BAD_BODIES))
def test_a_pipeline_whose_steps_know_names_the_whole_does_not_never_takes_arrays(
    client: TestClient, store: Omega, seen: list[type], bad: str
) -> None:
    """Only the usual path can check the column order such a pipeline's steps expect."""
    store.models.put(kept_pipeline(), "kept")
    body = {"columns": ["a", "b"], "data": [[2.0, -2.0]]}
    assert post(client, "kept", "predict", body)["result"] == [2]
    assert post(client, "kept", "predict", body)["result"] == [2]
    assert np.ndarray not in seen
    response = client.post("/api/v1/model/kept/predict", json=KEPT_BAD_BODIES[bad])
    assert_error(response, 400, "feature names")


def test_a_server_without_arrays_hands_models_dataframes(store: Omega, seen: list[type]) -> None:
    with local_client(create_app(store, arrays=False)) as plain:
        for _ in range(3):
            assert post(plain, "forecast", "predict", {"columns": ["x"], "data": [[18.0]]})
    assert seen == [pd.DataFrame] * 3


@pytest.mark.parametrize(("flag", "value"), [("--no-arrays", "0"), ("--arrays", "1")])
def test_serve_passes_the_arrays_switch_to_its_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flag: str, value: str
) -> None:
    import uvicorn

    started: list[str | None] = []
    monkeypatch.setattr(
        uvicorn, "run", lambda *a, **k: started.append(os.environ.get("OMOPS_SERVER_ARRAYS"))
    )
    monkeypatch.setenv("OMOPS_HOME", str(tmp_path))
    for name in ("OMOPS_SERVER_ARRAYS", "OMOPS_SERVER_REQUIRE_KEYS", "OMOPS_SERVER_MAX_BODY"):
        monkeypatch.delenv(name, raising=False)  # serve sets them: undone after the test
    omops.reset()
    try:
        done = CliRunner().invoke(cli, ["runtime", "serve", flag])
    finally:
        omops.reset()
    assert done.exit_code == 0, done.output
    assert started == [value]
    assert "OMOPS_SERVER_ARRAYS" not in os.environ, "serve puts the environment back"
    monkeypatch.setenv("OMOPS_SERVER_ARRAYS", value)
    assert app_from_environment().state.arrays is (value == "1")
