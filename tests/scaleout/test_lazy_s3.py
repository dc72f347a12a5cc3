"""Lazy frames over parts in S3 (moto's server, through s3fs), read where they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from omops.omega import Omega

from .conftest import S3


def test_getl_groupby_merge_transform_persist_on_s3(s3: S3, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OMOPS_HOME", str(tmp_path))
    monkeypatch.setenv("OMOPS_BLOBS", s3.url("lazy"))
    om = Omega()
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"g": rng.choice(["a", "b", "c"], 3000), "x": rng.random(3000)})
    om.datasets.put(data.iloc[:1000], "sales")
    om.datasets.put(data.iloc[1000:], "sales")
    om.datasets.put(pd.DataFrame({"g": ["a", "b"], "label": ["A", "B"]}), "labels")

    mdf = om.datasets.getl("sales")
    assert mdf._filesystems() == [om.blobs.fs]  # DuckDB reads the parts through s3fs
    pd.testing.assert_frame_equal(mdf.query(x__gt=0.5).value, data[data.x > 0.5])
    pd.testing.assert_frame_equal(
        mdf.groupby("g").agg(total=("x", "sum")).value, data.groupby("g").agg(total=("x", "sum"))
    )
    merged = mdf.merge(om.datasets.getl("labels"), on="g").groupby("label").size().value
    assert merged.to_dict() == data[data.g != "c"].groupby("g").size().rename(str.upper).to_dict()

    def scaled(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(y=df["x"] * 10)

    assert mdf.transform(scaled, chunksize=700).persist("scaled").rows == 3000
    pd.testing.assert_frame_equal(om.datasets.get("scaled"), scaled(data))
    parts = om.catalog.parts(om.catalog.lookup("default", "datasets", "scaled"))
    assert len(parts) == 5 and all(s3.keys(f"lazy/objects/{p.blob[:2]}") for p in parts)
    assert mdf.to_dask().npartitions == 2
    om.close()
