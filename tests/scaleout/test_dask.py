"""Dask: DataFrames in and out of the store, and the ``dask://`` executor.

A local ``distributed`` cluster with worker processes (started by the test,
on loopback) writes a Dask DataFrame's partitions as Parquet parts, reads
stored datasets back lazily (from a local folder and from S3), and runs model
actions sent through the executor registry (``OMOPS_BROKER=dask://...``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_task_stream
from sklearn.linear_model import LogisticRegression

from omops.dask import read_dask
from omops.errors import InvalidData, TaskFailed
from omops.omega import Omega
from omops.runtime.dask_executor import DaskExecutor
from omops.runtime.executors import executor_for

from .conftest import S3


@pytest.fixture
def cluster(s3: S3) -> Iterator[tuple[LocalCluster, Client]]:
    """Two worker processes (started after the S3 variables are set: they inherit them)."""
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
        ) as local,
        Client(local) as client,
    ):
        yield local, client


def sales(n: int = 60) -> pd.DataFrame:
    x = np.arange(n, dtype="float64")
    return pd.DataFrame(
        {"x": x, "y": (x >= n / 2).astype("int64"), "g": pd.Categorical(["a", "b", "c"] * (n // 3))}
    )


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_dask_frames_written_by_workers_and_read_lazily(
    cluster, s3: S3, tmp_path: Path, where: str
) -> None:
    _, client = cluster
    blobs = s3.url() if where == "s3" else str(tmp_path / "blobs")
    om = Omega(catalog=f"sqlite:///{tmp_path / 'c.sqlite'}", blobs=blobs)
    frame = sales()
    lazy = dd.from_pandas(frame, npartitions=4)
    workers = set(client.scheduler_info()["workers"])
    with get_task_stream(client) as stream:
        meta = om.datasets.put(lazy, "sales")
    writers = {t["worker"] for t in stream.data if "write_partition" in str(t["key"])}
    assert writers and writers <= workers  # the workers wrote the parts, not this process
    assert meta.kind == "dask.dataframe"
    revision = om.datasets.revisions("sales")[-1][0]
    parts = om.catalog.parts(om.catalog.lookup(om.bucket, "datasets", "sales", None))
    assert [p.rows for p in parts] == [15, 15, 15, 15]
    pd.testing.assert_frame_equal(om.datasets.get("sales"), frame)  # an ordinary dataset
    assert om.datasets.get("sales", x__gte=58)["x"].tolist() == [58.0, 59.0]

    # Appending adds the new partitions' parts to the revision.
    om.datasets.put(dd.from_pandas(sales(6), npartitions=2), "sales")
    assert len(om.datasets.get("sales")) == 66

    # Read back as a Dask DataFrame: one partition per part, nothing read yet.
    back = read_dask(om, "sales")
    assert back.npartitions == 6
    pd.testing.assert_frame_equal(back.compute(), pd.concat([frame, sales(6)]))
    older = read_dask(om, f"sales@{revision[:12]}")
    pd.testing.assert_frame_equal(older.compute(), frame)
    assert float(read_dask(om, "sales[x]")["x"].sum().compute()) == frame["x"].sum() + 15.0
    assert list(read_dask(om, "sales", columns=["g"]).compute()["g"].cat.categories) == list("abc")
    assert list(read_dask(om, "sales[^x]").columns) == ["y", "g"]

    # A pandas dataset reads the same way.
    om.datasets.put(frame, "plain")
    pd.testing.assert_frame_equal(read_dask(om, "plain").compute(), frame)
    om.datasets.put({"a": 1}, "conf")
    with pytest.raises(InvalidData, match="only DataFrames"):
        read_dask(om, "conf")
    with pytest.raises(InvalidData, match="no column"):
        read_dask(om, "sales", columns=["nope"])
    if where == "s3":
        assert s3.keys("omops/objects")
    om.close()


def test_dask_executor_runs_model_actions_on_the_cluster(cluster, tmp_path: Path, s3: S3) -> None:
    local, client = cluster
    port = int(local.scheduler_address.rsplit(":", 1)[1])
    om = Omega(
        catalog=f"sqlite:///{tmp_path / 'c.sqlite'}",
        blobs=s3.url(),
        broker=f"dask://127.0.0.1:{port}",
    )
    assert isinstance(executor_for(om), DaskExecutor)
    om.datasets.put(sales(), "sales")
    om.models.put(LogisticRegression(), "clf")

    answer = om.runtime.ping("hello").get(timeout=60)
    pids = set(client.run(os.getpid).values())
    assert answer["pong"] == "hello" and answer["pid"] in pids and answer["pid"] != os.getpid()

    fitted = om.runtime.model("clf").fit("sales[x]", "sales[y]").get(timeout=60)
    assert fitted["revision"] == om.models.revisions("clf")[-1][0]
    predicted = om.runtime.model("clf").predict("sales[x]").get(timeout=60)
    assert predicted[:3] == [0, 0, 0] and predicted[-1] == 1
    again = om.runtime.result(om.runtime.model("clf").predict("sales[x]", rName="preds").id)
    again.get(timeout=60)
    assert len(om.datasets.get("preds")) == 60

    with om.runtime.parallel() as crt:
        crt.model("clf").predict("sales[x]")
        crt.ping("two")
        both = crt.run()
    first, second = both.get(timeout=60)
    assert first == predicted and second["pong"] == "two"
    with om.runtime.mapreduce() as crt:  # one mapped call: the reducer collects [result]
        crt.model("clf").predict("sales[x]")
        reduced = crt.run()
    assert reduced.get(timeout=60) == [predicted]
    with om.runtime.sequence() as crt:  # each step after the other; the last one's result
        crt.model("clf").fit("sales[x]", "sales[y]")
        crt.model("clf").predict("sales[x]")
        chained = crt.run()
    assert chained.get(timeout=60) == predicted

    with pytest.raises(TaskFailed) as caught:
        om.runtime.model("clf").predict("nosuch").get(timeout=60)
    assert caught.value.exc_type == "NotFound"

    status = om.runtime.status()
    assert status["executor"] == "dask" and len(status["workers"]) == 2
    assert {w["host"] for w in status["workers"].values()} == {"127.0.0.1"}
    om.close()
