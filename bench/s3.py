"""Blob store benchmark: dataset put/get on S3 (moto on loopback) vs a local folder.

The same omops calls against two Omegas that differ only in ``blobs``: a
folder, and ``s3://<bucket>/bench`` on an S3 server on loopback (moto's
server mode, started here on a free port unless ``--endpoint`` names one).
Each timing is the median of ``--repeats`` runs after one warm-up, local and
S3 alternating so that drift hits both alike:

* ``put``       ``om.datasets.put(df, name, append=False)`` (--rows x 10 float64)
* ``get``       ``om.datasets.get(name)``
* ``filtered``  ``om.datasets.get(name, a__lt=0.01)`` (DuckDB reading the part)

moto keeps objects in memory in one Python process, so the S3 numbers are the
protocol's cost (HTTP, signing, multipart, the copy from tmp/ to objects/)
plus moto's, not a real object store's network. Run::

    .venv/bin/python bench/s3.py --rows 1000000 --repeats 5 --markdown
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd
from _common import git_commit, loadavg, machine, version  # noqa: E402

from omops.omega import Omega


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _moto(root: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    binary = Path(sys.executable).parent / "moto_server"
    log = (root / "moto.log").open("wb")
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"http://127.0.0.1:{port}"
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"moto did not start: {(root / 'moto.log').read_text()[-2000:]}")


def _median(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        run()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--endpoint", help="an S3 endpoint to use instead of starting moto")
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    args = parser.parse_args(argv)

    load = loadavg()
    root = Path(tempfile.mkdtemp(prefix="omops-bench-s3-"))
    moto = None
    try:
        endpoint = args.endpoint
        if endpoint is None:
            moto, endpoint = _moto(root)
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "bench"),
            AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "bench"),
            AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        )
        bucket = f"omops-bench-{uuid.uuid4().hex[:8]}"
        import s3fs

        s3fs.S3FileSystem().mkdir(bucket)
        stores = {
            "local": Omega(catalog=f"sqlite:///{root / 'l.sqlite'}", blobs=str(root / "blobs")),
            "s3": Omega(catalog=f"sqlite:///{root / 's.sqlite'}", blobs=f"s3://{bucket}/bench"),
        }
        rng = np.random.default_rng(0)
        df = pd.DataFrame(rng.random((args.rows, 10)), columns=[f"c{i}" for i in range(10)])
        df = df.rename(columns={"c0": "a"})
        results: dict[str, dict[str, float]] = {}
        for phase, call in (
            ("put", lambda om: om.datasets.put(df, "d", append=False)),
            ("get", lambda om: om.datasets.get("d")),
            ("filtered", lambda om: om.datasets.get("d", a__lt=0.01)),
        ):
            for om in stores.values():  # something to read for get/filtered
                om.datasets.put(df, "d", append=False)
            results[phase] = {}
            for _ in range(2):  # alternate: two rounds, median over both
                for name, om in stores.items():
                    t = _median(lambda om=om, call=call: call(om), max(args.repeats // 2, 1))
                    results[phase].setdefault(name, []).append(t)  # type: ignore[arg-type]
            results[phase] = {k: statistics.median(v) for k, v in results[phase].items()}  # type: ignore[arg-type]
            local, s3 = results[phase]["local"], results[phase]["s3"]
            print(f"{phase:9s} local {local * 1000:8.1f} ms   s3 {s3 * 1000:8.1f} ms   "
                  f"s3/local {s3 / local:5.2f}x", flush=True)  # fmt: skip
        size = stores["local"].datasets.metadata("d").size
        for om in stores.values():
            om.close()
        if args.markdown:
            host = machine()
            print()
            print(
                f"## blobs: S3 (moto) vs local folder ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC})"
            )
            print()
            print(f"`.venv/bin/python bench/s3.py --rows {args.rows} --repeats {args.repeats}` "
                  f"(git {git_commit()}, working tree may differ)")  # fmt: skip
            print()
            print(f"- machine: {host['cores']} cores, {host['cpu']}, {host['ram']} RAM, "
                  f"{platform.system()} {platform.release()}")  # fmt: skip
            print(f"- s3fs {version('s3fs')}, moto {version('moto')} (server mode, in memory, "
                  f"loopback), pyarrow {version('pyarrow')}; one Parquet part of "
                  f"{size / 2**20:.1f} MiB ({args.rows} x 10 float64)")  # fmt: skip
            print(f"- load average (1, 5, 15 min) before / after: {load} / {loadavg()}")
            print()
            print("| call | local folder ms | S3 (moto) ms | S3 / local |")
            print("|---|---:|---:|---:|")
            for phase, got in results.items():
                print(f"| {phase} | {got['local'] * 1000:.1f} | {got['s3'] * 1000:.1f} | "
                      f"{got['s3'] / got['local']:.2f}x |")  # fmt: skip
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
