"""Lazy frames benchmark: omops vs DuckDB on the same Parquet vs pandas in memory.

Two operations on ``--rows`` rows (20,000,000 by default) of sales
(``customer`` int64 with rows/20 distinct values, ``region`` text of 3 values,
``amount`` float64, ``qty`` int64), stored once with omops as Parquet parts of
2,000,000 rows:

* ``groupby``    the issue's form: rows of region 'eu', grouped by customer,
                 ``total=('amount', 'sum')``, ``n=('qty', 'count')``, as a
                 pandas DataFrame indexed by customer.
                 omops: ``om.datasets.getl(name).query(region='eu').groupby(
                 'customer').agg(...).value``; DuckDB: the same SQL on
                 ``read_parquet([the parts' files])``, ``.df()`` indexed by
                 customer; pandas: ``pd.read_parquet`` of the files, then the
                 same ``groupby().agg()``.
* ``transform``  a pandas function adding two columns, applied to every row and
                 stored as Parquet. omops: ``mdf.transform(fn, chunksize=1_000_000)
                 .persist(name)``; DuckDB: its streamed result in batches of
                 1,000,000 rows, ``fn`` on each, written with a
                 ``pq.ParquetWriter`` (what one writes by hand with DuckDB);
                 pandas: read all, ``fn`` once, ``to_parquet``. For reference,
                 DuckDB's SQL-only equivalent (``COPY (SELECT *, ...) TO``), which
                 needs no pandas function at all, is timed too.

Each run is a fresh process (``--run``), so its peak resident memory
(``VmHWM``) is its own; engines alternate, medians of ``--repeats`` runs.
Targets: omops within 1.3x DuckDB's time; omops' peak RSS below half of pandas'.

Run::

    .venv/bin/python bench/lazy.py                      # 20M rows (~15 min on 2 cores)
    .venv/bin/python bench/lazy.py --rows 2000000 --repeats 1
    .venv/bin/python bench/lazy.py --markdown           # also print a RESULTS.md section
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import git_commit, loadavg, machine  # noqa: E402

ENGINES = ("omops", "duckdb", "pandas")
OPERATIONS = ("groupby", "transform")
CHUNK = 1_000_000
PART = 2_000_000
TIME_TARGET, MEMORY_TARGET = 1.3, 0.5
SQL_GROUPBY = (
    "SELECT customer, sum(amount) AS total, count(qty) AS n FROM read_parquet($files) "
    "WHERE region = 'eu' GROUP BY customer ORDER BY customer"
)
SQL_TRANSFORM = (
    "COPY (SELECT *, round(amount * 0.92, 2) AS amount_eur, qty > 2 AS bulk "
    "FROM read_parquet($files)) TO '{out}' (FORMAT parquet)"
)


def add_columns(df):  # noqa: ANN001, ANN201 - the pandas function every engine applies
    df["amount_eur"] = (df["amount"] * 0.92).round(2)
    df["bulk"] = df["qty"] > 2
    return df


def chunks(rows: int):  # noqa: ANN201
    import numpy as np
    import pandas as pd

    for start in range(0, rows, PART):
        n = min(PART, rows - start)
        rng = np.random.default_rng(start)
        i = np.arange(start, start + n)
        yield pd.DataFrame(
            {
                "customer": rng.integers(0, max(rows // 20, 1), n),
                "region": np.array(["eu", "us", "apac"])[i % 3],
                "amount": rng.integers(0, 100_000, n) / 100,
                "qty": rng.integers(1, 5, n),
            },
            index=pd.RangeIndex(start, start + n),
        )


def prepare(home: Path, rows: int) -> list[str]:
    """Store the dataset once; the Parquet files of its parts."""
    import omops
    from omops.plugins.pandas import FrameChunks

    om = omops.Omega(home=home)
    started = time.perf_counter()
    om.datasets.put(FrameChunks(lambda: chunks(rows)), "sales", append=False)
    print(f"stored {rows:,} rows in {time.perf_counter() - started:.1f}s", flush=True)
    revision = om.catalog.lookup(om.bucket, "datasets", "sales")
    files = [om.blobs.url_of(p.blob) for p in om.catalog.parts(revision)]
    om.close()
    return files


# -- one run, in its own process ---------------------------------------------------


def run_groupby(engine: str, home: Path, files: list[str]) -> dict:
    import duckdb
    import pandas as pd

    if engine == "omops":
        import omops

        om = omops.Omega(home=home)
        mdf = om.datasets.getl("sales")
        out = (
            mdf.query(region="eu")
            .groupby("customer")
            .agg(total=("amount", "sum"), n=("qty", "count"))
        )
        result = out.value
    elif engine == "duckdb":
        result = duckdb.connect().sql(SQL_GROUPBY, params={"files": files}).df()
        result = result.set_index("customer")
    else:
        frame = pd.read_parquet(files)
        result = (
            frame[frame["region"] == "eu"]
            .groupby("customer")
            .agg(total=("amount", "sum"), n=("qty", "count"))
        )
    return {"groups": len(result), "total": round(float(result["total"].sum()), 2)}


def run_transform(engine: str, home: Path, files: list[str], out: Path) -> dict:
    import duckdb
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if engine == "omops":
        import omops

        om = omops.Omega(home=home)
        meta = om.datasets.getl("sales").transform(add_columns, chunksize=CHUNK).persist("out")
        return {"rows": meta.rows}
    if engine == "duckdb-sql":
        duckdb.connect().execute(SQL_TRANSFORM.format(out=out), {"files": files})
        return {"rows": pq.ParquetFile(out).metadata.num_rows}
    if engine == "duckdb":
        reader = duckdb.connect().sql("SELECT * FROM read_parquet($files)", params={"files": files})
        writer, rows = None, 0
        for batch in reader.to_arrow_reader(CHUNK):
            table = pa.Table.from_pandas(add_columns(batch.to_pandas()), preserve_index=False)
            writer = writer or pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
            rows += table.num_rows
        writer.close()
        return {"rows": rows}
    frame = add_columns(pd.read_parquet(files))
    frame.to_parquet(out)
    return {"rows": len(frame)}


def peak_rss() -> int:
    """This process's peak resident memory (VmHWM; ru_maxrss would keep the parent's
    peak across the exec)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))


