"""Jobs benchmark: a parameterized notebook run by omops vs papermill, in one run.

The notebook is trivial (a cell tagged ``parameters`` with ``n = 1``, a cell
printing ``n * 2``), so what is measured is the cost around the notebook:
starting a kernel, injecting the parameters, executing, storing the result.
Each way runs ``--repeats`` times, the ways interleaved, on the same file:

* ``papermill CLI``      ``papermill bench.ipynb out.ipynb -p n I -k python3``
* ``om jobs run (CLI)``  ``om jobs run bench -p n=I --local`` (the same file, put once)
* ``papermill API``      ``papermill.execute_notebook(...)`` in this process
* ``omops API``          ``om.runtime.mode(local=True).job('bench').run(n=I).get()``
                         in this process (local executor; the executed notebook is
                         stored as ``results/bench_<time>`` with its record)
* ``omops API, pool``    the same with ``OMOPS_KERNEL_POOL=1`` on another Omega: a
                         kernel started ahead of each run (``--pause`` seconds
                         between runs give the spare time to start, as between
                         requests to a server)

omops runs on a temporary ``OMOPS_HOME`` (SQLite catalog, blob folder).
papermill is not an omops dependency: ``pip install papermill`` (the ``bench``
extra). The notebook part is :func:`notebook_part`; scripts are measured by
``bench/scripts.py``.

Run::

    .venv/bin/python bench/jobs.py
    .venv/bin/python bench/jobs.py --repeats 9 --markdown   # also print a RESULTS.md section
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import git_commit, loadavg, machine, om_command  # noqa: E402
from _common import version as _version  # noqa: E402

import omops  # noqa: E402
from omops.runtime._kernels import Kernels  # noqa: E402

#: (way, target ratio to its baseline or None, baseline way)
NOTEBOOK_WAYS = (
    ("papermill CLI", None, None),
    ("om jobs run (CLI)", 1.2, "papermill CLI"),
    ("papermill API", None, None),
    ("omops API", 1.2, "papermill API"),
    ("omops API, pool", None, "papermill API"),
)


def write_notebook(path: Path) -> None:
    import nbformat

    parameters = nbformat.v4.new_code_cell("n = 1")
    parameters.metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(
        cells=[parameters, nbformat.v4.new_code_cell("print(n * 2)")],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    nbformat.write(notebook, str(path))


def _timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _command(cmd: list[str], env: dict[str, str]) -> Callable[[], None]:
    def run() -> None:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")

    return run


def notebook_part(args: argparse.Namespace, work: Path) -> dict[str, list[float]]:
    """Wall seconds of each notebook way, ``args.repeats`` runs each, interleaved."""
    import papermill

    source = work / "bench.ipynb"
    write_notebook(source)
    home = work / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMOPS_")}
    env.update(OMOPS_HOME=str(home), PYTHONPATH=str(ROOT))
    om = omops.Omega(home=str(home))
    om.jobs.put(str(source), "bench")
    pooled = omops.Omega(home=str(home))
    # What OMOPS_KERNEL_POOL=1 in its environment gives an Omega: one spare kernel.
    pooled.context.part("jobs.kernels", lambda: Kernels(spares=1))
    papermill_cli = [str(Path(sys.executable).parent / "papermill"), "-k", "python3"]
    times: dict[str, list[float]] = {way: [] for way, _, _ in NOTEBOOK_WAYS}
    counter = iter(range(10**6))

    def ways() -> dict[str, Callable[[], None]]:
        i = next(counter)
        out = str(work / f"out-{i}.ipynb")
        return {
            "papermill CLI": _command([*papermill_cli, str(source), out, "-p", "n", str(i)], env),
            "om jobs run (CLI)": _command(
                [*om_command(), "jobs", "run", "bench", "-p", f"n={i}", "--local"], env
            ),
            "papermill API": lambda: papermill.execute_notebook(
                str(source), out, parameters={"n": i}, kernel_name="python3", progress_bar=False
            ),
            "omops API": lambda: om.runtime.mode(local=True).job("bench").run(n=i).get(),
            "omops API, pool": lambda: pooled.runtime.mode(local=True).job("bench").run(n=i).get(),
        }

    for run in ways().values():  # warm-up: imports, page cache, the first spare kernel
        run()
    for _ in range(args.repeats):
        for name, run in ways().items():
            if name.endswith("pool"):
                time.sleep(args.pause)  # the spare started after the last run gets ready
            times[name].append(_timed(run))
    records = [r for r in om.jobs.results("bench")]
    assert all(r["status"] == "ok" for r in records), records
    pooled_runs = [r for r in records if r.get("pooled_kernel")]
    assert len(pooled_runs) >= args.repeats, "the pooled runs did not get started kernels"
    om.close()
    pooled.close()
    return times


def rows(times: dict[str, list[float]]) -> list[tuple[str, float, str, str]]:
    """(way, median s, ratio to its baseline, target met)."""
    medians = {way: statistics.median(values) for way, values in times.items()}
    found = []
    for way, target, baseline in NOTEBOOK_WAYS:
        ratio = medians[way] / medians[baseline] if baseline else None
        shown = f"{ratio:.2f}x {baseline}" if ratio is not None else "-"
        met = "-" if target is None else ("yes" if ratio <= target else "**no**")
        found.append((way, medians[way], shown, met if target is None else f"{met} (<= {target})"))
    return found


def table(found: list[tuple[str, float, str, str]]) -> str:
    lines = ["| way | median wall (s) | ratio | target |", "|---|---:|---:|:-:|"]
    lines += [f"| {way} | {median:.3f} | {ratio} | {met} |" for way, median, ratio, met in found]
    return "\n".join(lines)


def markdown(args: argparse.Namespace, found: list, before: str, after: str) -> str:
    info = machine()
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"## jobs ({now})",
            "",
            f"`.venv/bin/python bench/jobs.py --repeats {args.repeats} --pause {args.pause}` "
            f"(git {git_commit()}, working tree may differ)",
            "",
            f"- machine: {info['cores']} cores, {info['cpu']}, {info['ram']} RAM, "
            f"{platform.system()} {platform.release()}",
            f"- python {platform.python_version()}, omops {omops.__version__}, papermill "
            f"{_version('papermill')}, nbclient {_version('nbclient')}, ipykernel "
            f"{_version('ipykernel')}, jupyter_client {_version('jupyter_client')}",
            "- notebook: a cell tagged `parameters` (`n = 1`) and `print(n * 2)`; kernel python3; "
            f"median of {args.repeats} runs per way after one warm-up, the ways interleaved",
            f"- load average (1, 5, 15 min) before / after: {before} / {after}",
            "",
            table(found),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per way")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds before each pooled run")
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    args = parser.parse_args(argv)
    before = loadavg()
    with tempfile.TemporaryDirectory(prefix="omops-bench-jobs-") as folder:
        found = rows(notebook_part(args, Path(folder)))
    after = loadavg()
    print(table(found))
    if args.markdown:
        print()
        print(markdown(args, found, before, after))
    return 0


if __name__ == "__main__":
    sys.exit(main())
