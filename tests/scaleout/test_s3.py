"""Blobs on a real S3 protocol endpoint (moto's server on loopback, through s3fs).

Everything a user does with a local blob folder works the same with
``OMOPS_BLOBS=s3://bucket/prefix``: datasets (append, filters, revisions),
models, promote between stores, sweep; the runtime (local and Celery workers)
and REST, whose processes reach the store through the standard AWS variables.
A writer killed mid-upload leaves nothing readable, and the sweep aborts its
unfinished multipart upload.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from omops.config import load_settings
from omops.errors import ConfigError, NotFound
from omops.omega import Omega

from .conftest import ACCESS_KEY, S3, SECRET_KEY

OM = Path(sys.executable).parent / "om"


def frame(n: int = 50, start: int = 0) -> pd.DataFrame:
    x = np.arange(start, start + n, dtype="float64")
    return pd.DataFrame({"x": x, "y": (x >= 25).astype("int64"), "g": ["a", "b"] * (n // 2)})


def om_run(home: Path, s3: S3, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}
    environ.update(OMOPS_HOME=str(home), COLUMNS="200", **s3.env, **env)
    return subprocess.run(
        [str(OM), *args], env=environ, capture_output=True, text=True, timeout=120
    )


def test_datasets_models_revisions_and_sweep_on_s3(s3: S3, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OMOPS_HOME", str(tmp_path))
    monkeypatch.setenv("OMOPS_BLOBS", s3.url("team/blobs"))
    om = Omega()
    assert om.blobs.url == s3.url("team/blobs") and not om.blobs.is_local

    om.datasets.put(frame(), "sales", append=False)
    first = om.datasets.revisions("sales")[0][0]
    om.datasets.put(frame(start=50), "sales")  # appends a second Parquet part
    assert len(om.datasets.get("sales")) == 100
    assert om.datasets.get("sales", x__gte=95)["x"].tolist() == [95.0, 96.0, 97.0, 98.0, 99.0]
    assert len(om.datasets.get(f"sales@{first[:12]}")) == 50  # the older revision still reads
    om.datasets.tag("sales", first, "v1")
    assert len(om.datasets.get("sales@v1")) == 50

    model = LogisticRegression().fit(frame()[["x"]], frame()["y"])
    om.models.put(model, "clf")
    probe = pd.DataFrame({"x": [1.0, 40.0]})
    assert om.models.get("clf").predict(probe).tolist() == [0, 1]

    # The bytes really are in the bucket, content-addressed, and nothing else is.
    stored = s3.keys("team/blobs")
    assert stored and all(k.startswith(f"{s3.bucket}/team/blobs/objects/") for k in stored)

    # Promote: to another bucket (same store) and to an instance with a local folder.
    om.datasets.promote("sales", om["prod"].datasets)
    local = Omega(catalog=f"sqlite:///{tmp_path / 'other.sqlite'}", blobs=str(tmp_path / "local"))
    om.models.promote("clf", local.models)
    om.datasets.promote("sales", local.datasets)
    assert len(om["prod"].datasets.get("sales")) == 100
    assert local.models.get("clf").predict(probe).tolist() == [0, 1]
    assert local.datasets.get("sales").equals(om.datasets.get("sales"))
    # ... and back from the folder into S3 under another name.
    local.datasets.promote("sales", om.datasets, asname="sales-copy")
    assert len(om.datasets.get("sales-copy")) == 100

    # Dropping leaves blobs no revision uses; a put killed after writing does too.
    before = om.sweep(older_than=0, dry_run=True)
    om.blobs.put_bytes(b"an orphan: written, never committed")
    om.datasets.drop("sales-copy")  # its blobs are shared with 'sales': still in use
    swept = om.sweep(older_than=0)
    assert swept["orphans"] == before["orphans"] + 1 and swept["temporaries"] == 0
    assert len(om.datasets.get("sales")) == 100 and len(om["prod"].datasets.get("sales")) == 100
    assert om.sweep(older_than=0)["orphans"] == 0
    assert not s3.keys("team/blobs/tmp")
    om.close()


def test_blobs_options_from_config_file_and_masked(s3: S3, tmp_path: Path, monkeypatch) -> None:
    """Endpoint and credentials from config.toml alone; shown nowhere in clear."""
    for name in s3.env:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        textwrap.dedent(
            f"""
            blobs = "{s3.url()}"
            [blobs_options]
            endpoint_url = "{s3.endpoint}"
            key = "{ACCESS_KEY}"
            secret = "{SECRET_KEY}"
            client_kwargs = {{region_name = "us-east-1"}}
            """
        )
    )
    settings = load_settings({"OMOPS_HOME": str(home)})
    assert settings.blobs_options["endpoint_url"] == s3.endpoint
    assert settings.sources["blobs_options"] == "file"
    assert SECRET_KEY not in repr(settings) and ACCESS_KEY not in repr(settings)
    om = Omega(home=home)
    om.datasets.put(frame(), "sales")
    assert len(om.datasets.get("sales", g="a")) == 25
    assert SECRET_KEY not in repr(om) and SECRET_KEY not in repr(om.blobs)
    assert s3.keys("omops/objects")

    # The CLI reads the same file; `om config show` masks the key and the secret.
    no_aws = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OMOPS_"))}
    shown = subprocess.run(
        [str(OM), "config", "show", "--json"],
        env={**no_aws, "OMOPS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    options = json.loads(json.loads(shown.stdout)["blobs_options"]["value"])
    assert options == {
        "client_kwargs": {"region_name": "us-east-1"},
        "endpoint_url": s3.endpoint,
        "key": "***",
        "secret": "***",
    }
    assert SECRET_KEY not in shown.stdout + shown.stderr
    listed = subprocess.run(
        [str(OM), "datasets", "list", "--json"],
        env={**no_aws, "OMOPS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0 and "sales" in listed.stdout, listed.stderr
    om.close()


def test_blobs_options_from_the_environment(s3: S3, tmp_path: Path, monkeypatch) -> None:
    for name in s3.env:
        monkeypatch.delenv(name)
    options = {"endpoint_url": s3.endpoint, "key": ACCESS_KEY, "secret": SECRET_KEY}
    monkeypatch.setenv("OMOPS_HOME", str(tmp_path))
    monkeypatch.setenv("OMOPS_BLOBS", s3.url("env"))
    monkeypatch.setenv("OMOPS_BLOBS_OPTIONS", json.dumps(options))
    om = Omega()
    om.datasets.put(frame(), "sales")
    assert s3.keys("env/objects") and len(om.datasets.get("sales")) == 50
    # A store of another kind does not get the S3 options.
    assert Omega(blobs=str(tmp_path / "folder")).blobs.storage_options == {}

    monkeypatch.setenv("OMOPS_BLOBS_OPTIONS", '{"secret": "oops"')  # broken JSON
    with pytest.raises(ConfigError, match="OMOPS_BLOBS_OPTIONS is not valid JSON") as info:
        load_settings()
    assert "oops" not in str(info.value)
    monkeypatch.setenv("OMOPS_BLOBS_OPTIONS", '["a list"]')
    with pytest.raises(ConfigError, match="must be a JSON object"):
        load_settings()
    om.close()


_SLOW_WRITER = """
import sys, time
import numpy as np, pandas as pd
import s3fs.core
from omops.omega import Omega

