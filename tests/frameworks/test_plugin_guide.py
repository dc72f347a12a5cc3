"""docs/plugins.md: a third-party plugin, built and installed as a package, joins by entry point."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from omops.omega import Omega
from omops.plugins import ENTRY_POINT_GROUP, default_registry
from omops.plugins import registry as registry_module
from omops.runtime.actions import perform

from .contract import TIMEOUT

EXAMPLE = Path(__file__).resolve().parent / "plugin_example"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example package built and pip-installed into a folder of its own."""
    source = shutil.copytree(EXAMPLE, tmp_path_factory.mktemp("src") / "omops-polyfit")
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    return target


@pytest.fixture
def installed(site, monkeypatch):
    """The installed package on sys.path; the default registry rebuilt from entry points."""
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setattr(registry_module, "_default", None)
    yield site
    sys.modules.pop("omops_polyfit", None)


def test_entry_point_registers_the_kind_unimported(installed):
    from importlib.metadata import entry_points

    (found,) = [e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name == "polyfit.model"]
    assert found.value == "omops_polyfit:PolyfitPlugin"
    registry = default_registry()
    assert "polyfit.model" in registry.kinds
    assert registry.order[-1] == "polyfit.model"  # after the built-in kinds
    assert "omops_polyfit" not in sys.modules  # registered as a string


def test_third_party_models_are_stored_fitted_and_served(installed, fw_local, tmp_path):
    from omops_polyfit import Polynomial

    # an Omega made now, with the rebuilt default registry
    base = Omega(catalog=fw_local.catalog, blobs=fw_local.blobs, home=fw_local.home)
    om = base[f"t{uuid.uuid4().hex[:12]}"]
    x = pd.DataFrame({"x": np.arange(10.0)})
    y = 3 * x["x"] ** 2 - 1
    om.datasets.put(x.assign(y=y), "points")
    assert om.models.put(Polynomial(degree=2), "curve").kind == "polyfit.model"
    assert om.models.metadata("curve").details == {"degree": 2}
    summary = om.runtime.model("curve").fit("points[x]", "points[y]").get(timeout=TIMEOUT)
    assert len(om.models.revisions("curve")) == 2 and summary["model"] == "curve"
    np.testing.assert_allclose(om.models.get("curve").coefficients, [3, 0, -1], atol=1e-9)
    np.testing.assert_allclose(perform(om, "curve", "predict", x).result, y, atol=1e-9)
    # a server with the package installed (on its path) serves the kind too
    from server.support import Server

    with Server(
        fw_local.home,
        OMOPS_CATALOG=fw_local.catalog,
        OMOPS_BLOBS=fw_local.blobs,
        PYTHONPATH=str(installed),
    ) as server:
        answer = httpx.post(
            f"{server.url}/api/v1/model/curve/predict",
            json={"columns": ["x"], "data": [[2.0], [4.0]]},
            headers={"Omops-Bucket": om.bucket},
            timeout=TIMEOUT,
        )
    base.close()
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == pytest.approx([11.0, 47.0])


def test_without_the_package_the_kind_is_unknown(monkeypatch):
    monkeypatch.setattr(registry_module, "_default", None)
    assert "polyfit.model" not in default_registry().kinds
