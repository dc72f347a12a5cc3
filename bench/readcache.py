"""Read cache benchmark: does keeping small tables in memory still pay?

The read cache keeps the Arrow table of small reads (immutable) and builds a
new pandas object per read, so that nothing a reader changes reaches the next
one. Building the frame is the part of a read the cache cannot save; this
bench measures what it does save, per read of a small dataset:

* ``cached``    ``om.datasets.get(name)`` with the cache on (the default, 64 MiB)
* ``uncached``  the same with the cache off (``OMOPS_READ_CACHE_MB=0``)
* ``arrow``     ``table.to_pandas()`` of the kept table: the floor of a cached read
* ``copy``      ``frame.copy(deep=True)``: what a hit cost when the cache kept
                frames (it shared dicts and lists inside cells between readers)

Frames: ``--rows`` rows x 10 float64 columns, and the same with a struct and
a list column (nested values, the case that leaked through deep copies).
Medians of ``--repeats`` runs of ``--calls`` reads each, after a warm-up;
cached and uncached alternate so drift hits both alike.

Run::

    .venv/bin/python bench/readcache.py
    .venv/bin/python bench/readcache.py --markdown     # also print a RESULTS.md section
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import git_commit, loadavg, machine  # noqa: E402

from omops._context import Context  # noqa: E402
from omops.omega import Omega  # noqa: E402
from omops.readcache import ReadCache  # noqa: E402


def frames(rows: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(1)
    flat = pd.DataFrame(rng.random((rows, 10)), columns=[f"c{i}" for i in range(10)])
    nested = flat.iloc[:, :4].copy()
    nested["meta"] = [{"a": i, "tags": ["x", "y"][: i % 3]} for i in range(rows)]
    nested["values"] = [list(rng.random(3)) for _ in range(rows)]
    return {"flat": flat, "nested": nested}


def per_call_us(read: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        read()
    return (time.perf_counter() - started) / calls * 1e6


def run(rows_list: list[int], calls: int, repeats: int) -> list[dict[str, object]]:
    results = []
    with tempfile.TemporaryDirectory() as folder:
        cached = Omega(home=folder)
        # What OMOPS_READ_CACHE_MB=0 gives: a cache that keeps nothing.
        uncached = Omega(home=folder, context=Context(reads=ReadCache(max_bytes=0)))
        for rows in rows_list:
            for kind, frame in frames(rows).items():
                name = f"bench/{kind}/{rows}"
                cached.datasets.put(frame, name, append=False)
                size = cached.datasets.metadata(name).size
                table = pa.Table.from_pandas(frame)
                read = cached.datasets.get(name)
                ways = {
                    "cached": lambda name=name: cached.datasets.get(name),
                    "uncached": lambda name=name: uncached.datasets.get(name),
                    "arrow": lambda table=table: table.to_pandas(),
                    "copy": lambda read=read: read.copy(deep=True),
                }
                for read in ways.values():
                    read()  # warm-up: caches, imports, the kept table
                times: dict[str, list[float]] = {way: [] for way in ways}
                for _ in range(repeats):
                    for way, read in ways.items():
                        times[way].append(per_call_us(read, calls))
                row = {way: statistics.median(t) for way, t in times.items()}
                row.update(kind=kind, rows=rows, blob=size, kept=len(cached.context.reads) > 0)
                results.append(row)
        cached.close()
        uncached.close()
    return results


def markdown(results: list[dict[str, object]], args: argparse.Namespace) -> str:
    info = machine()
    lines = [
        f"## readcache ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`.venv/bin/python bench/readcache.py --rows {' '.join(map(str, args.rows))} "
        f"--calls {args.calls} --repeats {args.repeats}` (git {git_commit()}, working tree "
        "may differ)",
        "",
        f"- machine: {info['cores']} cores, {info['cpu']}, {info['ram']} RAM, "
        f"{platform.system()} {platform.release()}; load average {loadavg()}",
        f"- python {platform.python_version()}, pandas {pd.__version__}, "
        f"pyarrow {pa.__version__}; SQLite catalog, local blobs",
        "- µs per `om.datasets.get(name)`, median of the repeats; `arrow` is "
        "`table.to_pandas()` alone (what a cached read cannot save)",
        "",
        "| frame | rows | blob bytes | cached µs | uncached µs | uncached / cached | "
        "to_pandas µs | deep copy µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['kind']} | {r['rows']:,} | {r['blob']:,} | {r['cached']:.0f} | "
            f"{r['uncached']:.0f} | {r['uncached'] / r['cached']:.2f}x | {r['arrow']:.0f} | "
            f"{r['copy']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10, 1_000, 10_000])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    results = run(args.rows, args.calls, args.repeats)
    print(
        f"{'frame':<8}{'rows':>8}{'cached µs':>12}{'uncached µs':>13}{'ratio':>8}{'to_pandas':>11}"
    )
    for r in results:
        print(
            f"{r['kind']:<8}{r['rows']:>8}{r['cached']:>12.0f}{r['uncached']:>13.0f}"
            f"{r['uncached'] / r['cached']:>8.2f}{r['arrow']:>11.0f}"
        )
    if args.markdown:
        print()
        print(markdown(results, args))


if __name__ == "__main__":
    main()