# A slow link: each 5 MiB part takes a while to go up, so the test can kill the
# writer in the middle of its multipart upload.
upload = s3fs.core.S3File._upload_chunk
def slow(self, final=False):
    time.sleep(0.4)
    return upload(self, final)
s3fs.core.S3File._upload_chunk = slow

om = Omega()
rng = np.random.default_rng(0)
big = pd.DataFrame(rng.random((1_500_000, 4)), columns=list("abcd"))  # 48 MB, incompressible
print("writing", flush=True)
om.datasets.put(big, "big")
print("done", flush=True)
"""


def test_a_put_killed_mid_upload_leaves_nothing_readable(s3: S3, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        "OMOPS_BLOBS": s3.url(),
        # 5 MiB parts (S3's smallest) instead of s3fs's 50 MiB: a multipart upload early.
        "OMOPS_BLOBS_OPTIONS": json.dumps({"default_block_size": 5 * 2**20}),
    }
    om = Omega(home=home, blobs=s3.url(), settings=load_settings({"OMOPS_HOME": str(home)}))
    om.datasets.put(frame(), "small")
    kept = s3.keys("omops/objects")

    environ = {k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}
    environ.update(OMOPS_HOME=str(home), **s3.env, **env)
    writer = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not any(_parts(s3, u) >= 2 for u in s3.uploads()):
            assert writer.poll() is None, writer.stdout.read() if writer.stdout else ""
            assert time.monotonic() < deadline, "no multipart upload started"
            time.sleep(0.05)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        if writer.stdout:
            writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL

    # Nothing of the killed put can be read: no object, no new blob; the upload is open.
    with pytest.raises(NotFound):
        om.datasets.get("big")
    assert s3.keys("omops/objects") == kept
    assert [u["Key"].startswith("omops/tmp/") for u in s3.uploads()] == [True]

    # A sweep of young leftovers leaves the upload alone (it may be a live writer's) ...
    dry = om_run(home, s3, "sweep", "--json", **env)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["temporaries"] == 0 and len(s3.uploads()) == 1
    # ... and one of everything older than now aborts it, counting its parts' bytes.
    swept = om_run(home, s3, "sweep", "--older-than", "0", "--json", **env)
    assert swept.returncode == 0, swept.stderr
    report = json.loads(swept.stdout)
    assert report["temporaries"] == 1 and report["bytes"] >= 2 * 5 * 2**20, report
    assert s3.uploads() == [] and not s3.keys("omops/tmp")
    assert len(om.datasets.get("small")) == 50  # what was committed before is intact
    om.close()


def _parts(s3: S3, upload: dict) -> int:
    found = s3.fs().call_s3(
        "list_parts", Bucket=s3.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
    )
    return len(found.get("Parts") or [])


def test_runtime_local_celery_and_rest_on_s3(s3: S3, tmp_path: Path) -> None:
    """Client, Celery worker and REST server: separate processes, one bucket of blobs."""
    from runtime.support import Cluster
    from server.support import Server

    home = tmp_path / "home"
    home.mkdir()
    queue = f"omops-s3-{uuid.uuid4().hex[:8]}"
    cluster = Cluster(
        "s3",
        home=home,
        catalog=f"sqlite:///{home / 'catalog.sqlite'}",
        blobs=s3.url(),
        broker=os.environ.get("OMOPS_TEST_BROKER") or pytest.fail("OMOPS_TEST_BROKER is not set"),
        queue=queue,
        gpu=f"{queue}-gpu",
    )
    try:
        om = cluster.omega("default")
        om.datasets.put(frame(), "sales", append=False)
        om.models.put(LogisticRegression(), "clf")

        # Local executor: in this process.
        local = om.runtime.mode(local=True)
        assert local.model("clf").fit("sales[x]", "sales[y]").get()["model"] == "clf"
        local.model("clf").predict("sales[x]", rName="local-preds").get()
        assert om.datasets.get("local-preds").iloc[:, -1].tolist()[:2] == [0, 0]

        # Celery: a worker process that reaches the store through its own AWS variables.
        cluster.start_worker(queue, concurrency=1)
        remote = om.runtime.require(queue)
        om.models.put(LogisticRegression(), "clf2")
        fitted = remote.model("clf2").fit("sales[x]", "sales[y]").get(timeout=60)
        assert fitted["revision"] == om.models.revisions("clf2")[-1][0]
        assert remote.ping("s3").get(timeout=60)["pid"] == cluster.workers[0].children().pop()
        remote.model("clf").predict("sales[x]", rName="preds").get(timeout=60)
        preds = om.datasets.get("preds")
        assert len(preds) == 50 and preds.iloc[:, -1].tolist()[-1] == 1

        # REST: a server process on the same catalog and bucket.
        with (
            Server(home, OMOPS_CATALOG=cluster.catalog, OMOPS_BLOBS=s3.url()) as server,
            server.client() as client,
        ):
            answer = client.post(
                "/api/v1/model/clf/predict", json={"columns": ["x"], "data": [[1.0], [45.0]]}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["result"] == [0, 1]
            data = client.get("/api/v1/dataset/preds")
            assert data.status_code == 200, data.text
        assert not s3.keys("omops/tmp")
    finally:
        cluster.close()
