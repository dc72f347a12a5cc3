"""Datasets benchmark: omops put/get/filtered get against raw pyarrow and DuckDB.

Three benches, in one run, each as a ratio against the plain library calls on
the same data with the same (default, snappy) compression:

* ``put``      ``om.datasets.put(df, name, append=False)``
               vs ``pq.write_table(pa.Table.from_pandas(df), path)``
* ``get``      ``om.datasets.get(name)``
               vs ``pq.read_table(path).to_pandas()``
* ``filtered`` ``om.datasets.get(name, a__lt=0.01)`` (1% of the rows)
               vs ``duckdb SELECT * FROM read_parquet(path) WHERE a < 0.01`` to pandas

``df`` is ``--rows`` x 10 float64 (put, get) and ``--filter-rows`` x 10 float64
(filtered). Every timing is the median of ``--repeats`` runs after one
warm-up; omops and the baseline alternate so drift hits both alike. Data
lives in a temporary folder (or ``--data``), removed afterwards.

Run::

    .venv/bin/python bench/datasets.py                       # full (a few minutes)
    .venv/bin/python bench/datasets.py --rows 100000 --filter-rows 1000000 --repeats 3
    .venv/bin/python bench/datasets.py --markdown            # also print a RESULTS.md section
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import git_commit, loadavg, machine  # noqa: E402

import omops  # noqa: E402

COLUMNS = [chr(ord("a") + i) for i in range(10)]
THRESHOLD = 0.01  # a is uniform on [0, 1): a < 0.01 keeps 1% of the rows
TARGETS = {"put": 1.3, "get": 1.3, "filtered get": 1.5}


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.random((rows, len(COLUMNS))), columns=COLUMNS)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process, all its threads) of one call."""
    gc.collect()
    cpu, start = time.process_time(), time.perf_counter()
    result = fn()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    del result
    return elapsed, cpu


def compare(
    label: str, ours: Callable[[], object], base: Callable[[], object], repeats: int
) -> dict[str, object]:
    """Median seconds of ``ours`` and ``base``, alternating, after one warm-up each."""
    ours()
    base()
    a: list[tuple[float, float]] = []
    b: list[tuple[float, float]] = []
    for i in range(repeats):
        pair = ((ours, a), (base, b)) if i % 2 == 0 else ((base, b), (ours, a))
        for fn, out in pair:
            out.append(timed(fn))
    mo, mb = (statistics.median(w for w, _ in x) for x in (a, b))
    co, cb = (statistics.median(c for _, c in x) for x in (a, b))
    print(
        f"  {label:<13} omops {mo:8.4f}s  baseline {mb:8.4f}s  ratio {mo / mb:5.2f}"
        f"  (omops runs {' '.join(f'{w:.3f}' for w, _ in a)};"
        f" baseline runs {' '.join(f'{w:.3f}' for w, _ in b)})",
        flush=True,
    )
    return {
        "bench": label,
        "omops": mo,
        "baseline": mb,
        "ratio": mo / mb,
        "cpu_omops": co,
        "cpu_baseline": cb,
        "target": TARGETS[label],
    }


def bench_put_get(om: omops.Omega, root: Path, rows: int, repeats: int) -> list[dict]:
    df = frame(rows, seed=1)
    path = root / "raw_put.parquet"

    def ours_put():
        return om.datasets.put(df, "bench/put", append=False)

    def base_put():
        pq.write_table(pa.Table.from_pandas(df), path)

    results = [compare("put", ours_put, base_put, repeats)]

    def ours_get():
        return om.datasets.get("bench/put")

    def base_get():
        return pq.read_table(path).to_pandas()

    check = ours_get()
    pd.testing.assert_frame_equal(check, df)
    pd.testing.assert_frame_equal(base_get(), df)
    del check
    results.append(compare("get", ours_get, base_get, repeats))
    return results


def bench_filtered(om: omops.Omega, root: Path, rows: int, repeats: int) -> list[dict]:
    df = frame(rows, seed=2)
    path = root / "raw_filtered.parquet"
    pq.write_table(pa.Table.from_pandas(df), path)
    start = time.perf_counter()
    om.datasets.put(df, "bench/filtered", append=False)
    print(f"  (stored {rows:,} rows in {time.perf_counter() - start:.2f}s)", flush=True)
    expected = df[df["a"] < THRESHOLD]
    del df
    gc.collect()
    con = duckdb.connect()
    sql = "SELECT * FROM read_parquet($path) WHERE a < $threshold"
    params = {"path": str(path), "threshold": THRESHOLD}

    def ours():
        return om.datasets.get("bench/filtered", a__lt=THRESHOLD)

    def base():
        return con.execute(sql, params).df()

    got = ours()
    assert len(got) == len(expected), (len(got), len(expected))
    pd.testing.assert_frame_equal(got.sort_index(), expected)
    raw = base()
    assert len(raw) == len(expected), (len(raw), len(expected))
    print(
        f"  (filter keeps {len(expected):,} of {rows:,} rows, {100 * len(expected) / rows:.2f}%)",
        flush=True,
    )
    del got, raw, expected
    return [compare("filtered get", ours, base, repeats)]


