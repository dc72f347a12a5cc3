"""``torch.module``: exported programs, TorchScript, and weights plus a factory."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest
import torch

from omops.errors import InvalidData, PluginError
from omops.plugins.torch_module import DEVICE_VARIABLE, with_factory
from omops.runtime.actions import perform

from .conftest import COLUMNS, xy
from .contract import ModelContract
from .nets import make_net

# TorchScript still works in torch 2.13 but warns on every script/save/load
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*is deprecated:DeprecationWarning")


@functools.cache
def net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return make_net(3, 4 + seed).eval()


def run(module, X):  # noqa: N803
    with torch.no_grad():
        return module(torch.tensor(X.to_numpy("float32"))).numpy()


class TorchContract(ModelContract):
    kind = "torch.module"
    extra = "torch"
    modules = ("torch",)

    def expected(self, model, X):  # noqa: N803
        module = model.module() if isinstance(model, torch.export.ExportedProgram) else model
        return run(module, X)

    def test_predict_on_frames_and_arrays(self, om):
        model = self.make()
        om.models.put(model, "model")
        X, _ = xy(seed=9)  # noqa: N806
        frame = perform(om, "model", "predict", X).result
        array = perform(om, "model", "predict", X.to_numpy()).result
        np.testing.assert_allclose(frame, self.expected(model, X), rtol=1e-6)
        np.testing.assert_array_equal(array, frame)


class TestFactory(TorchContract):
    def make(self, seed=0):
        return with_factory(
            net(seed), "frameworks.nets:make_net", {"hidden": 4 + seed}, columns=COLUMNS
        )

    def test_read_back_as_the_factory_builds_it(self, om):
        meta = om.models.put(self.make(), "model")
        assert meta.kind_meta["form"] == "state_dict"
        assert meta.kind_meta["factory"] == "frameworks.nets:make_net"
        got = om.models.get("model")
        assert type(got).__name__ == "Net" and not got.training
        assert got.omops_factory == {"factory": "frameworks.nets:make_net", "kwargs": {"hidden": 4}}

    def test_a_factory_that_does_not_fit_is_refused_at_put(self, om):
        wrong = with_factory(net(0), "frameworks.nets:make_net", {"hidden": 9})
        with pytest.raises(InvalidData, match="does not take these weights"):
            om.models.put(wrong, "model")
        with pytest.raises(InvalidData, match="cannot be imported"):
            om.models.put(with_factory(net(0), "frameworks.nope:make_net"), "model")
        with pytest.raises(InvalidData, match="installed package"):
            om.models.put(with_factory(net(0), "__main__:make_net"), "model")
        assert om.models.list() == []

    def test_a_plain_module_says_how_to_store_it(self, om):
        with pytest.raises(InvalidData, match=r"torch.export.export\(module"):
            om.models.put(make_net(), "model")

    def test_device_is_chosen_at_load(self, om, monkeypatch):
        om.models.put(self.make(), "model")
        monkeypatch.setenv(DEVICE_VARIABLE, "cpu")
        assert next(om.models.get("model").parameters()).device.type == "cpu"
        monkeypatch.setenv(DEVICE_VARIABLE, "cuda")
        if torch.cuda.is_available():  # a GPU machine (scripts/gpu_check.sh)
            assert next(om.models.get("model").parameters()).device.type == "cuda"
        else:
            with pytest.raises(PluginError, match="OMOPS_TORCH_DEVICE='cuda'.*no such device"):
                om.models.get("model")


class TestExported(TorchContract):
    feature_names = None  # an exported program has no column names

    def make(self, seed=0):
        batch = torch.export.Dim("batch")
        return torch.export.export(net(seed), (torch.zeros(2, 3),), dynamic_shapes=({0: batch},))

    def test_metadata_knows_the_width(self, om):
        assert om.models.put(self.make(), "model").kind_meta["n_features"] == 3


class TestScripted(TorchContract):
    def make(self, seed=0):
        scripted = torch.jit.script(net(seed))
        scripted.omops_input_columns = tuple(COLUMNS)
        return scripted


def test_workers_import_torch_lazily(fw_local):
    """Loading omops and its plugin table imports no framework."""
    code = (
        "import sys, omops, omops.plugins.torch_module, omops.runtime.actions\n"
        "from omops.plugins import default_registry\n"
        "[default_registry().get(k) for k in default_registry().kinds]\n"
        "print(sorted(m for m in ('torch', 'keras', 'tensorflow', 'xgboost', 'lightgbm', "
        "'onnx', 'onnxruntime', 'mlflow', 'rpy2') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_threads_are_set_at_load_when_asked(om, monkeypatch):
    from omops.plugins.torch_module import THREADS_VARIABLE

    om.models.put(TestExported().make(), "model")
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(THREADS_VARIABLE, "1")
        om.models.get("model")
        assert torch.get_num_threads() == 1
        monkeypatch.setenv(THREADS_VARIABLE, "many")
        with pytest.raises(PluginError, match="OMOPS_TORCH_THREADS must be a positive number"):
            om.models.get("model")
    finally:
        torch.set_num_threads(before)
