"""Tracking benchmark: logging metrics, omops against MLflow, both on SQLite, in one run.

Phases:

* ``log_metric``  ``--calls`` single calls, inside an open run:
                  omops ``exp.log_metric(key, value, step=i)`` in a
                  ``with om.runtime.experiment(...)`` block, MLflow
                  ``mlflow.log_metric(key, value, step=i)`` in ``mlflow.start_run()``;
* ``batch``       one call that logs ``--calls`` metrics: omops
                  ``exp.log_events([...])``, MLflow ``MlflowClient().log_batch(run_id,
                  metrics=[Metric(...) x N])``;
* ``data``        omops only: ``exp.data(run='all')`` over ``--events`` events (a
                  DataFrame), after logging them with ``log_events``;
* ``rest``        omops only: 1-row ``POST /api/v1/model/<name>/predict`` to a real
                  ``om runtime serve``, the model untracked and tracked
                  (``exp.track``) in alternating blocks; and the synchronous part
                  of a tracked prediction, ``log_prediction(...)``, in-process.

Both tracking stores are SQLite files on the same disk: omops' catalog
(``OMOPS_HOME``), MLflow's ``mlflow.set_tracking_uri('sqlite:///...')``. Each
side runs ``--repeats`` times; the median per call is reported. MLflow runs
in its own virtualenv (``--mlflow-python``), as a subprocess of this script;
omops runs in this process.

Run::

    .venv/bin/python bench/tracking.py              # a few minutes
    .venv/bin/python bench/tracking.py --markdown   # also print a RESULTS.md section

MLflow lives in its own virtualenv so that it does not change omops'
dependencies::

    python3 -m venv bench/.venv-mlflow
    bench/.venv-mlflow/bin/pip install mlflow scikit-learn pandas
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import git_commit, loadavg, om_command, start_session, stop_session
from _common import machine as machine_info  # noqa: E402
from _common import version as _version

import omops  # noqa: E402
from omops.runtime._tracking import log_prediction, writer_for  # noqa: E402

DEFAULT_MLFLOW_PYTHON = ROOT / "bench" / ".venv-mlflow" / "bin" / "python"
INSTALL_MLFLOW = (
    "python3 -m venv bench/.venv-mlflow && "
    "bench/.venv-mlflow/bin/pip install mlflow scikit-learn pandas"
)
TARGET = 20.0  # omops at least 20x MLflow's per-call speed
REST_TARGET = 0.20  # tracking adds at most 20% to a 1-row REST predict
MODEL = "bench/tracked"
# No traffic anywhere but loopback: MLflow's usage telemetry off.
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "NO_PROXY": "127.0.0.1,localhost",
}

MLFLOW_SCRIPT = r"""
import json, sys, time, logging
logging.disable(logging.WARNING)
import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

uri, calls, repeats, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
mlflow.set_tracking_uri(uri)
mlflow.set_experiment("bench")
client = MlflowClient()
single, batch = [], []
for r in range(repeats):
    with mlflow.start_run() as run:
        for i in range(10):  # warm-up: connections, caches
            mlflow.log_metric("warmup", float(i), step=i)
        began = time.perf_counter()
        for i in range(calls):
            mlflow.log_metric("accuracy", i / calls, step=i)
        single.append(time.perf_counter() - began)
        for b in range(batches):
            now = int(time.time() * 1000)
            metrics = [Metric(f"loss{b}", i / calls, now, i) for i in range(calls)]
            began = time.perf_counter()
            client.log_batch(run.info.run_id, metrics=metrics)
            batch.append(time.perf_counter() - began)
        logged = len(client.get_metric_history(run.info.run_id, "accuracy"))
        batched = len(client.get_metric_history(run.info.run_id, "loss0"))
        assert logged == calls and batched == calls, (logged, batched)
