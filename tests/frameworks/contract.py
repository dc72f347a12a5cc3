"""The checks every framework kind passes: store, read back, revisions, runtime, REST.

A subclass names its ``kind`` and ``extra``, makes small models trained in the
test (``make(seed)``, seeds giving different models) and says what the
framework itself predicts in-process (``expected``). Everything else is here.
"""

from __future__ import annotations

import re
import sys

import httpx
import numpy as np
import pandas as pd
import pytest

from omops.blobs import Blobs
from omops.errors import InvalidData, InvalidQuery, PluginError
from omops.omega import Omega
from omops.plugins import BUILTIN, SUPPORTS_ORDER, Stored, default_registry
from omops.runtime.actions import perform

from .conftest import COLUMNS, xy

TIMEOUT = 180  # a worker imports the framework on its first task


class ModelContract:
    kind: str
    extra: str
    #: The modules whose absence must give the pip hint.
    modules: tuple[str, ...]
    #: The input columns the stored metadata names (None: the framework cannot tell).
    feature_names: list[str] | None = COLUMNS
    #: Whether ``put`` without ``kind=`` picks this kind for ``make()``.
    selected_automatically = True
    #: The action that predicts (``predict``), and what ``fit`` means here.
    fits = False

    # -- what subclasses provide ---------------------------------------------

    def make(self, seed: int = 0):
        raise NotImplementedError

    def expected(self, model, X: pd.DataFrame):  # noqa: N803
        """What the framework predicts for ``X`` in-process."""
        raise NotImplementedError

    def put(self, om: Omega, obj, name: str, **kwargs):
        if not self.selected_automatically:
            kwargs.setdefault("kind", self.kind)
        return om.models.put(obj, name, **kwargs)

    def assert_predictions(self, got, want) -> None:
        got = np.asarray(got)
        want = np.asarray(want)
        assert got.shape == want.shape, (got, want)
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(got.astype("float64"), want, rtol=1e-5, atol=1e-6)
        else:
            assert got.tolist() == want.tolist()

    def assert_same(self, got, want) -> None:
        X, _ = xy(seed=3)  # noqa: N806
        self.assert_predictions(self.expected(got, X), self.expected(want, X))

    # -- registration ----------------------------------------------------------

    def test_kind_is_registered_with_its_extra(self):
        assert BUILTIN[self.kind].extra == self.extra
        plugin = default_registry().get(self.kind)
        assert plugin.kind == self.kind and plugin.stores == ("models",)
        assert self.kind in SUPPORTS_ORDER
        assert "predict" in plugin.actions

    def test_missing_framework_names_the_extra(self, om, monkeypatch):
        self.put(om, self.make(), "model")
        for module in self.modules:
            monkeypatch.setitem(sys.modules, module, None)  # "import x" now fails
        with pytest.raises(PluginError) as info:
            om.models.get("model")
        assert f"pip install 'omops[{self.extra}]'" in str(info.value)
        assert self.kind in str(info.value)

    # -- storing ---------------------------------------------------------------

    def test_put_get_roundtrip(self, om):
        model = self.make()
        meta = self.put(om, model, "model")
        assert meta.kind == self.kind
        self.assert_same(om.models.get("model"), model)

    def test_plugin_roundtrip_without_a_catalog(self, tmp_path):
        plugin = default_registry().get(self.kind)
        blobs = Blobs(str(tmp_path / "blobs"))
        model = self.make()
        stored = plugin.put(model, blobs)
        assert isinstance(stored, Stored) and stored.parts
        for part in stored.parts:
            assert part.size == len(blobs.read(part.blob))
        self.assert_same(plugin.get(blobs, stored.parts, stored.kind_meta), model)

    def test_metadata_names_the_inputs(self, om):
        self.put(om, self.make(), "model")
        meta = om.models.metadata("model")
        assert meta.kind == self.kind and meta.size > 0
        assert meta.kind_meta.get("feature_names") == self.feature_names
        assert om.models.list(kind=self.kind) == ["model"]

    def test_each_put_is_a_revision(self, om):
        first = self.put(om, self.make(0), "model", tag="v1")
        second = self.put(om, self.make(1), "model")
        assert first.revision != second.revision
        assert [r for r, _ in om.models.revisions("model")] == [first.revision, second.revision]
        self.assert_same(om.models.get("model@v1"), self.make(0))
        self.assert_same(om.models.get("model"), self.make(1))

    def test_selected_without_kind(self, om):
        if not self.selected_automatically:
            pytest.fail("override: this kind is not selected automatically")  # pragma: no cover
        assert default_registry().select(self.make(), "models").kind == self.kind
        assert om.models.put(self.make(), "auto").kind == self.kind
        assert om.models.put(self.make(), "explicit", kind=self.kind).kind == self.kind

    def test_models_are_not_datasets(self, om):
        with pytest.raises(PluginError):
            om.datasets.put(self.make(), "model", kind=self.kind)
        assert om.datasets.list() == []

    # -- running ---------------------------------------------------------------

    def test_runtime_predict(self, runtime_om):
        om, runtime = runtime_om
        X, _ = xy(seed=5)  # noqa: N806
        om.datasets.put(X, "inputs", append=False)
        model = self.make()
        self.put(om, model, "model")
        result = runtime.model("model").predict("inputs").get(timeout=TIMEOUT)
        self.assert_predictions(result, self.expected(model, X))

    def test_actions_it_has_not_are_refused(self, om):
        self.put(om, self.make(), "model")
        plugin = default_registry().get(self.kind)
        X, y = xy()  # noqa: N806
        for action in sorted({"fit", "partial_fit", "predict_proba", "score"} - plugin.actions):
            with pytest.raises(InvalidQuery, match=f"has no action '{action}'"):
                perform(om, "model", action, X, y)

    def test_an_input_of_the_wrong_width_is_invalid_data(self, om):
        self.put(om, self.make(), "model")
        X, _ = xy()  # noqa: N806
        with pytest.raises(InvalidData):
            perform(om, "model", "predict", X[["a"]].to_numpy())  # one column, not three

    # -- serving ---------------------------------------------------------------

    def test_rest_predict_serves_each_revision_at_once(self, om, served):
        X, _ = xy(seed=7)  # noqa: N806
        body = {"columns": list(X.columns), "data": X.to_numpy().tolist()}
        old, new = self.make(0), self.make(1)
        self.put(om, old, "model", tag="v1")
        headers = {"Omops-Bucket": om.bucket}
        # the server imports the framework on its first request for it
        with httpx.Client(base_url=served.url, headers=headers, timeout=TIMEOUT) as http:
            first = http.post("/api/v1/model/model/predict", json=body)
            assert first.status_code == 200, first.text
            self.assert_predictions(first.json()["result"], self.expected(old, X))
            revision = self.put(om, new, "model").revision  # served the moment it is stored
            latest = http.post("/api/v1/model/model/predict", json=body).json()
            assert latest["revision"] == revision
            self.assert_predictions(latest["result"], self.expected(new, X))
            tagged = http.post("/api/v1/model/model@v1/predict", json=body).json()
            self.assert_predictions(tagged["result"], self.expected(old, X))
            one = http.post("/api/v1/model/model/predict", json={**body, "data": body["data"][:1]})
            assert one.status_code == 200, one.text
            self.assert_predictions(one.json()["result"], self.expected(new, X.iloc[:1]))
            described = http.get("/api/v1/model/model").json()
        assert described["kind"] == self.kind
        assert described["input_columns"] == self.feature_names
        assert "predict" in described["actions"]

    def test_rest_fit_stores_a_new_revision_or_says_there_is_no_fit(self, om, served):
        X, y = xy(n=40, seed=12)  # noqa: N806
        body = {"columns": list(X.columns), "data": X.to_numpy().tolist(), "y": y.tolist()}
        first = self.put(om, self.make(0), "model").revision
        headers = {"Omops-Bucket": om.bucket}
        with httpx.Client(base_url=served.url, headers=headers, timeout=TIMEOUT) as http:
            answer = http.post("/api/v1/model/model/fit", params={"async": "false"}, json=body)
            if not self.fits:
                assert answer.status_code == 400, answer.text
                # the kind has no fit, or this object of it (a Booster) has none
                assert re.search(r"has no (action )?'fit'", answer.json()["message"]), answer.text
                assert [r for r, _ in om.models.revisions("model")] == [first]
                return
            assert answer.status_code == 200, answer.text
            revision = answer.json()["result"]["revision"]
            assert [r for r, _ in om.models.revisions("model")] == [first, revision]
            predicted = http.post("/api/v1/model/model/predict", json=body).json()
        assert predicted["revision"] == revision
        self.assert_predictions(predicted["result"], self.expected(om.models.get("model"), X))