def child(args: argparse.Namespace) -> int:
    engine, operation = args.run
    home = Path(args.home)
    files = json.loads((home / "files.json").read_text())
    # Libraries are loaded before the clock starts: a program imports them once.
    import duckdb  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import omops.omega  # noqa: F401

    started = time.perf_counter()
    if operation == "groupby":
        found = run_groupby(engine, home, files)
    else:
        found = run_transform(engine, home, files, home / f"out-{engine}.parquet")
    found["seconds"] = time.perf_counter() - started
    found["peak_rss"] = peak_rss()
    print(json.dumps(found))
    return 0


# -- the bench -----------------------------------------------------------------------


def measure(home: Path, engine: str, operation: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}
    env["OMOPS_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, __file__, "--run", engine, operation, "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{engine} {operation} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench(home: Path, repeats: int, operations: list[str]) -> dict[tuple[str, str], list[dict]]:
    runs: dict[tuple[str, str], list[dict]] = {}
    for operation in operations:
        engines = [*ENGINES, "duckdb-sql"] if operation == "transform" else list(ENGINES)
        for i in range(repeats):
            order = engines if i % 2 == 0 else engines[::-1]
            for engine in order:
                found = measure(home, engine, operation)
                runs.setdefault((engine, operation), []).append(found)
                print(
                    f"  {operation:<9} {engine:<10} {found['seconds']:7.2f}s"
                    f"  peak RSS {found['peak_rss'] / 2**20:7.0f} MiB  {found}",
                    flush=True,
                )
                (home / f"out-{engine}.parquet").unlink(missing_ok=True)
        checks = {
            json.dumps({k: v for k, v in r.items() if k not in ("seconds", "peak_rss")})
            for (e, o), rs in runs.items()
            if o == operation
            for r in rs
        }
        if len(checks) != 1:
            raise SystemExit(f"{operation}: the engines disagree: {sorted(checks)}")
    return runs


def summary(runs: dict[tuple[str, str], list[dict]], operations: list[str]) -> list[dict]:
    rows = []
    for operation in operations:
        med = {
            engine: (
                statistics.median(r["seconds"] for r in found),
                statistics.median(r["peak_rss"] for r in found),
            )
            for (engine, op), found in runs.items()
            if op == operation
        }
        omops_s, omops_rss = med["omops"]
        rows.append(
            {
                "operation": operation,
                "medians": med,
                "time_ratio": omops_s / med["duckdb"][0],
                "memory_ratio": omops_rss / med["pandas"][1],
            }
        )
    return rows


def markdown(args: argparse.Namespace, results: list[dict], load: str, repeats: int) -> str:
    import duckdb
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    host = machine()
    lines = [
        f"## lazy ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC})",
        "",
        f"`.venv/bin/python bench/lazy.py --rows {args.rows} --repeats {repeats}"
        + "".join(f" --only {o}" for o in args.only or ())
        + "` "
        f"(git {git_commit()}, working tree may differ)",
        "",
        f"- machine: {host['cores']} cores, {host['cpu']}, {host['ram']} RAM,"
        f" {platform.system()} {platform.release()}; shared with other sessions' work",
        f"- python {platform.python_version()}, pandas {pd.__version__}, pyarrow {pa.__version__},"
        f" duckdb {duckdb.__version__}, numpy {np.__version__}",
        f"- data: {args.rows:,} rows (customer int64, region text, amount float64, qty int64)"
        f" in Parquet parts of {PART:,} rows, stored by omops; every engine reads those files",
        "- each run a fresh process; peak RSS = its VmHWM; medians; default settings"
        " (no OMOPS_MEMORY_LIMIT)",
        f"- load average (1, 5, 15 min) before / after: {load}",
        "",
        "| operation | engine | seconds | peak RSS (MiB) |",
        "|---|---|---:|---:|",
    ]
    for r in results:
        for engine, (seconds, rss) in r["medians"].items():
            lines.append(f"| {r['operation']} | {engine} | {seconds:.2f} | {rss / 2**20:.0f} |")
    lines.append("")
    for r in results:
        time_met = "met" if r["time_ratio"] <= TIME_TARGET else "**not met**"
        memory_met = "met" if r["memory_ratio"] < MEMORY_TARGET else "**not met**"
        lines.append(
            f"- {r['operation']}: omops / DuckDB time {r['time_ratio']:.2f} (target <="
            f" {TIME_TARGET}: {time_met}); omops / pandas peak RSS {r['memory_ratio']:.2f}"
            f" (target < {MEMORY_TARGET}: {memory_met})"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", help="folder for the data (default: a temporary folder)")
    parser.add_argument("--only", choices=OPERATIONS, action="append", help="run only these")
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    parser.add_argument("--run", nargs=2, metavar=("ENGINE", "OPERATION"), help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        return child(args)

    load = loadavg()
    print(f"load average before: {load} (other work on the machine skews the timings)")
    root = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="omops-bench-lazy-"))
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    try:
        (home / "files.json").write_text(json.dumps(prepare(home, args.rows)))
        operations = args.only or list(OPERATIONS)
        results = summary(bench(home, args.repeats, operations), operations)
    finally:
        if not args.data:
            shutil.rmtree(root, ignore_errors=True)
    load = f"{load} / {loadavg()}"
    print(f"load average before / after: {load}")
    for r in results:
        print(
            f"{r['operation']}: "
            + ", ".join(f"{e} {s:.2f}s {m / 2**20:.0f} MiB" for e, (s, m) in r["medians"].items())
            + f"; omops/duckdb time {r['time_ratio']:.2f}, omops/pandas RSS {r['memory_ratio']:.2f}"
        )
    if args.markdown:
        print()
        print(markdown(args, results, load, args.repeats))
    met = all(r["time_ratio"] <= TIME_TARGET and r["memory_ratio"] < MEMORY_TARGET for r in results)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