print(json.dumps({"single": single, "batch": batch, "mlflow": mlflow.__version__}))
"""


# -- omops -------------------------------------------------------------------


def omops_logging(home: Path, calls: int, repeats: int, batches: int) -> dict[str, list[float]]:
    """Seconds: ``calls`` log_metric calls per repeat, and each log_events of ``calls``."""
    om = omops.Omega(home=str(home))
    exp = om.runtime.experiment("bench")
    single, batch = [], []
    for _ in range(repeats):
        with exp:
            for i in range(10):  # warm-up, as for MLflow
                exp.log_metric("warmup", float(i), step=i)
            began = time.perf_counter()
            for i in range(calls):
                exp.log_metric("accuracy", i / calls, step=i)
            single.append(time.perf_counter() - began)
            for b in range(batches):
                events = [{"key": f"loss{b}", "value": i / calls, "step": i} for i in range(calls)]
                began = time.perf_counter()
                exp.log_events(events)
                batch.append(time.perf_counter() - began)
            assert len(exp.data(event="metric", key="accuracy")) == calls
            assert len(exp.data(event="metric", key="loss0")) == calls
    om.catalog.close()
    return {"single": single, "batch": batch}


def mlflow_logging(python: Path, folder: Path, calls: int, repeats: int, batches: int) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    out = subprocess.run(
        [str(python), "-c", MLFLOW_SCRIPT, uri, str(calls), str(repeats), str(batches)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=folder,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"the MLflow part failed:\n{out.stderr[-3000:]}")
    return orjson.loads(out.stdout.strip().splitlines()[-1])


def data_read(home: Path, events: int, repeats: int) -> dict[str, float]:
    """Log ``events`` metrics with log_events, then time exp.data(run='all')."""
    om = omops.Omega(home=str(home))
    exp = om.runtime.experiment("big")
    began = time.perf_counter()
    with exp:
        chunk = 100_000
        for start in range(0, events, chunk):
            exp.log_events(
                ("metric", "loss", i / 7, i) for i in range(start, min(start + chunk, events))
            )
    logged = time.perf_counter() - began
    times, raw_times = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        frame = exp.data(run="all")
        times.append(time.perf_counter() - began)
        assert len(frame) == events + 3, len(frame)  # + start, system, stop
        began = time.perf_counter()
        exp.data(run="all", raw=True)
        raw_times.append(time.perf_counter() - began)
    began = time.perf_counter()
    exp.data(key="loss", run="all")
    filtered = time.perf_counter() - began
    om.catalog.close()
    return {
        "events": events,
        "log_s": logged,
        "data_s": statistics.median(times),
        "raw_s": statistics.median(raw_times),
        "filtered_s": filtered,
    }


# -- REST ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OMOPS_") and k != "MLFLOW_TRACKING_URI"
    }
    env.update(QUIET_ENV)
    env.update(extra)
    return env


def wait_ready(proc: subprocess.Popen, port: int, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            ok = conn.getresponse().status == 200
            conn.close()
            if ok:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not ready after {timeout}s:\n{log.read_text()[-3000:]}")


class Client:
    """One keep-alive connection; ``post`` returns the body, checks the status."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Content-Type": "application/json", "Connection": "keep-alive"}

    def post(self, path: str, body: bytes) -> bytes:
        try:
            self.conn.request("POST", path, body, self.headers)
            response = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            self.conn.close()  # uvicorn closes idle connections: reconnect once
            self.conn.request("POST", path, body, self.headers)
            response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {path}: {response.status} {data[:500]!r}")
        return data


def timed_requests(client: Client, path: str, body: bytes, count: int) -> list[float]:
    out = []
    for _ in range(count):
        began = time.perf_counter()
        client.post(path, body)
        out.append(time.perf_counter() - began)
    return out


