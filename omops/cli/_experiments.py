"""``om experiments``: list experiments, show a run's events."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

import omops
from omops.cli._common import BucketOption, cell, examples, print_json, print_note, print_table

__all__ = ["app"]

app = typer.Typer(
    name="experiments", help="Tracked experiments: runs, metrics, events.", no_args_is_help=True
)


def _runtime(bucket: str | None):  # noqa: ANN202
    om = omops.get_omega()
    return (om[bucket] if bucket else om).runtime


@app.command("list")
def list_experiments(
    bucket: BucketOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Experiments with their number of runs and events."""
    found = _runtime(bucket).experiments()
    if as_json:
        print_json(found)
        return
    table = Table("experiment", "runs", "events", "created")
    for item in found:
        table.add_row(
            item["name"],
            str(item["runs"]),
            str(item["events"]),
            item["created"].isoformat(timespec="seconds"),
        )
    print_table(table)
    if not found:
        print_note("no experiments yet: with om.runtime.experiment('name') as exp: ...")


@app.command(epilog=examples("  om experiments show myexp --event metric --run all"))
def show(
    name: Annotated[str, typer.Argument(help="Experiment name.")],
    event: Annotated[
        list[str] | None, typer.Option("--event", "-e", help="Only these event types.")
    ] = None,
    key: Annotated[list[str] | None, typer.Option("--key", "-k", help="Only these keys.")] = None,
    run: Annotated[str, typer.Option(help="'latest', 'all' or a run number.")] = "latest",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Rows to show (last N).")] = 50,
    bucket: BucketOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON records.")] = False,
) -> None:
    """Events of an experiment's run(s) as a table."""
    import pandas as pd

    runtime = _runtime(bucket)
    runtime.om.catalog.tracking.experiment(runtime.om.bucket, name, create=False)
    exp = runtime.experiment(name)
    selected: str | int = int(run) if run.isdigit() else run
    frame = exp.data(event=event or None, key=key or None, run=selected)
    shown = frame.tail(limit)
    if as_json:
        print_json(orjson_records(shown))
        return
    table = Table("run", "step", "dt", "event", "key", "value", title=f"experiment {name}")
    for row in shown.itertuples(index=False):
        table.add_row(
            str(row.run),
            "" if pd.isna(row.step) else str(row.step),
            row.dt.isoformat(timespec="milliseconds"),
            row.event,
            "" if not isinstance(row.key, str) else row.key,
            cell(row.value)[:80],
        )
    print_table(table)
    if frame.empty:
        print_note(f"no events in experiment {name!r} for run={run!r}; try --run all")
    elif len(frame) > limit:
        print_note(f"showing the last {limit} of {len(frame)} events; use --limit")


def orjson_records(frame):  # noqa: ANN001, ANN201
    """JSON-able records: ISO times, ``None`` for a missing step or key."""
    import pandas as pd

    records = frame.to_dict(orient="records")
    for record in records:
        record["dt"] = record["dt"].isoformat()
        record["step"] = None if pd.isna(record["step"]) else int(record["step"])
        record["key"] = record["key"] if isinstance(record["key"], str) else None
    return records
