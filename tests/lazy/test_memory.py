"""Lazy frames on a dataset several times larger than the memory they are given.

A child process gets ``OMOPS_MEMORY_LIMIT=64MB`` (DuckDB's limit: what it does
not hold spills to ``OMOPS_SPILL``), and its address space is capped
(``RLIMIT_AS``) at what it has mapped after warming up plus half the data, and runs a groupby with a group per
fourth row and a transform persisted as a new dataset, on a dataset that
takes about 920 MiB as pandas frames. Its peak resident memory (``VmHWM``) above
what it held before the work must stay under half of the data (measured:
about 280 MiB for 920 MiB of data, the same for more rows): the rows pass
through, they are never all in memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from omops.omega import Omega
from omops.plugins.pandas import FrameChunks

ROWS = 8_000_000
CHUNK = 500_000
LIMIT_MB = 64

CHILD = """
import json, os
import omops

def status(key):
    with open("/proc/self/status") as lines:
        return next(int(l.split()[1]) * 1024 for l in lines if l.startswith(key))

om = omops.Omega()
mdf = om.datasets.getl("big")
len(mdf.query(customer=0))  # DuckDB and the Parquet reader loaded: what the work adds is ours
with om.datasets.lazy.cursor(stream=True) as cursor:
    limit = cursor.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
before = status("VmRSS")
# The process's address space is capped at what it maps now plus less than half the
# data: an allocation past it fails (MemoryError, or DuckDB's out-of-memory error).
import resource
resource.setrlimit(
    resource.RLIMIT_AS,
    (status("VmSize") + int(os.environ["HEADROOM"]), resource.RLIM_INFINITY),
)

groups = mdf.groupby("customer").agg(total=("amount", "sum"), n=("amount", "count")).value

def add(df):
    df["cents"] = (df["amount"] * 100).round().astype("int64")
    df["prefix"] = df["note"].str.slice(0, 5)

meta = mdf.transform(add, chunksize=100_000).persist("out")
out = om.datasets.getl("out")
check = out.groupby("region").agg(cents=("cents", "sum"), n=("prefix", "count")).value
spilled = os.listdir(om.settings.spill)
om.close()
print(json.dumps({
    "limit": limit,
    "before": before,
    "peak": status("VmHWM"),
    "groups": len(groups),
    "rows": int(groups["n"].sum()),
    "total": float(groups["total"].sum()),
    "persisted": meta.rows,
    "parts": len(om.catalog.parts(om.catalog.lookup("default", "datasets", "out"))),
    "cents": check["cents"].to_dict(),
    "counted": int(check["n"].sum()),
    "spill_folders": len(spilled),
    "spill_folders_after_close": len(os.listdir(om.settings.spill)),
}))
"""


def chunks(sizes: list[int], totals: dict[str, float]):
    """The dataset, made a chunk at a time; ``sizes`` gets each chunk's bytes in pandas."""
    for start in range(0, ROWS, CHUNK):
        i = np.arange(start, start + CHUNK)
        rng = np.random.default_rng(start)
        frame = pd.DataFrame(
            {
                "customer": (i * 7919) % (ROWS // 4),
                "amount": rng.integers(0, 100_000, CHUNK) / 100,
                "region": np.array(["eu", "us", "apac"])[i % 3],
                "note": pd.Series(i).map("order {:012d} shipped to customer".format).array,
                # measures of few distinct values: wide in memory, small on disk
                **{f"m{k}": rng.integers(0, 64, CHUNK) / 4 for k in range(6)},
            },
            index=pd.RangeIndex(start, start + CHUNK),
        )
        sizes.append(int(frame.memory_usage(deep=True).sum()))
        totals["amount"] = totals.get("amount", 0.0) + float(frame["amount"].sum())
        for region, cents in (
            (frame["amount"] * 100).round().groupby(frame["region"]).sum()
        ).items():
            totals[region] = totals.get(region, 0) + int(cents)
        yield frame


@pytest.mark.slow
def test_groupby_and_transform_persist_larger_than_the_memory_limit(tmp_path):
    om = Omega(home=tmp_path)
    sizes: list[int] = []
    totals: dict[str, float] = {}
    assert om.datasets.put(FrameChunks(lambda: chunks(sizes, totals)), "big").rows == ROWS
    om.close()
    data = sum(sizes)
    assert data > 8 * LIMIT_MB * 2**20, data  # the frame is many times the limit

    env = {k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}
    env.update(OMOPS_HOME=str(tmp_path), OMOPS_MEMORY_LIMIT=f"{LIMIT_MB}MB")
    env["HEADROOM"] = str(data // 2)  # the child's address space: what it maps + this
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["limit"] == "61.0 MiB"  # 64 MB as DuckDB counts
    assert (found["groups"], found["rows"]) == (ROWS // 4, ROWS)
    assert found["total"] == pytest.approx(totals["amount"])
    assert found["persisted"] == ROWS and found["parts"] == ROWS // 100_000
    assert found["cents"] == {r: totals[r] for r in ("apac", "eu", "us")}
    assert found["counted"] == ROWS
    grown = found["peak"] - found["before"]
    print(f"data {data / 2**20:.0f} MiB, peak RSS grew {grown / 2**20:.0f} MiB")
    assert grown < data / 2, (grown / 2**20, data / 2**20)
    # one folder per DuckDB database of this Omega (whole and streamed reads), gone at close
    assert (found["spill_folders"], found["spill_folders_after_close"]) == (2, 0)
