"""Runtime benchmark: the overhead of running a predict task through om.runtime.

A LogisticRegression (10 float64 features) and a 100-row dataset are stored
in a temporary ``OMOPS_HOME`` (SQLite catalog, blob folder). One predict is
timed five ways, in one run:

* ``pure predict``   ``model.predict(X)``, model and frame in hand: the floor
* ``direct cached``  ``model.predict(om.datasets.get('bench/X'))``, model in hand
* ``direct``         ``om.models.get('bench/lr').predict(om.datasets.get('bench/X'))``
* ``local``          ``om.runtime.mode(local=True).model('bench/lr').predict('bench/X').get()``
* ``celery``         the same through a real worker: ``om runtime worker`` (a
                     subprocess on the same OMOPS_HOME, its own queue) with
                     the RabbitMQ broker ``--broker`` (default ``$OMOPS_TEST_BROKER``),
                     results over ``rpc://``
* ``celery no cache`` the same on a second worker started with
                     ``OMOPS_READ_CACHE_MB=0``: every task reads the dataset's blob
                     (the in-process ways and ``celery`` reuse the read of an
                     unchanged revision, see the README's read cache)

Every way reads the dataset (``om.datasets.get``), so the overheads compare
like with like; ``direct`` also loads the model from its blob each call,
which the runtime caches per revision (``direct cached`` is the baseline
without that load). Every answer is checked against the pure predict.
Latencies are p50/p99 of ``--calls`` calls after ``--warmup`` (Celery:
``--celery-calls``), the ways interleaved in blocks.

Run::

    source /tmp/pgenv   # or: export OMOPS_TEST_BROKER=amqp://guest:guest@127.0.0.1:5672//
    .venv/bin/python bench/runtime.py
    .venv/bin/python bench/runtime.py --markdown     # also print a RESULTS.md section
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import git_commit, loadavg, machine, om_command, start_session, stop_session  # noqa: E402
from _common import version as _version

import omops  # noqa: E402
import omops.errors  # noqa: E402

TARGETS = {"local overhead ms": 1.0, "celery p50 ms": 10.0}
MODES = ("pure predict", "direct cached", "direct", "local", "celery", "celery no cache")


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(rows, 10)), columns=[f"f{i}" for i in range(10)])


def stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1e3
    return {
        "n": len(values),
        "p50": float(np.percentile(a, 50)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
    }


def timed(fn: Callable[[], object], n: int, out: list[float]) -> None:
    clock = time.perf_counter
    for _ in range(n):
        start = clock()
        fn()
        out.append(clock() - start)


def start_worker(home: Path, broker: str, label: str, log: Path, **extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}
    env.update(OMOPS_HOME=str(home), OMOPS_BROKER=broker, **extra)
    cmd = [*om_command(), "runtime", "worker", "--label", label, "--concurrency", "1"]
    return start_session([*cmd, "--loglevel", "WARNING"], env, log)


def wait_worker(
    om: omops.Omega, label: str, proc: subprocess.Popen, log: Path, timeout: float
) -> None:
    runtime = om.runtime.require(label)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            runtime.ping("x").get(timeout=2)
            return
        except omops.errors.OmopsError:
            continue
    raise RuntimeError(f"worker not answering after {timeout}s:\n{log.read_text()[-3000:]}")


def report_rows(res: dict[str, dict[str, float]]) -> list[tuple[str, dict, str, str]]:
    base = res["direct"]["p50"]
    cached = res["direct cached"]["p50"]
    rows = []
    for mode in MODES:
        if mode in res:
            s = res[mode]
            rows.append((mode, s, f"{s['p50'] - base:+.3f}", f"{s['p50'] - cached:+.3f}"))
    return rows


def markdown(args: argparse.Namespace, res: dict, load: str, broker: str | None) -> str:
    host = machine()
    commit = git_commit()
    lines = [
        f"## runtime ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC})",
        "",
        f"`.venv/bin/python bench/runtime.py --calls {args.calls} --celery-calls"
        f" {args.celery_calls} --rows {args.rows}` (git {commit}, working tree may differ)",
        "",
        f"- machine: {host['cores']} cores, {host['cpu']}, {host['ram']} RAM,"
        f" {platform.system()} {platform.release()}",
        f"- python {platform.python_version()}, omops {omops.__version__}, celery"
        f" {_version('celery')}, kombu {_version('kombu')}, scikit-learn {_version('scikit-learn')},"
        f" pandas {pd.__version__}, sqlalchemy {_version('sqlalchemy')}",
        f"- predict of a LogisticRegression on a stored {args.rows}-row x 10 dataset; SQLite"
        " catalog in a temporary OMOPS_HOME shared by client and worker; Celery: RabbitMQ"
        f" on loopback{'' if broker else ' (not run: no broker)'}, results over rpc://,"
        " 1 worker process per Celery way (prefork, concurrency 1)",
        f"- load average (1, 5, 15 min) before / after: {load}",
        "",
        "| way | calls | p50 ms | p99 ms | p50 - direct (ms) | p50 - direct cached (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode, s, d, c in report_rows(res):
        lines.append(f"| {mode} | {s['n']} | {s['p50']:.3f} | {s['p99']:.3f} | {d} | {c} |")
    lines.append("")
    lines.append(verdict(res))
    return "\n".join(lines) + "\n"


def verdict(res: dict[str, dict[str, float]]) -> str:
    local = res["local"]["p50"] - res["direct"]["p50"]
    local_cached = res["local"]["p50"] - res["direct cached"]["p50"]
    text = (
        f"Targets: local adds {local:+.3f} ms to direct ({local_cached:+.3f} ms to direct"
        f" cached), target <= 1 ms: {'met' if local_cached <= 1 else 'NOT met'}"
    )
    if "celery" in res:
        p50 = res["celery"]["p50"]
        text += f"; Celery p50 {p50:.3f} ms, target <= 10 ms: {'met' if p50 <= 10 else 'NOT met'}"
    if "celery no cache" in res:
        text += f" (without the read cache: {res['celery no cache']['p50']:.3f} ms)"
    return text + "."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="timed calls (in-process ways)")
    parser.add_argument("--celery-calls", type=int, default=300, help="timed Celery calls")
    parser.add_argument("--warmup", type=int, default=30, help="untimed calls per way first")
    parser.add_argument("--blocks", type=int, default=5, help="interleaved blocks")
    parser.add_argument("--rows", type=int, default=100, help="rows of the dataset")
    parser.add_argument(
        "--broker",
        default=os.environ.get("OMOPS_TEST_BROKER"),
        help="Celery broker URL (default: $OMOPS_TEST_BROKER)",
    )
    parser.add_argument("--no-celery", action="store_true", help="skip the Celery way")
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    args = parser.parse_args(argv)
    broker = None if args.no_celery else args.broker
    if not args.no_celery and not broker:
        print(
            "no broker: pass --broker amqp://... or set OMOPS_TEST_BROKER (source /tmp/pgenv),"
            " or --no-celery",
            file=sys.stderr,
        )
        return 2

    load = loadavg()
    print(f"load average before: {load} (other work on the machine skews the timings)")
    root = Path(tempfile.mkdtemp(prefix="omops-bench-runtime-"))
    workers: list[subprocess.Popen] = []
    try:
        home = root / "home"
        om = omops.Omega(home=home, broker=broker)
        X = frame(args.rows, seed=1)  # noqa: N806
        y = (X["f0"] + X["f1"] > 0).astype(int)
        model = LogisticRegression().fit(X, y)
        om.datasets.put(X, "bench/X", append=False)
        om.models.put(model, "bench/lr")
        expected = model.predict(X).tolist()
        local = om.runtime.mode(local=True).model("bench/lr")

        ways: dict[str, Callable[[], object]] = {
            "pure predict": lambda: model.predict(X),
            "direct cached": lambda: model.predict(om.datasets.get("bench/X")),
            "direct": lambda: om.models.get("bench/lr").predict(om.datasets.get("bench/X")),
            "local": lambda: local.predict("bench/X").get(),
        }
        counts = dict.fromkeys(ways, args.calls)
        if broker:
            for way, extra in (("celery", {}), ("celery no cache", {"OMOPS_READ_CACHE_MB": "0"})):
                label = f"bench-{uuid.uuid4().hex[:8]}"  # a queue of its own on a shared broker
                log = root / f"worker-{label}.log"
                workers.append(start_worker(home, broker, label, log, **extra))
                wait_worker(om, label, workers[-1], log, 60)
                remote = om.runtime.mode(local=False).require(label).model("bench/lr")
                ways[way] = lambda remote=remote: remote.predict("bench/X").get(timeout=30)
                counts[way] = args.celery_calls
        for name, fn in ways.items():
            got = fn()
            got = got.tolist() if hasattr(got, "tolist") else got
            assert got == expected, name
            timed(fn, args.warmup, [])
        print(
            f"ways: {', '.join(ways)}; {args.calls} calls each ({args.celery_calls} Celery),"
            f" in {args.blocks} interleaved blocks",
            flush=True,
        )
        times: dict[str, list[float]] = {name: [] for name in ways}
        for i in range(args.blocks):
            order = list(ways) if i % 2 == 0 else list(ways)[::-1]
            for name in order:
                timed(ways[name], max(1, counts[name] // args.blocks), times[name])
        res = {name: stats(values) for name, values in times.items()}
    finally:
        for worker in workers:
            stop_session(worker, 20)
        shutil.rmtree(root, ignore_errors=True)

    load = f"{load} / {loadavg()}"
    print(f"load average before / after: {load}")
    print()
    print(f"{'way':<15}{'calls':>7}{'p50 ms':>10}{'p99 ms':>10}{'- direct':>11}{'- cached':>11}")
    for mode, s, d, c in report_rows(res):
        print(f"{mode:<15}{s['n']:>7}{s['p50']:>10.3f}{s['p99']:>10.3f}{d:>11}{c:>11}")
    print()
    print(verdict(res))
    if args.markdown:
        print()
        print(markdown(args, res, load, broker))
    ok = res["local"]["p50"] - res["direct cached"]["p50"] <= TARGETS["local overhead ms"]
    if "celery" in res:
        ok = ok and res["celery"]["p50"] <= TARGETS["celery p50 ms"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
