"""Scripts benchmark: a script package's first and second run vs calling its function in-process.

A tiny package ``bench-script`` (``run(om, n)`` reads a 100-row stored
dataset and returns ``n`` times its sum) depends on a tiny local package
``bench-dep``; both are built into wheels here and pip installs the
dependency from a folder (``PIP_NO_INDEX=1``, ``PIP_FIND_LINKS``), so the
bench needs no package index. Everything lives in a temporary
``OMOPS_HOME`` (SQLite catalog, blob folder), local executor. Timed, in one run:

* ``put``            ``om.scripts.put(folder, name)``: the wheel build
* ``in-process``     the same ``run(om, n=3)`` imported and called here, ``om`` in hand
* ``first run``      ``om.runtime.script(name).run(n=3).get()`` with no environment yet:
                     venv, pip install of the wheel and its dependency, warm host start, run
                     (``--first`` repeats, each with the environment deleted first)
* ``second, warm``   the same call again: the environment is cached and a warm host
                     (a Python of that environment with omops imported) forks the run
* ``second, cold``   the same with warm hosts off: a fresh Python of the environment per run

Every answer is checked against the in-process one. Latencies are medians of
``--calls`` calls after ``--warmup``.

Run::

    .venv/bin/python bench/scripts.py
    .venv/bin/python bench/scripts.py --markdown     # also print a RESULTS.md section
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
from _common import git_commit, loadavg, machine  # noqa: E402
from _common import version as _version  # noqa: E402

import omops  # noqa: E402
from omops.plugins.package import build_wheel  # noqa: E402
from omops.runtime.scripts import ScriptHosts  # noqa: E402

#: The target: a second run at most this many seconds over the in-process call.
TARGET_SECONDS = 0.5

SCRIPT = """
import bench_dep

def run(om, n=1):
    frame = om.datasets.get("bench/x")
    return {"sum": float(frame["x"].sum()) * n * bench_dep.ONE}
"""


def write_package(root: Path, dist: str, module: str, code: str, deps: list[str]) -> Path:
    folder = root / dist
    (folder / module).mkdir(parents=True)
    (folder / module / "__init__.py").write_text(textwrap.dedent(code))
    requires = ", ".join(f'"{d}"' for d in deps)
    (folder / "pyproject.toml").write_text(
        "[build-system]\n"
        'requires = ["setuptools>=61"]\n'
        'build-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{dist}"\nversion = "1.0"\ndependencies = [{requires}]\n'
        f'[tool.setuptools]\npackages = ["{module}"]\n'
    )
    return folder


def median_seconds(fn: Callable[[], object], calls: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(args: argparse.Namespace, work: Path) -> dict[str, float]:
    wheelhouse = work / "wheelhouse"
    wheelhouse.mkdir()
    build_wheel(write_package(work / "src", "bench-dep", "bench_dep", "ONE = 1\n", [])).save(
        wheelhouse
    )
    os.environ.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse))
    source = write_package(work / "src", "bench-script", "bench_script", SCRIPT, ["bench-dep"])
    om = omops.Omega(home=str(work / "home"))
    om.datasets.put(pd.DataFrame({"x": range(100)}), "bench/x", append=False)
    res: dict[str, float] = {}

    start = time.perf_counter()
    om.scripts.put(source, "bench/script")
    res["put"] = time.perf_counter() - start

    # in-process: the same function, importable here (its dependency too)
    dep = write_package(work / "local", "d", "bench_dep", "ONE = 1\n", [])
    sys.path[:0] = [str(source), str(dep)]
    function = importlib.import_module("bench_script").run
    expected = {"sum": 4950.0 * 3}
    assert function(om, n=3) == expected
    res["in-process"] = median_seconds(lambda: function(om, n=3), args.calls, args.warmup)

    def script_run() -> dict:
        record = om.runtime.script("bench/script").run(n=3).get()
        assert record["result"] == expected, record
        return record

    firsts = []
    for _ in range(args.first):
        om.context.part("scripts", ScriptHosts).close()  # no warm host of an earlier round
        shutil.rmtree(Path(om.settings.home) / "envs", ignore_errors=True)
        start = time.perf_counter()
        record = script_run()
        firsts.append(time.perf_counter() - start)
        assert record["env"]["created"] and record["env"]["warm"]
        res.setdefault("install", 0.0)
        res["install"] += record["env"]["install_seconds"] / args.first
    res["first run"] = statistics.median(firsts)
    res["second, warm"] = median_seconds(script_run, args.calls, args.warmup)
    again = script_run()
    assert not again["env"]["created"] and again["env"]["warm"]
    om.context.part("scripts", ScriptHosts).close()
    om.context.part("scripts", ScriptHosts).size = 0  # warm hosts off: a fresh Python per run
    res["second, cold"] = median_seconds(script_run, args.calls, args.warmup)
    om.close()
    return res


def table(res: dict[str, float]) -> list[str]:
    base = res["in-process"]
    lines = ["| way | median (s) | over in-process (s) |", "|---|---:|---:|"]
    for way in ("in-process", "first run", "second, warm", "second, cold"):
        lines.append(f"| {way} | {res[way]:.4f} | {res[way] - base:+.4f} |")
    return lines


def markdown(args: argparse.Namespace, res: dict[str, float], load: tuple[str, str]) -> str:
    host = machine()
    warm = res["second, warm"] - res["in-process"]
    cold = res["second, cold"] - res["in-process"]
    return "\n".join(
        [
            f"## scripts ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC})",
            "",
            f"`.venv/bin/python bench/scripts.py --calls {args.calls} --first {args.first}`"
            f" (git {git_commit()}, working tree may differ)",
            "",
            f"- machine: {host['cores']} cores, {host['cpu']}, {host['ram']} RAM,"
            f" {platform.system()} {platform.release()}",
            f"- python {platform.python_version()}, omops {omops.__version__}, pip"
            f" {_version('pip')}, build {_version('build')}, setuptools {_version('setuptools')}",
            "- a script package whose `run(om, n)` reads a stored 100-row dataset and returns"
            " n times its sum, with one dependency (a local wheel, pip from a folder); SQLite"
            " catalog in a temporary OMOPS_HOME, local executor",
            f"- medians of {args.calls} calls after {args.warmup} warm-up; first run: median"
            f" of {args.first}, each with the environment deleted first",
            f"- load average (1, 5, 15 min) before / after: {load[0]} / {load[1]}",
            "",
            *table(res),
            "",
            f"- put (building the wheel from the folder): {res['put']:.2f} s; the first run's"
            f" install (venv + pip, wheel and dependency): {res['install']:.2f} s",
            "",
            f"Target: second run <= {TARGET_SECONDS} s over in-process: warm host"
            f" {warm:+.3f} s ({'met' if warm <= TARGET_SECONDS else 'NOT met'}), fresh process"
            f" {cold:+.3f} s ({'met' if cold <= TARGET_SECONDS else 'NOT met'}).",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="timed calls per way")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument("--first", type=int, default=3, help="first runs (fresh environment)")
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    args = parser.parse_args()
    before = loadavg()
    with tempfile.TemporaryDirectory(prefix="omops-bench-scripts-") as tmp:
        res = measure(args, Path(tmp))
    after = loadavg()
    print("\n".join(table(res)))
    print(f"put {res['put']:.2f} s, install {res['install']:.2f} s")
    if args.markdown:
        print()
        print(markdown(args, res, (before, after)))


if __name__ == "__main__":
    main()
