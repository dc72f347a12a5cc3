"""Catalog hot-path benchmark: the fast path against SQLAlchemy's public execution, in one run.

``Catalog.lookup`` (which revision is ``name@tag`` now: every REST
prediction and every read asks) and ``Catalog.parts`` (a revision's blobs:
every dataset read asks) run their SELECTs through
``omops/catalog/_fastpath.py``: compiled once per engine, run on a pooled
DB-API cursor. The alternative is ``Connection.execute`` on the same
statements (``fetch_public``, what the fast path is tested against). Both
read the same rows of the same catalog in alternating blocks; the median
µs per call is reported, per backend, with the ratio public / fast.

Run::

    .venv/bin/python bench/catalog.py                       # SQLite only
    .venv/bin/python bench/catalog.py --postgres postgresql://user@host/db
    .venv/bin/python bench/catalog.py --markdown            # also a RESULTS.md section

With ``--postgres`` (default: ``$OMOPS_TEST_POSTGRES``) a temporary database
is created on that server and dropped at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import git_commit, loadavg, machine, version  # noqa: E402

from omops.catalog import Catalog, NewRevision, PartRecord, RevisionRecord  # noqa: E402
from omops.catalog._fastpath import fetch_public  # noqa: E402
from omops.catalog._statements import LOOKUP, PARTS, REVISION_EXISTS  # noqa: E402

OBJECTS = 200


def fill(catalog: Catalog) -> list[RevisionRecord]:
    """``OBJECTS`` models, each with 3 appended revisions of one part; their latest revisions."""
    latest = []
    for i in range(OBJECTS):
        for k in range(3):
            new = NewRevision(
                kind="bench.kind",
                kind_meta={"schema": [["a", "int64"], ["b", "float64"]], "k": k},
                parts=[PartRecord(blob=f"{i:032x}{k:032x}", size=1000, rows=10)],
                append=k > 0,
                attributes={"owner": "bench"},
            )
            _, revision = catalog.commit("bench", "models", f"model{i}", new)
        latest.append(revision)
    return latest


def lookup_public(catalog: Catalog, params: dict[str, str]) -> RevisionRecord:
    (rows,) = fetch_public(catalog.engine(), (LOOKUP, params))
    return RevisionRecord(**rows[0])


def parts_public(catalog: Catalog, revision: RevisionRecord) -> list[PartRecord]:
    params = {"revision_id": revision.id, "revision": revision.revision}
    found, exists = fetch_public(catalog.engine(), (PARTS, params), (REVISION_EXISTS, params))
    assert exists
    return [PartRecord(**row) for row in found]


def per_call(call: Callable[[int], object], calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        call(i)
    return (time.perf_counter() - start) / calls * 1e6


def measure(catalog: Catalog, calls: int, repeats: int) -> dict[str, dict[str, float]]:
    """Median µs per call of each operation, fast and public, in alternating blocks."""
    latest = fill(catalog)
    names = [
        {"bucket": "bench", "store": "models", "name": f"model{i}", "tag": "latest"}
        for i in range(OBJECTS)
    ]

    def lookup_fast(i: int) -> object:
        p = names[i % OBJECTS]
        return catalog.lookup(p["bucket"], p["store"], p["name"])

    ops = {
        "lookup": (lookup_fast, lambda i: lookup_public(catalog, names[i % OBJECTS])),
        "parts": (
            lambda i: catalog.parts(latest[i % OBJECTS]),
            lambda i: parts_public(catalog, latest[i % OBJECTS]),
        ),
    }
    for fast, public in ops.values():  # same answers, and warm caches and pools
        for i in range(OBJECTS):
            assert fast(i) == public(i)
    times: dict[str, dict[str, list[float]]] = {op: {"fast": [], "public": []} for op in ops}
    for _ in range(repeats):
        for op, (fast, public) in ops.items():
            times[op]["fast"].append(per_call(fast, calls))
            times[op]["public"].append(per_call(public, calls))
    return {
        op: {side: statistics.median(values) for side, values in sides.items()}
        for op, sides in times.items()
    }


@contextmanager
def sqlite_catalog() -> Iterator[Catalog]:
    with tempfile.TemporaryDirectory(prefix="omops-bench-catalog-") as folder:
        catalog = Catalog(f"sqlite:///{folder}/catalog.sqlite")
        try:
            yield catalog
        finally:
            catalog.close()


@contextmanager
def postgres_catalog(server: str) -> Iterator[Catalog]:
    admin = sa.create_engine(
        sa.make_url(server).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    catalog = Catalog(sa.make_url(server).set(database=name).render_as_string(False))
    try:
        yield catalog
    finally:
        catalog.close()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def markdown(results: dict[str, dict], args: argparse.Namespace, load: tuple[str, str]) -> str:
    info = machine()
    lines = [
        f"## catalog ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"`.venv/bin/python bench/catalog.py --calls {args.calls} --repeats {args.repeats}"
        f"{' --postgres ...' if 'postgresql' in results else ''}` (git {git_commit()}, "
        "working tree may differ)",
        "",
        f"- machine: {info['cores']} cores, {info['cpu']}, {info['ram']} RAM, "
        f"{platform.system()} {platform.release()}",
        f"- python {platform.python_version()}, sqlalchemy {version('sqlalchemy')}, "
        f"psycopg {version('psycopg')}, SQLite {_sqlite()}",
        f"- {OBJECTS} objects of 3 appended revisions each; median of {args.repeats} "
        f"alternating blocks of {args.calls} calls; load average before / after: "
        f"{load[0]} / {load[1]}",
        "",
        "| backend | call | fast path µs | `Connection.execute` µs | public / fast |",
        "|---|---|---:|---:|---:|",
    ]
    for backend, ops in results.items():
        for op, t in ops.items():
            lines.append(
                f"| {backend} | `Catalog.{op}` | {t['fast']:.1f} | {t['public']:.1f} "
                f"| {t['public'] / t['fast']:.2f}x |"
            )
    return "\n".join(lines)


def _sqlite() -> str:
    import sqlite3

    return sqlite3.sqlite_version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2_000, help="calls per block")
    parser.add_argument("--repeats", type=int, default=5, help="alternating blocks (median)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("OMOPS_TEST_POSTGRES"),
        help="PostgreSQL server URL to create a scratch database on (default: "
        "$OMOPS_TEST_POSTGRES; none: SQLite only)",
    )
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    args = parser.parse_args(argv)

    before = loadavg()
    results: dict[str, dict] = {}
    with sqlite_catalog() as catalog:
        results["sqlite"] = measure(catalog, args.calls, args.repeats)
    if args.postgres:
        with postgres_catalog(args.postgres) as catalog:
            results["postgresql"] = measure(catalog, args.calls, args.repeats)
    after = loadavg()
    for backend, ops in results.items():
        for op, t in ops.items():
            print(
                f"{backend:10} {op:6} fast {t['fast']:8.1f} µs  public {t['public']:8.1f} µs  "
                f"public/fast {t['public'] / t['fast']:.2f}x"
            )
    if args.markdown:
        print()
        print(markdown(results, args, (before, after)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
