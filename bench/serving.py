"""Serving benchmark: 1-row predict over REST, omops against ``mlflow models serve``.

One LogisticRegression, fitted on a DataFrame of ``--features`` float64
columns, is served three ways in one run:

* ``omops``      ``om runtime serve`` (a subprocess on a free loopback port),
                 the model stored with ``om.models.put``;
                 ``POST /api/v1/model/<name>/predict`` with
                 ``{"columns": [...], "data": [[...]]}`` (small numeric
                 bodies like this one reach the model as a NumPy array:
                 the README's array lane)
* ``omops --no-arrays`` a second omops server on the same store, started
                 with ``--no-arrays``: the model always gets a DataFrame, as
                 for inputs the array lane does not take (sequential phase)
* ``mlflow``     ``mlflow models serve --env-manager local`` (a subprocess,
                 run from its own virtualenv: ``--mlflow-python``), the same
                 fitted model saved with ``mlflow.sklearn.save_model``;
                 ``POST /invocations`` with ``{"dataframe_split": {...}}``
* ``in-process`` ``model.predict(frame)`` with no HTTP at all: the floor.

Both servers get the same client: one keep-alive ``http.client`` connection
per client thread, the body encoded once up front, the answer read whole and
checked against the in-process prediction. Phases, each bounded in count and
time:

* ``sequential`` ``--warmup`` requests, then ``--requests`` timed ones, one at
  a time, in blocks that alternate between the servers so drift hits both;
* ``concurrent`` ``--threads`` client threads, each with its own connection,
  ``--per-thread`` requests each (stopping early after ``--max-seconds``);
* ``10k rows``   ``--large-repeats`` requests of ``--large-rows`` rows, to MLflow
  and to omops twice: a JSON body, and ``omops arrow`` an Arrow IPC stream
  body answered as one (``Content-Type``/``Accept:
  application/vnd.apache.arrow.stream``).

The client runs in this process, on the same cores as the server: requests
per second are those of the client + server pair, alike for both servers.

Run::

    .venv/bin/python bench/serving.py                    # about a minute
    .venv/bin/python bench/serving.py --markdown         # also print a RESULTS.md section

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
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import psutil
import sklearn
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import git_commit, loadavg, machine, om_command, start_session, stop_session  # noqa: E402
from _common import version as _version

import omops  # noqa: E402

MODEL = "bench/serving"
DEFAULT_MLFLOW_PYTHON = ROOT / "bench" / ".venv-mlflow" / "bin" / "python"
INSTALL_MLFLOW = (
    "python3 -m venv bench/.venv-mlflow && "
    "bench/.venv-mlflow/bin/pip install mlflow scikit-learn pandas"
)
TARGETS = {"rps ratio (omops / mlflow)": 3.0, "omops p50 ms": 2.0}
# No traffic anywhere but loopback: MLflow's usage telemetry off.
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_TRACKING_URI": "",
    "NO_PROXY": "127.0.0.1,localhost",
}

SAVE_MLFLOW = """
import sys, joblib, pandas as pd, mlflow.sklearn
from mlflow.models import infer_signature
model = joblib.load(sys.argv[1])
X = pd.read_json(sys.argv[2], orient="split")
mlflow.sklearn.save_model(model, sys.argv[3], signature=infer_signature(X, model.predict(X)),
                          pip_requirements=["scikit-learn", "pandas"])
"""


# -- data and model ----------------------------------------------------------


def columns(features: int) -> list[str]:
    return [f"f{i}" for i in range(features)]


def frame(rows: int, features: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(rows, features)), columns=columns(features))


def fitted_model(features: int) -> tuple[LogisticRegression, pd.DataFrame]:
    X = frame(2000, features, seed=1)  # noqa: N806
    y = (X.iloc[:, 0] + 0.5 * X.iloc[:, 1] > 0).astype(int)
    return LogisticRegression().fit(X, y), X


# -- servers -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OMOPS_") and k not in ("MLFLOW_TRACKING_URI",)
    }
    env.update(QUIET_ENV)
    env.update(extra)
    return env


def wait_ready(proc: subprocess.Popen, port: int, path: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(
        f"server on port {port} not ready after {timeout}s:\n{log.read_text()[-3000:]}"
    )


# -- client ------------------------------------------------------------------


JSON_HEADERS = {"Content-Type": "application/json"}
ARROW = "application/vnd.apache.arrow.stream"


class Client:
    """One keep-alive connection; ``post`` returns the body, checks the status."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {**(headers or JSON_HEADERS), "Connection": "keep-alive"}

    def post(self, path: str, body: bytes) -> bytes:
        try:
            self.conn.request("POST", path, body, self.headers)
            response = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # uvicorn closes connections idle for 5 s (between blocks): reconnect once
            self.conn.close()
            self.conn.request("POST", path, body, self.headers)
            response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {path}: {response.status} {data[:500]!r}")
        return data

    def close(self) -> None:
        self.conn.close()