def markdown(args: argparse.Namespace, results: list[dict], load: str) -> str:
    host = machine()
    commit = git_commit()
    lines = [
        f"## datasets ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC})",
        "",
        f"`.venv/bin/python bench/datasets.py --rows {args.rows} --filter-rows {args.filter_rows}"
        f" --repeats {args.repeats}` (git {commit}, working tree may differ)",
        "",
        f"- machine: {host['cores']} cores, {host['cpu']}, {host['ram']} RAM,"
        f" {platform.system()} {platform.release()}",
        f"- python {platform.python_version()}, pandas {pd.__version__}, pyarrow {pa.__version__},"
        f" duckdb {duckdb.__version__}, numpy {np.__version__}",
        f"- data: put/get {args.rows:,} x 10 float64; filtered get {args.filter_rows:,} x 10"
        f" float64, `a < {THRESHOLD}` (1%); parquet snappy; medians of {args.repeats} runs"
        " (wall clock; CPU = process CPU time, all threads)",
        f"- load average (1, 5, 15 min) before and after: {load}",
        "",
        "| bench | omops (s) | baseline (s) | ratio | target | met | omops CPU (s) |"
        " baseline CPU (s) | CPU ratio |",
        "|---|---:|---:|---:|---:|:-:|---:|---:|---:|",
    ]
    for r in results:
        met = "yes" if r["ratio"] <= r["target"] else "**no**"
        lines.append(
            f"| {r['bench']} | {r['omops']:.4f} | {r['baseline']:.4f} |"
            f" {r['ratio']:.2f} | {r['target']:.1f} | {met} | {r['cpu_omops']:.4f} |"
            f" {r['cpu_baseline']:.4f} | {r['cpu_omops'] / r['cpu_baseline']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for put/get")
    parser.add_argument(
        "--filter-rows", type=int, default=10_000_000, help="rows for the filtered get"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per bench")
    parser.add_argument("--data", help="folder for the data (default: a temporary folder)")
    parser.add_argument(
        "--only",
        choices=["put", "get", "filtered"],
        action="append",
        help="run only these benches (put and get run together)",
    )
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    args = parser.parse_args(argv)

    load = loadavg()
    print(f"load average before: {load} (other work on the machine skews the timings)")
    root = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="omops-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        om = omops.Omega(home=root / "home")
        results: list[dict] = []
        only = set(args.only or ["put", "filtered"])
        if only & {"put", "get"}:
            print(f"put/get: {args.rows:,} x 10 float64", flush=True)
            results += bench_put_get(om, root, args.rows, args.repeats)
        if "filtered" in only:
            print(f"filtered get: {args.filter_rows:,} x 10 float64", flush=True)
            results += bench_filtered(om, root, args.filter_rows, args.repeats)
        om.catalog.close()
    finally:
        if not args.data:
            shutil.rmtree(root, ignore_errors=True)

    load = f"{load} / {loadavg()}"
    print(f"load average before / after: {load}")
    print()
    print("medians of wall-clock seconds; CPU = process CPU seconds, all threads")
    print(
        f"{'bench':<14}{'omops s':>10}{'baseline s':>12}{'ratio':>8}{'target':>8}  met"
        f"{'omops CPU':>11}{'base CPU':>10}{'CPU ratio':>11}"
    )
    for r in results:
        met = "yes" if r["ratio"] <= r["target"] else "NO "
        print(
            f"{r['bench']:<14}{r['omops']:>10.4f}{r['baseline']:>12.4f}{r['ratio']:>8.2f}"
            f"{r['target']:>8.1f}  {met}{r['cpu_omops']:>11.4f}{r['cpu_baseline']:>10.4f}"
            f"{r['cpu_omops'] / r['cpu_baseline']:>11.2f}"
        )
    if args.markdown:
        print()
        print(markdown(args, results, load))
    return 0 if all(r["ratio"] <= r["target"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
