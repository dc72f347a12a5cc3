"""Streams benchmark: appends per second, and how long a record takes to reach a window.

On each catalog (a SQLite file; PostgreSQL when ``OMOPS_TEST_POSTGRES`` names a
server, in a database made for the run and dropped after):

* ``appends/s``  ``om.streams.put`` of one record per call, of 100 and of
                 1,000 records per call (one transaction each), in one
                 process; and of one record per call from 4 processes at once
                 (all their records over the slowest one's time).
* ``latency``    a producer process appends one record every 10 ms, each
                 carrying its ``time.time()``; a consumer reads windows with
                 ``getl(group=, size=)``. Per window: from the append of its
                 last record to the window in the consumer's hands (p50, p95),
                 for ``size=1`` and ``size=20``, with the default ``poll=0.1``
                 and with ``poll=0.01``.

Run::

    .venv/bin/python bench/streams.py                 # ~2 minutes
    .venv/bin/python bench/streams.py --markdown      # also print a RESULTS.md section
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import git_commit, loadavg, machine  # noqa: E402

from omops.omega import Omega  # noqa: E402

PRODUCER = """
import sys, time
import omops
count, pause, name = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
omops.streams.put([], name)  # connected, the stream made: what follows is appends only
sys.stdin.readline()
started = time.perf_counter()
for i in range(count):
    omops.streams.put({"i": i, "t": time.time()}, name)
    if pause:
        time.sleep(pause)
print(time.perf_counter() - started)
"""


@contextmanager
def postgres_database(admin: str) -> Iterator[str]:
    import sqlalchemy as sa

    name = f"bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(
        admin.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin.rpartition('/')[0]}/{name}"
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()


def env_of(home: Path, catalog: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}
    env.update(OMOPS_HOME=str(home), OMOPS_CATALOG=catalog, OMOPS_BLOBS=str(home / "blobs"))
    return env


def start(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PRODUCER), *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def appends(om: Omega, env: dict[str, str], records: int) -> dict[str, float]:
    found = {}
    for batch in (1, 100, 1000):
        name = f"append-{batch}"
        om.streams.put([], name)
        rows = [{"i": i, "v": i * 0.5, "tag": "sensor"} for i in range(batch)]
        calls = records if batch == 1 else max(10 * records // batch, 20)
        started = time.perf_counter()
        for _ in range(calls):
            om.streams.put(rows if batch > 1 else rows[0], name)
        found[f"1 process, {batch} per put"] = calls * batch / (time.perf_counter() - started)
    om.streams.put([], "append-4")
    producers = [start(env, str(records), "0", "append-4") for _ in range(4)]
    for proc in producers:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    elapsed = []
    for proc in producers:
        out, err = proc.communicate(timeout=600)
        if proc.returncode:
            raise SystemExit(err)
        elapsed.append(float(out.strip()))
    assert om.streams.metadata("append-4").next_offset == 4 * records
    # started together: all records are in when the slowest producer is done
    found["4 processes, 1 per put"] = 4 * records / max(elapsed)
    return found


def latency(
    om: Omega, env: dict[str, str], *, size: int, poll: float, records: int
) -> tuple[float, float]:
    name = f"latency-{size}-{poll}"
    om.streams.put([], name)
    reader = om.streams.getl(name, group="bench", size=size, timeout=60, poll=poll)
    producer = start(env, str(records), "0.01", name)
    producer.stdin.write("go\n")
    producer.stdin.flush()
    delays, seen = [], 0
    for window in reader:
        delays.append(time.time() - float(window["t"].max()))
        seen += len(window)
        if seen >= records:
            break
    producer.communicate(timeout=120)
    delays = sorted(delays)
    return statistics.median(delays), delays[int(0.95 * (len(delays) - 1))]


def run(catalog_label: str, catalog: str, home: Path, args: argparse.Namespace) -> dict:
    om = Omega(catalog=catalog, blobs=str(home / "blobs"))
    env = env_of(home, catalog)
    print(f"{catalog_label}:", flush=True)
    rates = appends(om, env, args.records)
    for label, rate in rates.items():
        print(f"  appends/s, {label}: {rate:,.0f}", flush=True)
    delays = {}
    for size in (1, 20):
        for poll in (0.1, 0.01):
            delays[(size, poll)] = latency(
                om, env, size=size, poll=poll, records=args.latency_records
            )
            p50, p95 = delays[(size, poll)]
            print(
                f"  latency size={size} poll={poll}: p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms",
                flush=True,
            )
    om.close()
    return {"appends": rates, "latency": delays}


def markdown(args: argparse.Namespace, results: dict[str, dict], load: str) -> str:
    import sqlalchemy

    host = machine()
    lines = [
        f"## streams ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC})",
        "",
        f"`.venv/bin/python bench/streams.py --records {args.records} --latency-records"
        f" {args.latency_records}` (git {git_commit()}, working tree may differ)",
        "",
        f"- machine: {host['cores']} cores, {host['cpu']}, {host['ram']} RAM,"
        f" {platform.system()} {platform.release()}; shared with other sessions' work",
        f"- python {platform.python_version()}, sqlalchemy {sqlalchemy.__version__}; catalogs:"
        f" {', '.join(results)} (PostgreSQL: the dev server on loopback)",
        "- records: small dicts; one put = one transaction; batched puts: 10x the records;"
        " 4 processes: 4 producers released together, connected already; all their records"
        " over the slowest one's time",
        "- latency: a producer process appends a record every 10 ms carrying its time.time();"
        " per window, from that append of its last record to the window in the consumer's"
        " hands (same machine clock)",
        f"- load average (1, 5, 15 min) before / after: {load}",
        "",
        "| catalog | appends/s: 1 per put | 100 per put | 1,000 per put | 4 processes, 1 per put |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, found in results.items():
        rates = list(found["appends"].values())
        lines.append(f"| {label} | " + " | ".join(f"{r:,.0f}" for r in rates) + " |")
    lines += [
        "",
        "| catalog | window | poll (s) | latency p50 (ms) | p95 (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, found in results.items():
        for (size, poll), (p50, p95) in found["latency"].items():
            lines.append(f"| {label} | {size} | {poll} | {p50 * 1000:.1f} | {p95 * 1000:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000, help="records per append bench")
    parser.add_argument("--latency-records", type=int, default=300)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    load = loadavg()
    print(f"load average before: {load}")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="omops-bench-streams-") as root:
        home = Path(root)
        results["SQLite"] = run("SQLite", f"sqlite:///{home / 'catalog.sqlite'}", home, args)
        admin = os.environ.get("OMOPS_TEST_POSTGRES")
        if admin:
            with postgres_database(admin) as url:
                results["PostgreSQL"] = run("PostgreSQL", url, home, args)
    load = f"{load} / {loadavg()}"
    print(f"load average before / after: {load}")
    if args.markdown:
        print()
        print(markdown(args, results, load))
    print(json.dumps({k: {"appends": v["appends"]} for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
