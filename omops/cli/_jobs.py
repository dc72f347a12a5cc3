"""``om jobs``: store notebooks, run them here or on workers, schedule and export them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

import omops
from omops.cli._common import (
    STDOUT,
    BucketOption,
    CliError,
    JsonOption,
    examples,
    output_target,
    print_done,
    print_json,
    print_note,
    print_table,
    repository,
    stderr,
    write_bytes,
)
from omops.cli._datasets import AttributeOption, TagOption
from omops.cli._parsing import parse_attributes, parse_value
from omops.cli._store import NameArgument, add_object_commands
from omops.names import check_name, check_tag

__all__ = ["app"]

STORE = "jobs"
RESULTS = "results/"

app = typer.Typer(
    name=STORE,
    help="Store Jupyter notebooks as jobs; run, map, schedule and export them.",
    no_args_is_help=True,
)

ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        help="Parameter KEY=VALUE (VALUE as JSON if it parses, else text); repeatable.",
        show_default=False,
    ),
]
LocalOption = Annotated[bool, typer.Option("--local", help="Run here even if a broker is set.")]
LabelOption = Annotated[
    str | None,
    typer.Option(
        "--label",
        "-l",
        help="Queue to run on (default OMOPS_LABEL or 'default').",
        show_default=False,
    ),
]
CellTimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--cell-timeout",
        min=0,
        help="Seconds each cell may run (0: no limit; default OMOPS_JOB_CELL_TIMEOUT or 3600).",
        show_default=False,
    ),
]
WaitOption = Annotated[float, typer.Option("--wait", min=0, help="Seconds to wait for the result.")]


def _parameters(specs: list[str] | None) -> dict[str, Any]:
    return {k: parse_value(v) for k, v in parse_attributes(specs or []).items()}


def _runtime(bucket: str | None, *, local: bool, label: str | None) -> Any:
    om = omops.get_omega()
    if bucket is not None:
        om = om[bucket]
    runtime = om.runtime.mode(local=local)
    if local or not om.broker or label is None:
        return runtime
    return runtime.require(check_tag(label))


@contextlib.contextmanager
def _waiting(message: str) -> Iterator[None]:
    """A spinner on stderr while a run is sent and waited for."""
    with stderr().status(message):
        yield


def _line(record: dict[str, Any]) -> str:
    return (
        f"job {record['job']!r} {record['status']} in {record['duration']:.2f} s; "
        f"executed notebook: {record['result']}"
    )


@app.command(
    help="Store the notebook FILE (.ipynb) as job NAME.",
    epilog=examples("om jobs put analysis.ipynb myjob", "om jobs put etl.ipynb prod/etl -t v1"),
)
def put(
    file: Annotated[
        Path,
        typer.Argument(
            help="A Jupyter notebook (.ipynb).",
            exists=True,
            dir_okay=False,
            readable=True,
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Argument(help="Name to store it under.", show_default=False)],
    tags: TagOption = None,
    attributes: AttributeOption = None,
    bucket: BucketOption = None,
) -> None:
    if file.suffix.lower() != ".ipynb":
        raise typer.BadParameter(f"{file.name!r} is not a .ipynb notebook file", param_hint="FILE")
    check_name(name)
    repo = repository(STORE, bucket)
    meta = repo.put(str(file), name, parse_attributes(attributes or []) or None, tag=tags or None)
    print_done(
        f"stored {STORE} {meta.name!r} in bucket {meta.bucket!r} "
        f"({meta.details.get('cells')} cells, revision {meta.revision[:12]})"
    )


@app.command(
    help="Write job or result NAME to a .ipynb file ('-': stdout).",
    epilog=examples("om jobs get myjob -o myjob.ipynb", "om jobs get results/myjob_... -o -"),
)
def get(
    name: NameArgument,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="FILE.ipynb, or '-' for stdout.", dir_okay=False),
    ],
    bucket: BucketOption = None,
) -> None:
    text = repository(STORE, bucket).export(name, format="ipynb")
    with output_target(output) as target:
        write_bytes(target, text.encode())
    if output != STDOUT:
        print_done(f"wrote {STORE} {name!r} to {output}")


@app.command(
    "list",
    help="List the jobs of a bucket with their schedule and last run (--results: runs too).",
    epilog=examples("om jobs list", "om jobs list 'prod/*' --json", "om jobs list --results"),
)
def list_(
    pattern: Annotated[
        str | None, typer.Argument(help="Glob on names, e.g. 'prod/*'.", show_default=False)
    ] = None,
    with_results: Annotated[
        bool, typer.Option("--results", help="Also the executed notebooks (results/...).")
    ] = False,
    bucket: BucketOption = None,
    as_json: JsonOption = False,
) -> None:
    repo = repository(STORE, bucket)
    schedules = {s["name"]: s for s in repo.schedules()}
    rows = []
    for name in repo.list(pattern):
        if name.startswith(RESULTS) and not with_results:
            continue
        meta = repo.metadata(name)
        schedule = schedules.get(name)
        rows.append(
            {
                "name": name,
                "kind": meta.kind,
                "revision": meta.revision,
                "cells": meta.details.get("cells"),
                "schedule": schedule["run_at"] if schedule else None,
                "next_run": schedule["next_run"] if schedule else None,
                "status": meta.attributes.get("status"),
                "modified": meta.modified.isoformat(),
            }
        )
    if as_json:
        print_json(rows)
        return
    if not rows:
        print_note(
            f"no jobs in bucket {repo.bucket!r}" + (f" match {pattern!r}" if pattern else "")
        )
        return
    table = Table(title=f"jobs in bucket {repo.bucket!r}", title_justify="left")
    for column in ("name", "revision", "cells", "schedule (UTC)", "next run", "modified"):
        table.add_column(column, overflow="fold")
    for row in rows:
        name = row["name"] + (f" [{row['status']}]" if row["status"] else "")
        table.add_row(
            name,
            row["revision"][:8],
            str(row["cells"] or ""),
            row["schedule"] or "",
            (row["next_run"] or "")[:16].replace("T", " "),
            row["modified"][:16].replace("T", " "),
        )
    print_table(table)


@app.command(
    help="Run job NAME once and wait for it; the executed notebook is stored as results/NAME_<time>.",
    epilog=examples(
        "om jobs run myjob -p region=eu -p n=3",
        "om jobs run myjob --local --cell-timeout 60",
        "om jobs run myjob --async   # print the task id and return",
    ),
)
def run(
    name: NameArgument,
    param: ParamOption = None,
    local: LocalOption = False,
    label: LabelOption = None,
    cell_timeout: CellTimeoutOption = None,
    wait: WaitOption = 3600.0,
    run_async: Annotated[
        bool, typer.Option("--async", help="Do not wait: print the task id.")
    ] = False,
    bucket: BucketOption = None,
    as_json: JsonOption = False,
) -> None:
    runtime = _runtime(bucket, local=local, label=label)
    job = runtime.job(name, timeout=cell_timeout)
    if run_async:
        task = job.submit(_parameters(param))
        print_json({"task": task}) if as_json else print_done(f"started job {name!r}: task {task}")
        return
    with _waiting(f"running job {name!r} on {runtime!r}"):
        record = job.run(_parameters(param)).get(timeout=wait)
    print_json(record) if as_json else print_done(_line(record))


@app.command(
    "map",
    help="Run job NAME once per item, in parallel (job['param'] is the item), and wait.",
    epilog=examples(
        "om jobs map myjob 2024 2025 2026", "om jobs map myjob --range 10 -p region=eu"
    ),
)
def map_(
    name: NameArgument,
    items: Annotated[
        list[str] | None,
        typer.Argument(help="Items (JSON if they parse, else text).", show_default=False),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option("--range", min=0, help="Items 0 .. N-1 instead.", show_default=False),
    ] = None,
    param: ParamOption = None,
    local: LocalOption = False,
    label: LabelOption = None,
    cell_timeout: CellTimeoutOption = None,
    wait: WaitOption = 3600.0,
    bucket: BucketOption = None,
    as_json: JsonOption = False,
) -> None:
    if items and count is not None:
        raise typer.BadParameter("give items or --range, not both", param_hint="--range")
    values = list(range(count)) if count is not None else [parse_value(i) for i in items or []]
    if not values:
        raise typer.BadParameter("give the items to map over, or --range N", param_hint="ITEMS")
    runtime = _runtime(bucket, local=local, label=label)
    job = runtime.job(name, timeout=cell_timeout)
    with _waiting(f"running job {name!r} {len(values)} times on {runtime!r}"):
        records = job.map(values, **_parameters(param)).get(timeout=wait)
    if as_json:
        print_json(records)
        return
    table = Table("item", "status", "seconds", title=f"runs of job {name!r}")
    table.add_column("result", overflow="fold", min_width=20)
    for value, record in zip(values, records, strict=True):
        table.add_row(str(value), record["status"], f"{record['duration']:.2f}", record["result"])
    print_table(table)


@app.command(
    help="Show, set or drop the schedule of job NAME (times are UTC).",
    epilog=examples(
        "om jobs schedule myjob 'weekdays at 06:00'",
        "om jobs schedule myjob '*/15 * * * *' -p region=eu",
        "om jobs schedule myjob            # show it",
        "om jobs schedule myjob --drop",
    ),
)
def schedule(
    name: NameArgument,
    run_at: Annotated[
        str | None,
        typer.Argument(
            help="Cron line or text: 'every 5 minutes', 'daily at 06:00', 'weekdays at 06:00'.",
            show_default=False,
        ),
    ] = None,
    param: ParamOption = None,
    label: LabelOption = None,
    drop: Annotated[bool, typer.Option("--drop", help="Stop scheduling NAME.")] = False,
    bucket: BucketOption = None,
    as_json: JsonOption = False,
) -> None:
    repo = repository(STORE, bucket)
    if drop:
        if run_at is not None:
            raise typer.BadParameter("--drop takes no RUN_AT", param_hint="--drop")
        repo.drop_schedule(name)
        print_done(f"job {name!r} is no longer scheduled")
        return
    if run_at is None:
        found = repo.get_schedule(name)
    else:
        found = repo.schedule(name, run_at, parameters=_parameters(param), label=label)
    if as_json:
        print_json(found)
        return
    verb = "scheduled" if run_at is not None else "schedule of"
    print_done(
        f"{verb} job {name!r}: {found['run_at']} (cron {found['cron']!r}, UTC); "
        f"next run {found['next_run']}"
    )
    if run_at is not None:
        print_note("runs are fired by `om runtime scheduler`; keep one running")


@app.command(
    help="List the stored runs of job NAME: status, start, duration, executed notebook.",
    epilog=examples("om jobs results myjob", "om jobs results myjob --json"),
)
def results(name: NameArgument, bucket: BucketOption = None, as_json: JsonOption = False) -> None:
    found = repository(STORE, bucket).results(name)
    if as_json:
        print_json(found)
        return
    if not found:
        print_note(f"job {name!r} has no stored runs")
        return
    table = Table(title=f"runs of job {name!r}", title_justify="left")
    table.add_column("result", overflow="fold", min_width=20)
    for column in ("status", "started (UTC)", "seconds", "parameters", "error"):
        table.add_column(column, overflow="fold")
    for record in found:
        error = record.get("error") or {}
        table.add_row(
            record["result"],
            record.get("status", ""),
            str(record.get("started", ""))[:19].replace("T", " "),
            f"{record.get('duration', 0):.2f}",
            str(record.get("parameters") or ""),
            f"cell {error.get('cell')}: {error.get('ename')}" if error else "",
        )
    print_table(table)


@app.command(
    help="Export job or result NAME as HTML, a notebook or a Python script.",
    epilog=examples(
        "om jobs export myjob -o myjob.html",
        "om jobs export results/myjob_20261127T060000.000000Z --format py -o -",
    ),
)
def export(
    name: NameArgument,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="File to write, or '-' for stdout.", dir_okay=False),
    ],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="html, ipynb or py; default: from the output's extension, else html.",
            show_default=False,
        ),
    ] = None,
    bucket: BucketOption = None,
) -> None:
    suffix = output.suffix.lower().lstrip(".") if output != STDOUT else ""
    chosen = (fmt or {"htm": "html"}.get(suffix, suffix) or "html").lower()
    if chosen not in ("html", "ipynb", "py"):
        raise CliError(f"cannot export as {chosen!r}; use --format html, ipynb or py")
    with _waiting(f"exporting {name!r} as {chosen}"):
        text = repository(STORE, bucket).export(name, format=chosen)  # type: ignore[arg-type]
    with output_target(output) as target:
        write_bytes(target, text.encode())
    if output != STDOUT:
        print_done(f"wrote {STORE} {name!r} as {chosen} to {output}")


add_object_commands(app, STORE)
