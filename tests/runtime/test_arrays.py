"""The runtime's array lane: a DataFrame of plain numbers reaches the model as an array.

Observed in this process (the local executor), where the model's input can be
recorded; the contract suite checks the answers on every executor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from omops.errors import TaskFailed
from omops.omega import Omega
from omops.runtime._arrays import frame_array

from .support import make_stats


@pytest.fixture
def om(tmp_path) -> Omega:
    om = Omega(home=str(tmp_path / "home"))
    stats = make_stats()
    om.datasets.put(stats, "stats")
    om.models.put(LogisticRegression().fit(stats[["a", "b"]], stats["sales"]), "forecast")
    return om


def test_the_second_prediction_hands_the_model_an_array(om: Omega, seen: list[type]) -> None:
    stats = make_stats()
    expected = (
        LogisticRegression().fit(stats[["a", "b"]], stats["sales"]).predict(stats[["a", "b"]])
    )
    local = om.runtime.mode(local=True)
    answers = [local.model("forecast").predict("stats[^sales]").get() for _ in range(3)]
    assert answers == [expected.tolist()] * 3
    assert seen == [pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]


def test_a_model_that_selects_columns_by_name_always_gets_the_frame(
    om: Omega, seen: list[type]
) -> None:
    stats = make_stats()
    by_name = ColumnTransformer([("keep", "passthrough", ["a", "b"])])
    model = make_pipeline(by_name, LogisticRegression()).fit(stats[["a", "b"]], stats["sales"])
    om.models.put(model, "named")
    local = om.runtime.mode(local=True)
    for _ in range(3):
        assert (
            local.model("named").predict("stats[^sales]").get()
            == model.predict(stats[["a", "b"]]).tolist()
        )
    assert set(seen) == {pd.DataFrame}


def test_wrong_columns_still_fail_after_learning(om: Omega, seen: list[type]) -> None:
    local = om.runtime.mode(local=True)
    expected = local.model("forecast").predict("stats[^sales]").get()
    local.model("forecast").predict("stats[^sales]").get()
    om.datasets.put(make_stats()[["b", "a"]], "swapped")  # aligned by name: the same answer
    assert local.model("forecast").predict("swapped").get() == expected
    om.datasets.put(make_stats()[["b"]], "partial")
    with pytest.raises(TaskFailed, match=r"input lacks column\(s\) \['a'\]"):
        local.model("forecast").predict("partial").get()
    assert seen == [pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]  # first one: both ways


def test_fitting_and_scoring_never_take_the_lane(om: Omega, seen: list[type]) -> None:
    local = om.runtime.mode(local=True)
    for _ in range(2):
        local.model("forecast").score("stats[^sales]", "stats[sales]").get()
        local.model("forecast").fit("stats[^sales]", "stats[sales]").get()
    assert set(seen) == {pd.DataFrame}


FRAME = pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4]})


@pytest.mark.parametrize(
    ("frame", "fitted", "dtype"),
    [
        (FRAME, ["a", "b"], np.float64),
        (FRAME[["b"]], ["b"], np.int64),
        (FRAME, None, np.float64),
    ],
)
def test_frames_of_numbers_become_arrays(frame: pd.DataFrame, fitted: Any, dtype: Any) -> None:
    array = frame_array(frame, fitted)
    assert array is not None and array.dtype == dtype
    np.testing.assert_array_equal(array, frame.to_numpy())


@pytest.mark.parametrize(
    ("frame", "fitted"),
    [
        pytest.param(FRAME, ["b", "a"], id="another-order"),
        pytest.param(FRAME, ["a"], id="extra-column"),
        pytest.param(FRAME, ["a", "b", "c"], id="missing-column"),
        pytest.param(FRAME.iloc[:0], ["a", "b"], id="no-rows"),
        pytest.param(pd.DataFrame({"a": [1.0, np.nan]}), ["a"], id="nan"),
        pytest.param(pd.DataFrame({"a": [1.0, np.inf]}), ["a"], id="infinity"),
        pytest.param(pd.DataFrame({"a": ["x"]}), ["a"], id="strings"),
        pytest.param(pd.DataFrame({"a": [True]}), ["a"], id="booleans"),
        pytest.param(pd.DataFrame({"a": pd.array([1, None], dtype="Int64")}), ["a"], id="nullable"),
        pytest.param(pd.DataFrame({"a": pd.Categorical([1, 2])}), ["a"], id="category"),
        pytest.param(pd.DataFrame({"a": np.float32([1.0])}), ["a"], id="float32"),
        pytest.param(pd.DataFrame([[1.0, 2.0]], columns=["a", "a"]), None, id="duplicates"),
        pytest.param(pd.Series([1.0]), None, id="a-series"),
        pytest.param([[1.0]], None, id="a-list"),
        pytest.param(np.ones((1, 1)), None, id="an-array"),
    ],
)
def test_anything_else_stays_as_it_is(frame: Any, fitted: Any) -> None:
    assert frame_array(frame, fitted) is None
