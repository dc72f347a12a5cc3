"""Dashboard benchmark: how long each page takes, against the raw REST call beside it.

A store on the embedded default (SQLite catalog and blob folder under a
temporary ``OMOPS_HOME``) is filled with ``--objects`` objects (half
datasets, 3/10 models, 1/5 jobs), ``--tasks`` task records, and an
experiment of ``--runs`` runs holding ``--events`` metric events in all;
then ``om runtime serve`` (a subprocess on a free loopback port) serves it and
each page is fetched ``--repeats`` times after one warm-up, one keep-alive
client, pages in turn so that drift hits all of them. Where the REST API has
the same data, that JSON call is timed in the same rounds, and the ratio page
/ REST says what rendering HTML costs on top.

Run::

    .venv/bin/python bench/dashboard.py                  # about a minute
    .venv/bin/python bench/dashboard.py --markdown       # also print a RESULTS.md section

Target: every page under 300 ms (median) with 1,000 objects.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import numpy as np
import pandas as pd

from bench._common import (
    git_commit,
    loadavg,
    machine,
    om_command,
    start_session,
    stop_session,
    version,
)

TARGET_MS = 300.0
#: (label, dashboard page, the REST call with the same data or None).
PAGES = [
    ("buckets", "/ui", None),
    ("datasets list", "/ui/datasets", "/api/v1/dataset"),
    ("datasets page 5", "/ui/datasets?page=5", None),
    ("dataset + preview", "/ui/datasets/data/0007", "/api/v1/dataset/data/0007?limit=100"),
    (
        "dataset filtered",
        "/ui/datasets/data/0007?where=a__gt%3D0.5",
        "/api/v1/dataset/data/0007?a__gt=0.5",
    ),
    ("models list", "/ui/models", "/api/v1/model"),
    ("model", "/ui/models/model/0003", "/api/v1/model/model/0003"),
    ("experiments", "/ui/experiments", None),
    ("experiment (runs)", "/ui/experiments/big", None),
    ("compare 2 runs", "/ui/experiments/big?compare=1&compare=2", None),
    ("run events", "/ui/experiments/big?run=3", None),
    ("production", "/ui/production", None),
    ("monitor page", "/ui/production/model/0000", None),
    ("jobs list", "/ui/jobs", "/api/v1/job"),
    ("job", "/ui/jobs/job/0001", "/api/v1/job/job/0001"),
    ("scripts", "/ui/scripts", "/api/v1/script"),
    ("tasks", "/ui/tasks", None),
    ("tasks FAILURE", "/ui/tasks?status=FAILURE", None),
    ("docs", "/docs", None),
]


def fill(om, *, objects: int, tasks: int, runs: int, events: int) -> dict[str, float]:  # noqa: ANN001
    """The store the pages read; returns seconds each part took to make."""
    from sklearn.linear_model import LogisticRegression

    took: dict[str, float] = {}
    begin = time.perf_counter()
    rng = np.random.default_rng(0)
    datasets, models = objects // 2, objects * 3 // 10
    job_count = objects - datasets - models
    for i in range(datasets):
        frame = pd.DataFrame({"a": rng.random(200), "b": rng.integers(0, 9, 200), "c": ["x"] * 200})
        om.datasets.put(frame, f"data/{i:04d}", append=False)
    took["datasets"] = time.perf_counter() - begin
    begin = time.perf_counter()
    x = rng.random((40, 3))
    model = LogisticRegression().fit(pd.DataFrame(x, columns=["f1", "f2", "f3"]), x[:, 0] > 0.5)
    for i in range(models):
        om.models.put(model, f"model/{i:04d}")
    took["models"] = time.perf_counter() - begin
    begin = time.perf_counter()
    for i in range(job_count):
        om.jobs.create(f"print({i})", f"job/{i:04d}")
    took["jobs"] = time.perf_counter() - begin
    begin = time.perf_counter()
    log = om.catalog.task_log
    for i in range(tasks):
        task_id = uuid.uuid4().hex
        log.submitted(task_id, bucket=om.bucket, task="omops.model")
        if i % 10 == 0:
            log.finished(task_id, error={"type": "ValueError", "message": "bad input"})
        else:
            log.finished(task_id, result={"rows": 1})
    took["tasks"] = time.perf_counter() - begin
    begin = time.perf_counter()
    per_run = max(events // runs, 1)
    for _ in range(runs):
        with om.runtime.experiment("big") as exp:
            exp.log_param("lr", 0.1)
            for start in range(0, per_run, 100_000):
                count = min(100_000, per_run - start)
                exp.log_events(
                    ("metric", "loss", float(step), step) for step in range(start, start + count)
                )
    took["events"] = time.perf_counter() - begin
    om.runtime.experiment("prod").track("model/0000")
    return took


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(home: Path) -> tuple[object, str]:
    port = free_port()
    env = {**os.environ, "OMOPS_HOME": str(home)}
    for name in ("OMOPS_CATALOG", "OMOPS_BLOBS", "OMOPS_BROKER", "OMOPS_BUCKET"):
        env.pop(name, None)
    proc = start_session(
        [*om_command(), "runtime", "serve", "--port", str(port)], env, home / "serve.log"
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    stop_session(proc)
    raise SystemExit(f"the server did not start:\n{(home / 'serve.log').read_text()}")


def measure(url: str, repeats: int) -> dict[str, list[float]]:
    """Milliseconds of each page and REST call, ``repeats`` rounds after a warm-up round."""
    times: dict[str, list[float]] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for round_ in range(repeats + 1):
            for label, page, rest in PAGES:
                for kind, path in (("page", page), ("rest", rest)):
                    if path is None:
                        continue
                    begin = time.perf_counter()
                    response = client.get(path)
                    elapsed = (time.perf_counter() - begin) * 1000
                    if response.status_code != 200:
                        raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
                    if round_:
                        times.setdefault(f"{kind}:{label}", []).append(elapsed)
    return times


def table(
    times: dict[str, list[float]],
) -> list[tuple[str, float, float, float | None, float | None]]:
    rows = []
    for label, _page, rest in PAGES:
        page_times = times[f"page:{label}"]
        median = statistics.median(page_times)
        p95 = sorted(page_times)[int(0.95 * (len(page_times) - 1))]
        rest_median = statistics.median(times[f"rest:{label}"]) if rest else None
        rows.append(
            (label, median, p95, rest_median, median / rest_median if rest_median else None)
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    args = parser.parse_args(argv)
    from omops.omega import Omega

    with tempfile.TemporaryDirectory(prefix="omops-dashboard-bench-") as tmp:
        home = Path(tmp)
        om = Omega(home=str(home))
        took = fill(om, objects=args.objects, tasks=args.tasks, runs=args.runs, events=args.events)
        om.close()
        before = loadavg()
        proc, url = serve(home)
        try:
            times = measure(url, args.repeats)
        finally:
            stop_session(proc)
        after = loadavg()
    rows = table(times)
    print(
        f"store made in {sum(took.values()):.1f} s: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
    )
    print(f"{'page':<20} {'median ms':>10} {'p95 ms':>8} {'REST ms':>8} {'page/REST':>9}")
    for label, median, p95, rest, ratio in rows:
        rest_text = f"{rest:8.1f}" if rest is not None else f"{'-':>8}"
        ratio_text = f"{ratio:9.2f}" if ratio is not None else f"{'-':>9}"
        print(f"{label:<20} {median:10.1f} {p95:8.1f} {rest_text} {ratio_text}")
    worst = max(rows, key=lambda r: r[1])
    met = worst[1] < TARGET_MS
    print(
        f"slowest page: {worst[0]} {worst[1]:.1f} ms (target < {TARGET_MS:.0f} ms: {'met' if met else 'NOT met'})"
    )
    if args.markdown:
        print(markdown(args, rows, took, before, after, worst, met))
    return 0 if met else 1


def markdown(args, rows, took, before, after, worst, met) -> str:  # noqa: ANN001
    info = machine()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## dashboard ({now})",
        "",
        f"`.venv/bin/python bench/dashboard.py --objects {args.objects} --tasks {args.tasks} "
        f"--runs {args.runs} --events {args.events} --repeats {args.repeats}` (git {git_commit()}, "
        "working tree may differ)",
        "",
        f"- machine: {info['cores']} cores, {info['cpu']}, {info['ram']} RAM",
        f"- python {sys.version.split()[0]}, omops {version('omops')}, fastapi {version('fastapi')}, "
        f"jinja2 {version('jinja2')}; embedded default: SQLite catalog and blob folder under a temporary OMOPS_HOME, "
        "`om runtime serve` (one uvicorn process) on loopback, one keep-alive httpx client in this process",
        f"- store: {args.objects} objects ({args.objects // 2} datasets of 200 rows, {args.objects * 3 // 10} "
        f"models, the rest jobs), {args.tasks} tasks, experiment `big` with {args.runs} runs and "
        f"{args.events:,} metric events; made in {sum(took.values()):.0f} s",
        f"- median and p95 of {args.repeats} rounds after a warm-up round, pages and REST calls interleaved",
        f"- load average (1, 5, 15 min) before / after: {before} / {after}",
        "",
        "| page | median ms | p95 ms | REST JSON ms | page / REST |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, median, p95, rest, ratio in rows:
        lines.append(
            f"| {label} | {median:.1f} | {p95:.1f} | {'' if rest is None else f'{rest:.1f}'} | "
            f"{'' if ratio is None else f'{ratio:.2f}'} |"
        )
    lines += [
        "",
        f"Target: every page under {TARGET_MS:.0f} ms: slowest {worst[0]} {worst[1]:.1f} ms "
        f"({'met' if met else 'not met'}).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
