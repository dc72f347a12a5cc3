"""Framework bench: REST predict p50 per model kind against the framework called in-process.

One small model per kind, trained here on the same data (``--features``
float64 columns, a binary target), is stored with ``om.models.put`` and
served by one ``om runtime serve`` subprocess (a free loopback port, the
default array lane on). For each kind, in one run:

* ``in-process``: the framework's own predict call on a DataFrame of the
  rows, as a user would make it without omops (``model.predict(frame)``,
  ``booster.inplace_predict(frame)``, Keras ``predict_on_batch``, the torch
  module on a tensor, onnxruntime's ``session.run``, MLflow's
  ``pyfunc.predict``, R's ``predict(model, newdata=...)`` with the frame
  converted to a ``data.frame``);
* ``REST``: ``POST /api/v1/model/<name>/predict`` with ``{"columns": [...],
  "data": [[...]]}`` over one keep-alive ``http.client`` connection, the body
  encoded once up front and the answer read whole;
* ``REST Arrow`` (``--rows`` rows only): the same rows as an Arrow IPC stream
  (``Content-Type`` and ``Accept: application/vnd.apache.arrow.stream``), the
  documented way to send many rows, on a second connection.

Both for 1 row and for ``--rows`` rows; requests alternate between kinds in
blocks so that drift hits all of them. The REST overhead is REST p50 minus
in-process p50 (target: at most 1.5 ms).

Run::

    .venv/bin/python bench/frameworks.py    # about two minutes; prints a RESULTS.md section
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import git_commit, loadavg, machine, om_command, start_session, stop_session  # noqa: E402
from _common import version as _version
from serving import ARROW, Client, arrow_stream, free_port, percentile, wait_ready  # noqa: E402

import omops  # noqa: E402

TARGET_MS = 1.5
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}
#: One PyTorch thread on both sides: on 2 busy cores an OpenMP team per call
#: costs ~8 ms for 1,000 rows where one thread takes ~0.3 ms.
TORCH_THREADS = {"OMOPS_TORCH_THREADS": "1"}


# -- data --------------------------------------------------------------------


def frame(rows: int, features: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        rng.normal(size=(rows, features)), columns=[f"f{i}" for i in range(features)]
    )


def training(features: int) -> tuple[pd.DataFrame, pd.Series]:
    X = frame(2000, features, seed=1)  # noqa: N806
    return X, (X.iloc[:, 0] + 0.5 * X.iloc[:, 1] > 0).astype("int64").rename("y")


# -- one model per kind: what is stored, and the in-process call ------------------


def sklearn_model(X, y, folder):  # noqa: N803
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(X, y)
    return model, None, model.predict


def xgboost_model(X, y, folder):  # noqa: N803
    import xgboost as xgb

    model = xgb.XGBClassifier(n_estimators=50, max_depth=4, n_jobs=1).fit(X, y)
    return model, None, model.predict


def lightgbm_model(X, y, folder):  # noqa: N803
    import lightgbm as lgb

    model = lgb.LGBMClassifier(n_estimators=50, num_leaves=15, n_jobs=1, verbose=-1).fit(X, y)
    return model, None, model.predict


def keras_model(X, y, folder):  # noqa: N803
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((X.shape[1],)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(X.to_numpy("float32"), y.to_numpy("float32"), epochs=2, verbose=0)
    model.omops_input_columns = tuple(X.columns)
    return model, None, lambda f: model.predict_on_batch(f.to_numpy("float32"))


def torch_model(X, y, folder):  # noqa: N803
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(int(TORCH_THREADS["OMOPS_TORCH_THREADS"]))  # as the server
    module = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], 16), torch.nn.ReLU(), torch.nn.Linear(16, 1), torch.nn.Sigmoid()
    ).eval()
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        module, (torch.zeros(2, X.shape[1]),), dynamic_shapes=({0: batch},)
    )
    called = program.module()

    def predict(f: pd.DataFrame) -> Any:
        with torch.no_grad():
            return called(torch.tensor(f.to_numpy("float32"))).numpy()

    return program, None, predict


def onnx_model(X, y, folder):  # noqa: N803
    import onnxruntime as ort
    from sklearn.linear_model import LogisticRegression

    from omops.plugins.onnx_model import _convert

    model = LogisticRegression().fit(X, y)
    session = ort.InferenceSession(_convert(model)[0], providers=["CPUExecutionProvider"])
    return model, "onnx.model", lambda f: session.run(None, {"input": f.to_numpy("float32")})[0]


def mlflow_model(X, y, folder):  # noqa: N803
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow.pyfunc
        import mlflow.sklearn
        from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(X, y)
    path = str(folder / "mlflow-model")
    mlflow.sklearn.save_model(
        model, path, signature=infer_signature(X, model.predict(X)), pip_requirements=["sklearn"]
    )
    loaded = mlflow.pyfunc.load_model(path)
    return path, None, loaded.predict


def r_model(X, y, folder):  # noqa: N803
    from omops.plugins.r_model import R_LOCK, _from_r, _r_frame, _robjects

    ro = _robjects()
    with R_LOCK:
        ro.r("suppressPackageStartupMessages(library(randomForest))")
        ro.r["set.seed"](0)
        data = _r_frame(ro, X.assign(y=y), factors={"y"})
        formula = ro.Formula("y ~ " + " + ".join(X.columns))
        model = ro.r["randomForest"](
            formula, data=data, ntree=51
        )  # odd: no tied votes (R breaks ties at random)

    def predict(f: pd.DataFrame) -> Any:
        with R_LOCK:
            return _from_r(ro.r["predict"](model, newdata=_r_frame(ro, f)))

    return model, None, predict


KINDS: dict[str, Callable] = {
    "sklearn.joblib": sklearn_model,
    "xgboost.model": xgboost_model,
    "lightgbm.model": lightgbm_model,
    "keras.model": keras_model,
    "torch.module": torch_model,
    "onnx.model": onnx_model,
    "mlflow.model": mlflow_model,
    "r.model": r_model,
}


# -- measuring -----------------------------------------------------------------


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    values, clock = [], time.perf_counter
    for _ in range(n):
        start = clock()
        fn()
        values.append(clock() - start)
    return values


def body(f: pd.DataFrame) -> bytes:
    return orjson.dumps({"columns": list(f.columns), "data": f.to_numpy().tolist()})


def arrow_answer(data: bytes) -> np.ndarray:
    """The prediction of an Arrow answer: column ``result``, or columns ``0``, ``1``..."""
    import pyarrow as pa

    table = pa.ipc.open_stream(data).read_all()
    if table.column_names == ["result"]:
        return table.column("result").to_numpy()
    return np.column_stack([c.to_numpy() for c in table.columns])


def check(kind: str, rest: Any, local: Any) -> None:
    got, want = np.asarray(rest), np.asarray(local)
    if want.dtype.kind in "fc":
        ok = got.shape == want.shape and np.allclose(got.astype(float), want, rtol=1e-4, atol=1e-5)
    else:
        ok = got.tolist() == want.tolist()
    if not ok:
        raise RuntimeError(f"{kind}: REST answered {got[:5]!r}, in-process {want[:5]!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--rows", type=int, default=1000, help="rows of the bulk requests")
    parser.add_argument("--requests", type=int, default=400, help="1-row requests per kind")
    parser.add_argument("--bulk-requests", type=int, default=60, help="bulk requests per kind")
    parser.add_argument("--blocks", type=int, default=4, help="alternating blocks")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    load_before = loadavg()
    X, y = training(args.features)  # noqa: N806
    one, bulk = frame(1, args.features, seed=2), frame(args.rows, args.features, seed=3)
    with tempfile.TemporaryDirectory(prefix="omops-bench-") as tmp:
        root = Path(tmp)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}, **QUIET}
        env.update(TORCH_THREADS)
        os.environ.update(QUIET)
        om = omops.Omega(home=root / "home")
        local: dict[str, Callable] = {}
        for kind in kinds:
            stored, explicit, predict = KINDS[kind](X, y, root)
            om.models.put(stored, f"bench/{kind}", kind=explicit)
            local[kind] = predict
        port = free_port()
        log = root / "serve.log"
        server = start_session(
            [*om_command(), "runtime", "serve", "--port", str(port)],
            {**env, "OMOPS_HOME": str(root / "home")},
            log,
        )
        try:
            wait_ready(server, port, "/health", log, timeout=60)
            results = run(args, kinds, local, port, one, bulk)
        finally:
            stop_session(server)
        om.close()
    report(args, results, load_before, loadavg())
    return 0


def run(args, kinds, local, port, one, bulk) -> dict[str, dict[str, list[float]]]:
    client = Client(port)
    arrow_client = Client(port, {"Content-Type": ARROW, "Accept": ARROW})
    bodies = {size: body(f) for size, f in (("1", one), ("bulk", bulk))}
    bulk_arrow = arrow_stream(bulk)
    frames = {"1": one, "bulk": bulk}
    counts = {"1": args.requests, "bulk": args.bulk_requests}
    times: dict[str, dict[str, list[float]]] = {
        k: {"rest 1": [], "local 1": [], "rest bulk": [], "local bulk": [], "arrow bulk": []}
        for k in kinds
    }
    try:
        for kind in kinds:  # warm: the server imports each framework on first use
            path = f"/api/v1/model/bench/{kind}/predict"
            for size in ("1", "bulk"):
                answer = orjson.loads(client.post(path, bodies[size]))["result"]
                check(kind, answer, local[kind](frames[size]))
                for _ in range(20):
                    client.post(path, bodies[size])
                    local[kind](frames[size])
            check(kind, arrow_answer(arrow_client.post(path, bulk_arrow)), local[kind](bulk))
            for _ in range(20):
                arrow_client.post(path, bulk_arrow)
        for block in range(args.blocks):
            order = kinds if block % 2 == 0 else kinds[::-1]
            for kind in order:
                path = f"/api/v1/model/bench/{kind}/predict"
                for size in ("1", "bulk"):
                    n = max(1, counts[size] // args.blocks)
                    f, b = frames[size], bodies[size]
                    times[kind][f"rest {size}"] += timed(lambda p=path, b=b: client.post(p, b), n)
                    times[kind][f"local {size}"] += timed(lambda k=kind, f=f: local[k](f), n)
                n = max(1, counts["bulk"] // args.blocks)
                times[kind]["arrow bulk"] += timed(
                    lambda p=path: arrow_client.post(p, bulk_arrow), n
                )
    finally:
        client.close()
        arrow_client.close()
    return times


def report(args, results, load_before: str, load_after: str) -> None:
    rows = []
    for kind, t in results.items():
        p = {key: percentile(values, 50) * 1e3 for key, values in t.items()}
        rows.append(
            (
                kind,
                p["local 1"],
                p["rest 1"],
                p["rest 1"] - p["local 1"],
                p["local bulk"],
                p["rest bulk"],
                p["rest bulk"] - p["local bulk"],
                p["arrow bulk"],
                p["arrow bulk"] - p["local bulk"],
            )
        )
    host = machine()
    lines = [
        f"## frameworks ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`.venv/bin/python bench/frameworks.py --features {args.features} --rows {args.rows} "
        f"--requests {args.requests} --bulk-requests {args.bulk_requests}` "
        f"(git {git_commit()}, working tree may differ)",
        "",
        f"- machine: {host['cores']} cores, {host['cpu']}, {host['ram']} RAM, "
        f"{platform.system()} {platform.release()}",
        f"- python {platform.python_version()}, "
        + ", ".join(
            f"{d} {_version(d)}"
            for d in (
                "scikit-learn",
                "xgboost-cpu",
                "lightgbm",
                "keras",
                "tensorflow-cpu",
                "torch",
                "onnxruntime",
                "mlflow-skinny",
                "rpy2",
            )
        ),
        f"- one `om runtime serve` (1 uvicorn worker, array lane on, OMOPS_TORCH_THREADS=1; "
        "PyTorch in-process also 1 thread); client: http.client "
        f"keep-alive on the same 2 cores; {args.features} float64 columns; p50 over "
        f"{args.requests} 1-row and {args.bulk_requests} {args.rows}-row requests per kind, "
        f"in {args.blocks} alternating blocks",
        f"- load average (1, 5, 15 min) before / after: {load_before} / {load_after}",
        "",
        f"| kind | in-process 1 row | REST 1 row | REST adds | in-process {args.rows} rows "
        f"| REST {args.rows} rows JSON | REST adds | REST {args.rows} rows Arrow | REST adds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, *values in rows:
        lines.append(f"| {kind} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    lines += ["", f"All times are p50 in ms. Target: REST adds at most {TARGET_MS} ms."]
    for label, column in (
        ("1 row", 3),
        (f"{args.rows} rows as JSON", 6),
        (f"{args.rows} rows as Arrow", 8),
    ):
        met = [row[0] for row in rows if row[column] <= TARGET_MS]
        missed = [row[0] for row in rows if row[0] not in met]
        lines.append(
            f"- {label}: met by {len(met)} of {len(rows)} kinds"
            + (f" (not: {', '.join(missed)})" if missed else "")
        )
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