def rest_overhead(root: Path, requests: int, blocks: int) -> dict:
    """1-row REST predict latency with the model untracked and tracked, alternating blocks."""
    home = root / "rest"
    om = omops.Omega(home=str(home))
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(500, 4)), columns=["a", "b", "c", "d"])  # noqa: N806
    model = LogisticRegression().fit(X, (X["a"] > 0).astype(int))
    om.models.put(model, MODEL)
    revision = om.models.metadata(MODEL).revision
    exp = om.runtime.experiment("rest")
    one = X.head(1)
    body = orjson.dumps({"columns": list(one.columns), "data": one.to_numpy().tolist()})
    path = f"/api/v1/model/{MODEL}/predict"

    port = free_port()
    log = root / "serve.log"
    proc = start_session(
        [*om_command(), "runtime", "serve", "--port", str(port)], _env(OMOPS_HOME=str(home)), log
    )
    try:
        wait_ready(proc, port, log)
        client = Client(port)
        timed_requests(client, path, body, 200)  # warm-up: model cache, connections
        off: list[float] = []
        on: list[float] = []
        paired: list[float] = []  # p50 tracked / p50 untracked, block by block
        per_block = max(requests // blocks, 1)
        for _ in range(blocks):
            exp.untrack(MODEL)
            time.sleep(2.2)  # the server re-reads who tracks a model every 2 s
            off_block = timed_requests(client, path, body, per_block)
            exp.track(MODEL)
            time.sleep(2.2)
            on_block = timed_requests(client, path, body, per_block)
            paired.append(statistics.median(on_block) / statistics.median(off_block))
            off += off_block
            on += on_block
        exp.untrack(MODEL)
        time.sleep(1.0)  # let the server's writer flush
        logged = len(exp.data(event="predict", run="all"))
    finally:
        stop_session(proc, 10)

    # The part of a tracked prediction that runs in the request: build the event, queue it.
    exp.track(MODEL)
    result = model.predict(one)
    for _ in range(200):
        log_prediction(om, MODEL, revision, one, result)
    began = time.perf_counter()
    for _ in range(requests):
        log_prediction(om, MODEL, revision, one, result)
    in_process = (time.perf_counter() - began) / requests
    writer_for(om).flush()
    om.catalog.close()
    return {
        "off_p50": statistics.median(off),
        "on_p50": statistics.median(on),
        "off_mean": statistics.fmean(off),
        "on_mean": statistics.fmean(on),
        "requests": len(on),
        "logged": logged,
        "log_prediction_s": in_process,
        "paired": paired,
    }


# -- report ----------------------------------------------------------------------


def machine() -> str:
    info = machine_info()
    return (
        f"{info['cores']} cores, {info['cpu']}, {info['ram']} RAM, "
        f"{platform.system()} {platform.release()}"
    )


def summary(args: argparse.Namespace, res: dict) -> list[tuple[str, str, str, str]]:
    """Rows: (what, omops, mlflow, ratio)."""
    calls = args.calls
    rows = []
    if "omops" in res:
        o_single = statistics.median(res["omops"]["single"]) / calls * 1e6
        o_batch = statistics.median(res["omops"]["batch"]) / calls * 1e6
        m = res.get("mlflow")
        m_single = statistics.median(m["single"]) / calls * 1e6 if m else None
        m_batch = statistics.median(m["batch"]) / calls * 1e6 if m else None
        for what, ours, theirs in (
            (f"log_metric x {calls}, µs per call", o_single, m_single),
            (f"one batch of {calls}, µs per metric", o_batch, m_batch),
        ):
            rows.append(
                (
                    what,
                    f"{ours:,.1f}",
                    f"{theirs:,.1f}" if theirs else "-",
                    f"{theirs / ours:,.1f}x" if theirs else "-",
                )
            )
    return rows


def report(args: argparse.Namespace, res: dict) -> str:
    lines: list[str] = []
    rows = summary(args, res)
    if rows:
        lines += ["| measure | omops | mlflow | mlflow / omops |", "|---|---:|---:|---:|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
        lines.append("")
    if "data" in res:
        d = res["data"]
        lines += [
            f"- `exp.data(run='all')` of {d['events'] + 3:,} events: {d['data_s']:.2f} s"
            f" (raw=True {d['raw_s']:.2f} s; key='loss': {d['filtered_s']:.2f} s);"
            " logging them with `log_events` in batches of"
            f" 100,000 took {d['log_s']:.1f} s ({d['log_s'] / d['events'] * 1e6:.1f} µs per event)",
        ]
    if "rest" in res:
        r = res["rest"]
        overhead = r["on_p50"] / r["off_p50"] - 1
        paired = statistics.median(r["paired"]) - 1
        spread = f"{min(r['paired']) - 1:+.1%} .. {max(r['paired']) - 1:+.1%}"
        projected = r["log_prediction_s"] / r["off_p50"]
        state = (
            f"tracking adds {overhead:+.1%} to the p50 (median of {len(r['paired'])}"
            f" alternating block pairs {paired:+.1%}, pairs range {spread}: the machine's"
            f" load is the noise), {r['logged']:,} predict events logged"
            if r["logged"]
            else f"**pending**: the server logged no predict events ({r['requests']:,} tracked"
            " requests), REST predictions are not wired to `log_prediction` yet;"
            f" tracked vs untracked p50 now differ by {overhead:+.1%} (noise)"
        )
        lines += [
            f"- REST 1-row predict p50, untracked {r['off_p50'] * 1e3:.3f} ms, tracked"
            f" {r['on_p50'] * 1e3:.3f} ms: {state}",
            f"- the in-request part of a tracked prediction (`log_prediction`: build the event,"
            f" queue it for the write-behind thread) costs {r['log_prediction_s'] * 1e6:.0f} µs"
            f" in-process = {projected:.1%} of the untracked p50 (target <= 20%)",
        ]
    return "\n".join(lines)


def markdown(args: argparse.Namespace, res: dict, load: str) -> str:
    commit = git_commit()
    m = res.get("mlflow", {})
    head = [
        f"## tracking ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC})",
        "",
        f"`.venv/bin/python bench/tracking.py --calls {args.calls} --repeats {args.repeats}"
        f" --batches {args.batches}"
        f" --events {args.events} --requests {args.requests}` (git {commit}, working tree"
        " may differ)",
        "",
        f"- machine: {machine()}",
        f"- python {platform.python_version()}, omops {omops.__version__}, sqlalchemy"
        f" {_version('sqlalchemy')}, pandas {pd.__version__}, pyarrow {_version('pyarrow')},"
        f" SQLite {__import__('sqlite3').sqlite_version}",
        f"- mlflow {m.get('mlflow', '-')} (its own venv, `--mlflow-python`), tracking URI"
        " `sqlite:///...` on the same disk; omops catalog: SQLite under OMOPS_HOME",
        f"- median of {args.repeats} repeats (log_metric) and of {args.repeats} x"
        f" {args.batches} batches, each repeat a fresh run after 10 warm-up calls",
        f"- load average (1, 5, 15 min) before / after: {load}",
        "",
    ]
    rows = summary(args, res)
    tail = [""]
    if rows and "mlflow" in res:
        worst = min(float(r[3].rstrip("x").replace(",", "")) for r in rows)
        tail.append(
            f"Targets: >= {TARGET:.0f}x MLflow per call: {worst:.1f}x at worst"
            f" ({'met' if worst >= TARGET else '**not met**'})."
        )
    if "rest" in res and res["rest"]["logged"]:
        paired = statistics.median(res["rest"]["paired"]) - 1
        tail.append(
            f"REST tracking overhead <= {REST_TARGET:.0%}: {paired:+.1%} (median of"
            f" block pairs; {'met' if paired <= REST_TARGET else '**not met**'})."
        )
    return "\n".join(head) + "\n" + report(args, res) + "\n" + "\n".join(tail) + "\n"


# -- main --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000, help="log_metric calls / batch size")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side (median)")
    parser.add_argument("--batches", type=int, default=5, help="batches per run (median)")
    parser.add_argument("--events", type=int, default=1_000_000, help="events for exp.data()")
    parser.add_argument("--requests", type=int, default=2_000, help="REST requests per state")
    parser.add_argument("--blocks", type=int, default=4, help="alternating REST blocks")
    parser.add_argument(
        "--mlflow-python",
        type=Path,
        default=DEFAULT_MLFLOW_PYTHON,
        help="python of the virtualenv with mlflow (default: %(default)s)",
    )
    parser.add_argument("--no-mlflow", action="store_true", help="omops only")
    parser.add_argument(
        "--only",
        choices=["logging", "data", "rest"],
        action="append",
        help="run only these phases (repeatable)",
    )
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    args = parser.parse_args(argv)
    if args.calls > 1_000 and not args.no_mlflow:
        parser.error("MLflow's log_batch takes at most 1,000 metrics: --calls <= 1000")
    phases = set(args.only or ["logging", "data", "rest"])
    use_mlflow = "logging" in phases and not args.no_mlflow
    if use_mlflow and not args.mlflow_python.exists():
        print(
            f"mlflow python {args.mlflow_python} not found. Install MLflow in its own "
            f"virtualenv (from the repository root):\n\n    {INSTALL_MLFLOW}\n\n"
            "or pass --mlflow-python PATH, or --no-mlflow to skip it.",
            file=sys.stderr,
        )
        return 2

    load = loadavg()
    print(f"load average before: {load} (other work on the machine skews the timings)")
    root = Path(tempfile.mkdtemp(prefix="omops-bench-tracking-"))
    res: dict = {}
    if "logging" in phases:
        print(
            f"logging: {args.calls} log_metric calls + one batch of {args.calls},"
            f" {args.repeats} repeats",
            flush=True,
        )
        res["omops"] = omops_logging(root / "omops", args.calls, args.repeats, args.batches)
        if use_mlflow:
            res["mlflow"] = mlflow_logging(
                args.mlflow_python, root / "mlflow", args.calls, args.repeats, args.batches
            )
    if "data" in phases:
        print(f"data: exp.data() over {args.events:,} events", flush=True)
        res["data"] = data_read(root / "data", args.events, args.repeats)
    if "rest" in phases:
        print(f"rest: {args.requests} x 1-row predict untracked and tracked", flush=True)
        res["rest"] = rest_overhead(root, args.requests, args.blocks)
    load = f"{load} / {loadavg()}"
    print()
    print(report(args, res))
    if args.markdown:
        print()
        print(markdown(args, res, load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
