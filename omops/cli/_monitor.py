"""``om monitor``: drift, traffic and alerts of tracked models in production."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table

import omops
from omops.cli._common import BucketOption, examples, print_json, print_note, print_table

__all__ = ["app"]

app = typer.Typer(
    name="monitor",
    help="Tracked models in production: input drift, predictions, errors, latency, alerts.",
    no_args_is_help=True,
)


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table (default) or json.", show_default=False)
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Same as -o json.")]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Start of the window: '15m', '1h', '1d' before --until, or an ISO time (UTC).",
        show_default=False,
    ),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="End of the window (default: now).")
]
ExperimentOption = Annotated[
    str | None,
    typer.Option("--experiment", "-e", help="The tracking experiment, if several track it."),
]


def _omega(bucket: str | None):  # noqa: ANN202
    om = omops.get_omega()
    return om[bucket] if bucket else om


def _number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"


@app.command(
    epilog=examples(
        "  om monitor drift forecast --since 1d",
        "  om monitor drift forecast --reference train_X --since 2026-11-28T00:00 -o json",
    )
)
def drift(
    model: Annotated[str, typer.Argument(help="A tracked model.")],
    reference: Annotated[
        str | None,
        typer.Option("--reference", "-r", help="Training inputs (default: set by track)."),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    experiment: ExperimentOption = None,
    no_alert: Annotated[
        bool, typer.Option("--no-alert", help="Compute only: log no alert, POST no webhook.")
    ] = False,
    bucket: BucketOption = None,
    output: OutputOption = Output.table,
    as_json: JsonFlag = False,
) -> None:
    """Input drift of a tracked model: per feature KS/chi-square, PSI and whether it drifted.

    Exit status 0 whether or not a feature drifted; read "drifted" (or the table).
    """
    report = (
        _omega(bucket)
        .runtime.model(model)
        .drift(
            since=since or "1d",
            reference=reference,
            until=until,
            experiment=experiment,
            alert=not no_alert,
        )
    )
    if as_json or output is Output.json:
        print_json(report.to_dict())
        return
    title = (
        f"drift of {report.model} ({report.experiment}): {report.rows} rows "
        f"{report.since} .. {report.until}, reference {report.reference.get('name')}"
        f"@{str(report.reference.get('revision'))[:12]}"
    )
    table = Table(
        "feature",
        "kind",
        "test",
        "statistic",
        "p-value",
        "PSI",
        "drifted",
        "rows",
        "note",
        title=title,
        title_justify="left",
    )
    for f in report.features:
        table.add_row(
            f.name,
            f.kind,
            f.test,
            _number(f.statistic),
            _number(f.p_value),
            _number(f.psi),
            "[bold red]yes[/bold red]" if f.drifted else "no",
            str(f.rows),
            f.note or "",
        )
    print_table(table)
    if report.message:
        print_note(report.message)
    verdict = f"drifted: {', '.join(report.drifted_features)}" if report.drifted else "no drift"
    print_note(
        f"{verdict} (p-value < {report.thresholds['p_value']:g} and PSI > {report.thresholds['psi']:g})"
    )
    for alert in report.alerts:
        print_note(f"alert: {alert['message']}")


def _series_rows(found: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for row in found["series"] if row["predictions"]]


@app.command(epilog=examples("  om monitor stats forecast --since 1h --bucket-width 5m"))
def stats(
    model: Annotated[str, typer.Argument(help="A tracked model.")],
    since: SinceOption = None,
    until: UntilOption = None,
    width: Annotated[
        str, typer.Option("--bucket-width", "-w", help="Time per row: '1m', '5m', '1h'.")
    ] = "1m",
    experiment: ExperimentOption = None,
    bucket: BucketOption = None,
    output: OutputOption = Output.table,
    as_json: JsonFlag = False,
) -> None:
    """Predictions, errors and latency percentiles of a tracked model per time bucket.

    The table leaves out buckets without predictions; -o json has them all and the
    drift per feature over time.
    """
    from omops.monitoring import monitor

    found = monitor(
        _omega(bucket), model, since=since or "1h", until=until, bucket=width, experiment=experiment
    ).to_dict()
    if as_json or output is Output.json:
        print_json(found)
        return
    title = (
        f"{found['model']} ({found['experiment']}): {found['predictions']} predictions, "
        f"{found['errors']} errors, {found['since']} .. {found['until']}"
    )
    table = Table(
        "time (UTC)",
        "predictions",
        "errors",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        title=title,
        title_justify="left",
    )
    rows = _series_rows(found)
    for row in rows:
        table.add_row(
            row["t"],
            str(row["predictions"]),
            str(row["errors"]),
            _number(row["p50_ms"], 3),
            _number(row["p95_ms"], 3),
            _number(row["p99_ms"], 3),
        )
    print_table(table)
    if not rows:
        print_note(f"no tracked predictions of {model!r} in the window; try a longer --since")
    if found.get("message"):
        print_note(found["message"])


@app.command(
    epilog=examples(
        "  om monitor check                  # every tracked model, last hour",
        "  om monitor check forecast --since 1d --json",
        "  */15 * * * * om monitor check     # crontab: check every 15 minutes",
    )
)
def check(
    models: Annotated[
        list[str] | None, typer.Argument(help="Models to check (default: every tracked model).")
    ] = None,
    since: SinceOption = None,
    bucket: BucketOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Check drift and error rate of tracked models; log alerts and POST webhooks.

    Exit status 1 when a model could not be checked (missing reference ...).
    """
    from omops.monitoring import check as run_check

    results = run_check(_omega(bucket), models or None, since=since or "1h")
    if as_json:
        print_json(results)
    else:
        table = Table("model", "predictions", "errors", "drifted", "alerts", "note")
        for item in results:
            if "error" in item:
                table.add_row(item["model"], "", "", "", "", f"[red]{item['error']}[/red]")
                continue
            drifted = {None: "(no reference)", True: ", ".join(item["features"]), False: "no"}
            table.add_row(
                item["model"],
                str(item["predictions"]),
                str(item["errors"]),
                drifted[item["drifted"]],
                str(len(item["alerts"])),
                item["status"] if item["status"] != "ok" else "",
            )
        print_table(table)
        if not results:
            print_note("no tracked models: exp.track('model', reference='train_X')")
    if any("error" in item for item in results):
        raise typer.Exit(1)