class Target:
    """One server: where to post, what to send, how to read the predictions."""

    def __init__(
        self,
        name: str,
        port: int,
        path: str,
        encode: Callable[[pd.DataFrame], bytes],
        decode: Callable[[bytes], list],
        headers: dict[str, str] | None = None,
    ) -> None:
        self.name, self.port, self.path = name, port, path
        self.encode, self.decode = encode, decode
        self.headers = headers or JSON_HEADERS
        self.pid: int | None = None

    def cpu(self) -> float:
        """CPU seconds used so far by the server process and its children."""
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for proc in procs:
            try:
                t = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
        return total


def omops_target(port: int) -> Target:
    def encode(X: pd.DataFrame) -> bytes:  # noqa: N803
        return orjson.dumps({"columns": list(X.columns), "data": X.to_numpy().tolist()})

    return Target(
        "omops", port, f"/api/v1/model/{MODEL}/predict", encode, lambda b: orjson.loads(b)["result"]
    )


def arrow_stream(X: pd.DataFrame) -> bytes:  # noqa: N803
    """The rows of ``X`` (not its index) as an Arrow IPC stream: a bulk client's body."""
    import pyarrow as pa

    table = pa.Table.from_pandas(X, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def omops_arrow_target(port: int) -> Target:
    """The same omops server, sent and answering Arrow IPC streams (bulk clients)."""
    import pyarrow as pa

    def decode(body: bytes) -> list:
        return pa.ipc.open_stream(body).read_all().column("result").to_pylist()

    return Target(
        "omops arrow",
        port,
        f"/api/v1/model/{MODEL}/predict",
        arrow_stream,
        decode,
        {"Content-Type": ARROW, "Accept": ARROW},
    )


def omops_dataframe_target(port: int) -> Target:
    """A second omops server, started with ``--no-arrays``: models always get a DataFrame."""
    target = omops_target(port)
    target.name = "omops --no-arrays"
    return target


def mlflow_target(port: int) -> Target:
    def encode(X: pd.DataFrame) -> bytes:  # noqa: N803
        return orjson.dumps(
            {"dataframe_split": {"columns": list(X.columns), "data": X.to_numpy().tolist()}}
        )

    return Target("mlflow", port, "/invocations", encode, lambda b: orjson.loads(b)["predictions"])


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def timed_posts(
    client: Client, path: str, body: bytes, n: int, out: list[float], deadline: float = float("inf")
) -> None:
    clock = time.perf_counter
    for _ in range(n):
        start = clock()
        client.post(path, body)
        out.append(clock() - start)
        if start > deadline:
            break


def sequential(
    targets: list[Target], body: dict[str, bytes], n: int, warmup: int, blocks: int
) -> dict[str, dict[str, float]]:
    clients = {t.name: Client(t.port, t.headers) for t in targets}
    times: dict[str, list[float]] = {t.name: [] for t in targets}
    walls: dict[str, float] = {t.name: 0.0 for t in targets}
    cpus: dict[str, float] = {t.name: 0.0 for t in targets}
    try:
        for t in targets:
            timed_posts(clients[t.name], t.path, body[t.name], warmup, [])
        per_block = max(1, n // blocks)
        for i in range(blocks):
            order = targets if i % 2 == 0 else targets[::-1]
            for t in order:
                timed_posts(clients[t.name], t.path, body[t.name], 5, [])  # reconnect, warm
                cpu, start = t.cpu(), time.perf_counter()
                timed_posts(clients[t.name], t.path, body[t.name], per_block, times[t.name])
                walls[t.name] += time.perf_counter() - start
                cpus[t.name] += t.cpu() - cpu
    finally:
        for c in clients.values():
            c.close()
    return {name: summary(values, walls[name], cpus[name]) for name, values in times.items()}


def concurrent(
    target: Target, body: bytes, threads: int, per_thread: int, max_seconds: float
) -> dict[str, float]:
    clients = [Client(target.port, target.headers) for _ in range(threads)]
    for c in clients:  # open and warm each connection
        timed_posts(c, target.path, body, 20, [])
    times: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        barrier.wait()
        try:
            timed_posts(
                clients[i],
                target.path,
                body,
                per_thread,
                times[i],
                deadline=time.perf_counter() + max_seconds,
            )
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for p in pool:
        p.start()
    cpu = target.cpu()
    barrier.wait()
    start = time.perf_counter()
    for p in pool:
        p.join(max_seconds + 60)
    wall = time.perf_counter() - start
    cpu = target.cpu() - cpu
    for c in clients:
        c.close()
    if errors:
        raise errors[0]
    return summary([x for t in times for x in t], wall, cpu)


def summary(values: list[float], wall: float, cpu: float) -> dict[str, float]:
    """Latency percentiles (ms), requests per second, server CPU ms per request."""
    return {
        "n": len(values),
        "p50": percentile(values, 50) * 1e3,
        "p99": percentile(values, 99) * 1e3,
        "rps": len(values) / wall if wall else 0.0,
        "cpu": cpu / len(values) * 1e3 if values else 0.0,
    }


def in_process(fn: Callable[[], object], n: int) -> dict[str, float]:
    for _ in range(min(n, 200)):
        fn()
    values = []
    clock = time.perf_counter
    cpu, start = time.process_time(), clock()
    for _ in range(n):
        t0 = clock()
        fn()
        values.append(clock() - t0)
    return summary(values, clock() - start, time.process_time() - cpu)


# -- report ------------------------------------------------------------------


def mlflow_versions(python: Path) -> str:
    code = (
        "import importlib.metadata as m, importlib.util as u\n"
        "print(', '.join(f'{d} ' + (m.version(d) if u.find_spec(i) else '-') for d, i in "
        "[('mlflow', 'mlflow'), ('uvicorn', 'uvicorn'), ('fastapi', 'fastapi'), "
        "('httptools', 'httptools'), ('uvloop', 'uvloop')]))"
    )
    out = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, env=_env(), check=False
    )
    return out.stdout.strip() or out.stderr.strip()[-200:]


def omops_versions() -> str:
    return ", ".join(
        f"{d} {_version(d)}"
        for d in ("fastapi", "starlette", "uvicorn", "httptools", "uvloop", "orjson")
    )


def rows_table(res: dict[str, dict[str, dict[str, float]]]) -> list[tuple[str, str, dict]]:
    out = []
    for phase in ("sequential", "concurrent", "10k rows"):
        for server in (
            "omops",
            "omops arrow",
            "omops --no-arrays",
            "mlflow",
            "in-process",
            "in-process ndarray",
        ):
            if server in res.get(phase, {}):
                out.append((phase, server, res[phase][server]))
    return out


def ratios(res: dict[str, dict[str, dict[str, float]]]) -> list[tuple[str, float]]:
    out = []
    for phase in ("sequential", "concurrent", "10k rows"):
        r = res.get(phase, {})
        if "omops" in r and "mlflow" in r:
            out.append((f"{phase}: rps omops / mlflow", r["omops"]["rps"] / r["mlflow"]["rps"]))
            out.append((f"{phase}: p50 mlflow / omops", r["mlflow"]["p50"] / r["omops"]["p50"]))
            out.append(
                (f"{phase}: server CPU/req mlflow / omops", r["mlflow"]["cpu"] / r["omops"]["cpu"])
            )
    bulk = res.get("10k rows", {})
    for server in ("omops", "omops arrow"):
        if server in bulk and "in-process" in bulk:
            out.append(
                (
                    f"10k rows: p50 {server} / in-process",
                    bulk[server]["p50"] / bulk["in-process"]["p50"],
                )
            )
    return out


def markdown(args: argparse.Namespace, res: dict, load: str, mlflow_info: str) -> str:
    host = machine()
    commit = git_commit()
    seq = res["sequential"]
    lines = [
        f"## serving ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC})",
        "",
        f"`.venv/bin/python bench/serving.py --requests {args.requests} --threads {args.threads}"
        f" --per-thread {args.per_thread} --large-rows {args.large_rows}"
        f" --workers {args.workers}` (git {commit},"
        " working tree may differ)",
        "",
        f"- machine: {host['cores']} cores, {host['cpu']}, {host['ram']} RAM,"
        f" {platform.system()} {platform.release()}",
        f"- python {platform.python_version()}, scikit-learn {sklearn.__version__},"
        f" pandas {pd.__version__}, numpy {np.__version__}",
        f"- omops {omops.__version__} server: {omops_versions()}",
        f"- mlflow venv: {mlflow_info}",
        f"- model: LogisticRegression on {args.features} float64 columns (a DataFrame);"
        f" {args.workers} uvicorn worker(s) each; client: http.client keep-alive, on the same machine"
        " (it shares the 2 cores with the server)",
        f"- load average (1, 5, 15 min) before / after: {load}",
        "",
        "| phase | server | requests | p50 ms | p99 ms | req/s | server CPU ms/req |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for phase, server, s in rows_table(res):
        lines.append(
            f"| {phase} | {server} | {s['n']} | {s['p50']:.3f} | {s['p99']:.3f} |"
            f" {s['rps']:,.0f} | {s['cpu']:.3f} |"
        )
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in ratios(res)]
    if "mlflow" in seq:
        rps = seq["omops"]["rps"] / seq["mlflow"]["rps"]
        lines += [
            "",
            f"Targets: sequential rps ratio {rps:.2f} (target >= 3.0:"
            f" {'met' if rps >= 3 else '**not met**'}); omops p50"
            f" {seq['omops']['p50']:.3f} ms (target <= 2 ms:"
            f" {'met' if seq['omops']['p50'] <= 2 else '**not met**'}).",
        ]
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed sequential requests")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests first")
    parser.add_argument("--blocks", type=int, default=4, help="alternating blocks per server")
    parser.add_argument("--threads", type=int, default=4, help="client threads, concurrent phase")
    parser.add_argument("--per-thread", type=int, default=500, help="requests per client thread")
    parser.add_argument(
        "--max-seconds", type=float, default=20.0, help="bound on each concurrent phase"
    )
    parser.add_argument("--large-rows", type=int, default=10_000, help="rows of the big request")
    parser.add_argument("--large-repeats", type=int, default=20, help="big requests per server")
    parser.add_argument("--features", type=int, default=10, help="model input columns")
    parser.add_argument(
        "--mlflow-python",
        type=Path,
        default=DEFAULT_MLFLOW_PYTHON,
        help="python of the virtualenv with mlflow (default: %(default)s)",
    )
    parser.add_argument("--no-mlflow", action="store_true", help="omops and in-process only")
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes of each omops server (--workers)"
    )
    args = parser.parse_args(argv)

    use_mlflow = not args.no_mlflow
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
    root = Path(tempfile.mkdtemp(prefix="omops-bench-serving-"))
    procs: list[subprocess.Popen] = []
    try:
        model, train = fitted_model(args.features)
        one = frame(1, args.features, seed=2)
        big = frame(args.large_rows, args.features, seed=3)
        expected_one = model.predict(one).tolist()
        expected_big = model.predict(big).tolist()

        om = omops.Omega(home=root / "home")
        om.models.put(model, MODEL)
        om.catalog.close()
        port = free_port()
        procs.append(
            start_session(
                [
                    *om_command(),
                    "runtime",
                    "serve",
                    "--port",
                    str(port),
                    "--workers",
                    str(args.workers),
                ],
                _env(OMOPS_HOME=str(root / "home")),
                root / "omops.log",
            )
        )
        targets = [omops_target(port)]
        targets[0].pid = procs[0].pid
        plain_port = free_port()
        procs.append(
            start_session(
                [
                    *om_command(),
                    "runtime",
                    "serve",
                    "--port",
                    str(plain_port),
                    "--no-arrays",
                    "--workers",
                    str(args.workers),
                ],
                _env(OMOPS_HOME=str(root / "home")),
                root / "omops-no-arrays.log",
            )
        )
        plain = omops_dataframe_target(plain_port)
        plain.pid = procs[-1].pid

        mlflow_info = "-"
        if use_mlflow:
            mlflow_info = mlflow_versions(args.mlflow_python)
            import joblib

            joblib.dump(model, root / "model.joblib")
            train.head(50).to_json(root / "example.json", orient="split")
            saved = subprocess.run(
                [
                    str(args.mlflow_python),
                    "-c",
                    SAVE_MLFLOW,
                    str(root / "model.joblib"),
                    str(root / "example.json"),
                    str(root / "mlflow-model"),
                ],
                capture_output=True,
                text=True,
                env=_env(),
                check=False,
            )
            if saved.returncode:
                raise RuntimeError(f"saving the MLflow model failed:\n{saved.stderr[-3000:]}")
            mport = free_port()
            procs.append(
                start_session(
                    [
                        str(args.mlflow_python),
                        "-m",
                        "mlflow",
                        "models",
                        "serve",
                        "-m",
                        str(root / "mlflow-model"),
                        "--env-manager",
                        "local",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(mport),
                        "-w",
                        "1",
                    ],
                    # mlflow starts `uvicorn` by name: its virtualenv's bin comes first on PATH
                    _env(
                        PATH=f"{args.mlflow_python.parent}{os.pathsep}{os.environ.get('PATH', '')}"
                    ),
                    root / "mlflow.log",
                )
            )
            targets.append(mlflow_target(mport))
            targets[1].pid = procs[-1].pid
        wait_ready(procs[0], port, "/health", root / "omops.log", 60)
        wait_ready(procs[1], plain_port, "/health", root / "omops-no-arrays.log", 60)
        if use_mlflow:
            wait_ready(procs[2], mport, "/ping", root / "mlflow.log", 120)

        arrow = omops_arrow_target(port)
        arrow.pid = procs[0].pid
        body_one = {t.name: t.encode(one) for t in [*targets, plain, arrow]}
        body_big = {t.name: t.encode(big) for t in [*targets, plain, arrow]}
        for t in [*targets, plain, arrow]:  # same answers as in-process, from every server
            c = Client(t.port, t.headers)
            assert t.decode(c.post(t.path, body_one[t.name])) == expected_one, t.name
            assert t.decode(c.post(t.path, body_big[t.name])) == expected_big, t.name
            c.close()
        print(f"servers: {', '.join(f'{t.name} :{t.port}{t.path}' for t in targets)}", flush=True)

        res: dict[str, dict[str, dict[str, float]]] = {}
        print(f"sequential: {args.requests} x 1-row requests per server", flush=True)
        res["sequential"] = sequential(
            [*targets, plain], body_one, args.requests, args.warmup, args.blocks
        )
        one_np = one.to_numpy()
        res["sequential"]["in-process"] = in_process(lambda: model.predict(one), args.requests)
        with warnings.catch_warnings():  # "X does not have valid feature names"
            warnings.simplefilter("ignore", UserWarning)
            res["sequential"]["in-process ndarray"] = in_process(
                lambda: model.predict(one_np), args.requests
            )
        print(f"concurrent: {args.threads} threads x {args.per_thread} requests", flush=True)
        res["concurrent"] = {
            t.name: concurrent(t, body_one[t.name], args.threads, args.per_thread, args.max_seconds)
            for t in targets
        }
        print(f"10k rows: {args.large_repeats} x {args.large_rows}-row requests", flush=True)
        res["10k rows"] = sequential([*targets, arrow], body_big, args.large_repeats, 2, 2)
        res["10k rows"]["in-process"] = in_process(lambda: model.predict(big), args.large_repeats)
    finally:
        for p in procs:
            stop_session(p, 10)
        shutil.rmtree(root, ignore_errors=True)

    load = f"{load} / {loadavg()}"
    print(f"load average before / after: {load}")
    print()
    print(
        f"{'phase':<12}{'server':<20}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}"
        f"{'cpu ms/req':>12}"
    )
    for phase, server, s in rows_table(res):
        print(
            f"{phase:<12}{server:<20}{s['n']:>6}{s['p50']:>10.3f}{s['p99']:>10.3f}"
            f"{s['rps']:>10,.0f}{s['cpu']:>12.3f}"
        )
    print()
    for name, value in ratios(res):
        print(f"{name:<34}{value:>8.2f}")
    seq = res["sequential"]
    ok = seq["omops"]["p50"] <= TARGETS["omops p50 ms"]
    print(f"target omops p50 <= 2 ms: {seq['omops']['p50']:.3f} ms -> {'met' if ok else 'NOT met'}")
    bulk = res["10k rows"]
    for name, limit in (("omops arrow", 2.0), ("omops", 5.0)):
        ratio = bulk[name]["p50"] / bulk["in-process"]["p50"]
        met = ratio <= limit
        ok = ok and met
        print(
            f"target {args.large_rows}-row {name} p50 <= {limit:g}x in-process: {ratio:.2f}x "
            f"-> {'met' if met else 'NOT met'}"
        )
    if "mlflow" in seq:
        rps = seq["omops"]["rps"] / seq["mlflow"]["rps"]
        met = rps >= TARGETS["rps ratio (omops / mlflow)"]
        ok = ok and met
        print(f"target rps omops / mlflow >= 3: {rps:.2f} -> {'met' if met else 'NOT met'}")
    if args.markdown:
        print()
        print(markdown(args, res, load, mlflow_info))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
