"""The client of the multi-host test, run on its own host (network namespace).

    python netns_client.py init      # catalog schema, bucket, an API key (prints JSON)
    python netns_client.py flow      # data, model, fit/predict on workers, REST (JSON)
    python netns_client.py cutover   # a slow fit: prints where it runs, then its result

Configured by the environment alone (OMOPS_*, AWS_*, OMOPS_NETNS_*), like any
process of a deployment. Every line on stdout is one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import time

import httpx
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import omops


def say(**values: object) -> None:
    print(json.dumps(values, default=str), flush=True)


def init() -> None:
    import s3fs

    s3fs.S3FileSystem().mkdir(os.environ["OMOPS_BLOBS"].removeprefix("s3://").split("/")[0])
    om = omops.get_omega()
    om.catalog.engine()  # the schema, once, before workers and server start
    token, _ = om.catalog.api_keys.create(role="write", buckets=["*"], note="netns")
    say(token=token)


def flow() -> None:
    om = omops.get_omega()
    queue = os.environ["OMOPS_NETNS_QUEUE"]
    rt = om.runtime.require(queue)
    x = np.arange(40.0)
    om.datasets.put(pd.DataFrame({"x": x, "y": (x >= 20).astype("int64")}), "sales")
    om.models.put(LogisticRegression(), "clf")
    fitted = rt.model("clf").fit("sales[x]", "sales[y]").get(timeout=120)
    rt.model("clf").predict("sales[x]", rName="preds").get(timeout=120)
    on_workers = om.datasets.get("preds").iloc[:, -1].tolist()
    status = om.runtime.status()
    server = os.environ["OMOPS_NETNS_SERVER"]
    headers = {"Authorization": f"Bearer {os.environ['OMOPS_NETNS_TOKEN']}"}
    with httpx.Client(base_url=server, headers=headers, timeout=60) as http:
        answer = http.post(
            "/api/v1/model/clf/predict", json={"columns": ["x"], "data": [[1.0], [30.0]]}
        )
        stored = http.get("/api/v1/dataset/preds", params={"orient": "split"})
        ready = http.get("/ready")
    say(
        fitted=fitted,
        on_workers=on_workers,
        rest=answer.json(),
        rest_status=answer.status_code,
        stored_status=stored.status_code,
        stored=stored.json(),
        ready=ready.json(),
        workers=status["workers"],
    )


def cutover() -> None:
    from scaleout.netns_models import HostRecorder

    om = omops.get_omega()
    queue = os.environ["OMOPS_NETNS_QUEUE"]
    rt = om.runtime.require(queue)
    om.models.put(HostRecorder(delay=60, marker=os.environ["OMOPS_NETNS_MARKER"]), "slow")
    begin = time.monotonic()
    result = rt.model("slow").fit("sales[x]", "sales[y]")
    while True:  # where does it run? (om runtime status, as a person would look)
        running = {
            info["host"]: [t["id"] for t in info["running"]]
            for info in om.runtime.status()["workers"].values()
        }
        hosts = [host for host, ids in running.items() if result.id in ids]
        if hosts:
            say(running_on=hosts[0], task=result.id)
            break
        if time.monotonic() - begin > 60:
            say(error="the task was never seen running", running=running)
            sys.exit(1)
        time.sleep(0.2)
    value = result.get(timeout=180)
    model = om.models.get("slow")
    say(result=value, fitted_on=model.fitted_on_, seconds=round(time.monotonic() - begin, 1))


if __name__ == "__main__":
    {"init": init, "flow": flow, "cutover": cutover}[sys.argv[1]]()
