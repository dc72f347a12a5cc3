"""Blobs on ``az://`` (adlfs) against Azurite, the Azure Blob Storage emulator.

``OMOPS_TEST_AZURE`` is the blob endpoint of the Azurite that
``scripts/test.sh`` starts (in memory, telemetry off) on loopback; its one
account and key are Azurite's documented development ones. The connection
string reaches omops as a blob store option (masked wherever shown).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from omops.config import load_settings
from omops.omega import Omega

#: Azurite's development account (public, in Azurite's documentation).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def connection_string() -> str:
    endpoint = os.environ.get("OMOPS_TEST_AZURE")
    if not endpoint:
        pytest.fail(
            "OMOPS_TEST_AZURE is not set: run the tests with `bash scripts/test.sh`, which "
            "starts Azurite on loopback, or `source` the environment it prints"
        )
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint={endpoint};"
    )


def test_datasets_models_and_sweep_on_azure_blob(tmp_path: Path, monkeypatch) -> None:
    import adlfs
    from sklearn.linear_model import LinearRegression

    options = {"connection_string": connection_string()}
    container = f"omops-{uuid.uuid4().hex[:12]}"
    fs = adlfs.AzureBlobFileSystem(**options)
    fs.mkdir(container)
    try:
        monkeypatch.setenv("OMOPS_HOME", str(tmp_path))
        monkeypatch.setenv("OMOPS_BLOBS", f"az://{container}/omops")
        monkeypatch.setenv("OMOPS_BLOBS_OPTIONS", json.dumps(options))
        assert KEY not in repr(load_settings())
        om = Omega()
        x = np.arange(50.0)
        om.datasets.put(pd.DataFrame({"x": x, "y": 2 * x}), "sales", append=False)
        first = om.datasets.revisions("sales")[0][0]
        om.datasets.put(pd.DataFrame({"x": x + 50, "y": 2 * x + 100}), "sales")
        assert len(om.datasets.get("sales")) == 100
        assert om.datasets.get("sales", x__gte=98)["y"].tolist() == [196.0, 198.0]
        assert len(om.datasets.get(f"sales@{first[:12]}")) == 50
        om.models.put(LinearRegression(), "lr")
        om.runtime.model("lr").fit("sales[x]", "sales[y]").get()
        assert om.runtime.model("lr").predict("sales[x]").get()[:2] == pytest.approx([0.0, 2.0])
        assert fs.find(f"{container}/omops/objects")

        om.blobs.put_bytes(b"never committed")
        assert om.sweep(older_than=0)["orphans"] == 1
        assert len(om.datasets.get("sales")) == 100
        om.close()
    finally:
        fs.rm(container, recursive=True)
