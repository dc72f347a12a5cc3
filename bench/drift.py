"""Drift benchmark: drift over --events tracked predictions, omops against plain pandas/SciPy.

Set-up (not timed): a model tracked with a reference of ``--reference-rows``
training inputs (``--numeric`` standard normal columns and one categorical
column of 5 values), and ``--events`` tracked ``predict`` events of one row
each, as a REST client sending one row per request leaves them (the JSON
``log_prediction`` writes), inserted with the catalog's bulk insert. Half the
numeric columns are shifted in the second half of the events, so the
answer is known: those columns drifted, the others did not.

Measured, median of ``--repeats`` runs, in one process, alternating:

* ``omops drift``       ``omops.monitoring.drift(om, model, since=..., alert=False)``: read
                        the window's events from the catalog, extract the inputs in DuckDB,
                        KS/chi-square/PSI in NumPy;
* ``pandas + scipy``    the same answer the usual way: ``exp.data(event='predict', since=...)``
                        (omops' fastest event reader: one JSON decode per event), the
                        input rows pulled out of the decoded dicts into a DataFrame, then
                        ``scipy.stats.ks_2samp``, ``scipy.stats.chi2_contingency`` and a
                        NumPy PSI per feature;
* ``statistics only``   on the same arrays already in memory: omops' ``_stats`` (KS, PSI,
                        chi-square) against SciPy's ``ks_2samp`` + ``chi2_contingency`` and
                        the same NumPy PSI;
* ``omops monitor``     ``omops.monitoring.monitor(om, model, since=..., bucket='1m')``:
                        per-minute counts and latency percentiles plus PSI per feature
                        and hour over the same events.

Both sides must agree: the same drifted features, KS statistics equal, p-values within
0.005. Run::

    .venv/bin/python bench/drift.py                 # 1M events: a few minutes of set-up
    .venv/bin/python bench/drift.py --events 100000 --repeats 3
    .venv/bin/python bench/drift.py --catalog postgresql://...  # a fresh, empty database
    .venv/bin/python bench/drift.py --markdown      # also print a RESULTS.md section
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import git_commit, loadavg, machine, version  # noqa: E402

import omops  # noqa: E402
from omops.catalog.tracking import json_text  # noqa: E402
from omops.monitoring import _stats, drift, monitor  # noqa: E402
from omops.monitoring.drift import BINS  # noqa: E402

MODEL, REFERENCE = "bench/drift", "bench/train_X"
CATEGORIES = np.array(["a", "b", "c", "d", "e"])
#: omops' drift must take at most this many seconds per million events (the issue: "in seconds").
TARGET_S = 10.0


def frame(rows: int, numeric: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {f"x{i}": rng.normal(size=rows) for i in range(numeric)}
    for i in range(numeric // 2):
        data[f"x{i}"] = data[f"x{i}"] + shift
    data["cat"] = CATEGORIES[rng.integers(0, len(CATEGORIES), rows)]
    return pd.DataFrame(data)


def prepare(om: omops.Omega, args: argparse.Namespace) -> float:
    """The tracked model, its reference and ``--events`` predictions; returns when they start."""
    reference = frame(args.reference_rows, args.numeric, seed=0)
    om.datasets.put(reference, REFERENCE, append=False)
    features = [f"x{i}" for i in range(args.numeric)]
    model = LogisticRegression().fit(reference[features], reference["x0"] > 0)
    om.models.put(model, MODEL)
    # the model takes the numeric columns; the categorical one is watched too
    exp = om.runtime.experiment("bench-prod")
    exp.track(MODEL, reference=REFERENCE, features=[*features, "cat"])
    revision = om.models.metadata(MODEL).revision
    half = args.events // 2
    traffic = pd.concat(
        [
            frame(half, args.numeric, seed=1),
            frame(args.events - half, args.numeric, seed=2, shift=args.shift),
        ],
        ignore_index=True,
    )
    columns = list(traffic.columns)
    cells = traffic.to_numpy(dtype=object).tolist()
    latency = np.random.default_rng(3).gamma(2.0, 0.8, args.events).round(3).tolist()
    start = time.time() - 1800
    step = 1700 / args.events  # all within the last half hour, in order
    experiment_id, run = exp.id, exp.run
    rows = []
    for i, row in enumerate(cells):
        value = {
            "model": MODEL,
            "revision": revision,
            "action": "predict",
            "status": "ok",
            "latency_ms": latency[i],
            "input": {"rows": 1, "data": {"index": [0], "columns": columns, "data": [row]}},
            "output": [bool(row[0] > 0)],
        }
        dt_ = start + i * step
        rows.append((experiment_id, run, None, dt_, "predict", MODEL, json_text(value), "n", "u"))
        if len(rows) == 100_000:
            om.catalog.tracking.log(rows)
            rows = []
    om.catalog.tracking.log(rows)
    return start


def usual_way(om: omops.Omega, since: float, reference: pd.DataFrame) -> dict[str, tuple]:
    """Events decoded per row, the inputs gathered in Python, then SciPy: feature -> (stat, p, psi)."""
    exp = om.runtime.experiment("bench-prod")
    events = exp.data(event="predict", key=MODEL, run="all", since=pd.Timestamp(since, unit="s"))
    inputs = [value["input"]["data"] for value in events["value"]]
    columns = inputs[0]["columns"]
    logged = pd.DataFrame([row for item in inputs for row in item["data"]], columns=columns)
    return scipy_statistics(reference, logged)


def numpy_psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(expected / expected.sum(), 1e-4)
    a = np.maximum(actual / actual.sum(), 1e-4)
    return float(((a - e) * np.log(a / e)).sum())


def category_counts(reference: pd.Series, logged: pd.Series) -> np.ndarray:
    """Counts per category, reference then logged, over the categories of both (2 x k)."""
    counts = pd.concat([reference.value_counts(), logged.value_counts()], axis=1).fillna(0)
    return counts.to_numpy("float64").T


def scipy_statistics(reference: pd.DataFrame, logged: pd.DataFrame) -> dict[str, tuple]:
    found = {}
    for name in reference.columns:
        if name == "cat":
            table = category_counts(reference[name], logged[name])
            result = scipy_stats.chi2_contingency(table, correction=False)
            found[name] = (result.statistic, result.pvalue, numpy_psi(table[0], table[1]))
            continue
        ref = reference[name].to_numpy("float64")
        cur = logged[name].to_numpy("float64")
        result = scipy_stats.ks_2samp(ref, cur)
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, BINS + 1)[1:-1]))
        psi = numpy_psi(
            np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1),
            np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1),
        )
        found[name] = (result.statistic, result.pvalue, psi)
    return found


def omops_statistics(reference: pd.DataFrame, logged: pd.DataFrame) -> dict[str, tuple]:
    found = {}
    for name in reference.columns:
        if name == "cat":
            e, a = category_counts(reference[name], logged[name])
            stat, p = _stats.chi2_homogeneity(e, a)
            found[name] = (stat, p, float(_stats.psi(e, a)))
            continue
        ref = np.sort(reference[name].to_numpy("float64"))
        cur = logged[name].to_numpy("float64")
        stat, p = _stats.ks_2samp(ref, cur)
        edges = _stats.quantile_edges(ref, BINS)
        psi = float(_stats.psi(_stats.bin_counts(ref, edges), _stats.bin_counts(cur, edges)))
        found[name] = (stat, p, psi)
    return found


def timed(call, cpu: list[float] | None = None):
    """Wall seconds of ``call()`` and its value; its process CPU seconds appended to ``cpu``."""
    began, began_cpu = time.perf_counter(), time.process_time()
    value = call()
    if cpu is not None:
        cpu.append(time.process_time() - began_cpu)
    return time.perf_counter() - began, value


def agree(report, usual: dict[str, tuple]) -> None:
    """omops' report and the usual way's numbers are the same answer."""
    for feature in report.features:
        stat, p, psi = usual[feature.name]
        assert abs(feature.statistic - stat) <= 1e-9 * max(1.0, stat), (feature, stat)
        assert abs(feature.p_value - p) <= 0.005, (feature, p)
        assert abs(feature.psi - psi) <= 1e-9 * max(1.0, psi), (feature, psi)


def run(args: argparse.Namespace) -> dict:
    home = Path(tempfile.mkdtemp(prefix="omops-bench-drift-"))
    om = (
        omops.Omega(catalog=args.catalog, home=str(home))
        if args.catalog
        else omops.Omega(home=str(home))
    )
    began = time.perf_counter()
    since = prepare(om, args) - 1
    setup = time.perf_counter() - began
    reference = om.datasets.get(REFERENCE)
    window = pd.Timestamp(since, unit="s", tz="UTC").isoformat()
    results: dict[str, list[float]] = {
        "omops": [],
        "usual": [],
        "stats_omops": [],
        "stats_scipy": [],
        "monitor": [],
        "omops_cpu": [],
        "usual_cpu": [],
    }
    report = None
    for _ in range(args.repeats):
        seconds, report = timed(
            lambda: drift(om, MODEL, since=window, alert=False), results["omops_cpu"]
        )
        results["omops"].append(seconds)
        seconds, usual = timed(lambda: usual_way(om, since, reference), results["usual_cpu"])
        results["usual"].append(seconds)
        agree(report, usual)
        seconds, found = timed(lambda: monitor(om, MODEL, since="35m", bucket="1m"))
        results["monitor"].append(seconds)
    assert report is not None and report.rows == args.events, report
    shifted = [f"x{i}" for i in range(args.numeric // 2)]
    assert report.drifted_features == shifted, report.drifted_features
    assert found.predictions == args.events
    # statistics alone, on the same arrays
    logged = pd.concat(
        [
            frame(args.events // 2, args.numeric, 1),
            frame(args.events - args.events // 2, args.numeric, 2, args.shift),
        ],
        ignore_index=True,
    )
    for _ in range(args.repeats):
        seconds, mine = timed(lambda: omops_statistics(reference, logged))
        results["stats_omops"].append(seconds)
        seconds, theirs = timed(lambda: scipy_statistics(reference, logged))
        results["stats_scipy"].append(seconds)
        for name, (stat, p, _psi) in mine.items():
            assert (
                abs(stat - theirs[name][0]) <= 1e-9 * max(1.0, stat)
                and abs(p - theirs[name][1]) <= 0.005
            )
    om.close()
    medians = {k: statistics.median(v) for k, v in results.items()}
    return {"setup": setup, "medians": medians, "runs": results, "report": report}


def markdown(args: argparse.Namespace, res: dict, load: str) -> str:
    m = res["medians"]
    info = machine()
    lines = [
        f"## drift ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`.venv/bin/python bench/drift.py --events {args.events} --reference-rows {args.reference_rows} "
        f"--numeric {args.numeric} --repeats {args.repeats}` (git {git_commit()}, working tree may differ)",
        "",
        f"- machine: {info['cores']} cores, {info['cpu']}, {info['ram']} RAM, {platform.system()} {platform.release()}",
        f"- python {platform.python_version()}, duckdb {version('duckdb')}, numpy {version('numpy')}, "
        f"pandas {version('pandas')}, pyarrow {version('pyarrow')}, scipy {version('scipy')} (the baseline only)",
        f"- catalog: {'SQLite under a temporary OMOPS_HOME' if not args.catalog else 'PostgreSQL'}; "
        f"{args.events:,} tracked predictions of 1 row x {args.numeric + 1} features "
        f"({args.numeric} numeric, 1 categorical of 5 values), reference {args.reference_rows:,} rows; "
        f"the second half of the traffic has the first {args.numeric // 2} columns shifted by {args.shift}",
        f"- median of {args.repeats} runs; set-up (not timed) {res['setup']:.1f} s; load average before / after: {load}",
        "",
        "| measure | omops (s) | baseline (s) | baseline / omops |",
        "|---|---:|---:|---:|",
        f"| drift of {args.events:,} predictions, end to end | {m['omops']:.2f} | {m['usual']:.2f} | {m['usual'] / m['omops']:.1f}x |",
        f"| drift end to end, process CPU seconds (all threads) | {m['omops_cpu']:.2f} | {m['usual_cpu']:.2f} | {m['usual_cpu'] / m['omops_cpu']:.1f}x |",
        f"| statistics only, same arrays in memory | {m['stats_omops']:.2f} | {m['stats_scipy']:.2f} | {m['stats_scipy'] / m['stats_omops']:.1f}x |",
        f"| monitor: per-minute series and hourly PSI per feature | {m['monitor']:.2f} | - | - |",
        "",
        f"Target (at 1M events): drift over 1M predictions in seconds (<= {TARGET_S:g} s): "
        f"{m['omops'] * 1_000_000 / args.events:.2f} s per million ({'met' if m['omops'] * 1_000_000 / args.events <= TARGET_S else '**not met**'}).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--numeric", type=int, default=4)
    parser.add_argument("--shift", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--catalog", help="catalog URL (default: SQLite in a temporary home)")
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    args = parser.parse_args(argv)
    before = loadavg()
    res = run(args)
    load = f"{before} / {loadavg()}"
    m = res["medians"]
    print(f"set-up {res['setup']:.1f} s for {args.events:,} events")
    for key, label in (
        ("omops", "omops drift"),
        ("usual", "pandas + scipy"),
        ("stats_omops", "statistics, omops"),
        ("stats_scipy", "statistics, scipy"),
        ("monitor", "omops monitor"),
        ("omops_cpu", "omops drift, CPU"),
        ("usual_cpu", "pandas + scipy, CPU"),
    ):
        print(
            f"{label:>20}: {m[key]:.3f} s (runs {', '.join(f'{v:.2f}' for v in res['runs'][key])})"
        )
    print(f"end to end: pandas + scipy / omops = {m['usual'] / m['omops']:.1f}x")
    print(f"statistics: scipy / omops = {m['stats_scipy'] / m['stats_omops']:.1f}x")
    print(f"drift report: {res['report']!r}")
    if args.markdown:
        print()
        print(markdown(args, res, load))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
