"""``om config``: the settings in effect and where each one came from."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from omops.cli._common import JsonOption, examples, print_json, print_table
from omops.config import load_settings, mask_options, mask_url, mask_webhook

__all__ = ["app", "settings_report"]

app = typer.Typer(name="config", help="Show the configuration.", no_args_is_help=True)

#: Settings in display order, with the environment variable that sets each.
VARIABLES = {
    "home": "OMOPS_HOME",
    "catalog": "OMOPS_CATALOG",
    "blobs": "OMOPS_BLOBS",
    "broker": "OMOPS_BROKER",
    "bucket": "OMOPS_BUCKET",
    "label": "OMOPS_LABEL",
    "monitor_webhook": "OMOPS_MONITOR_WEBHOOK",
    "memory_limit": "OMOPS_MEMORY_LIMIT",
    "spill": "OMOPS_SPILL",
    "blobs_options": "OMOPS_BLOBS_OPTIONS",
    "secret_key": "OMOPS_SECRET_KEY",
}


def _shown(key: str, value: object) -> str | None:
    """A setting as shown: passwords in URLs and secret storage options masked."""
    if key == "secret_key":
        return "***" if value else None  # the key of om.secrets is never shown
    if key == "blobs_options":
        return json.dumps(mask_options(value), sort_keys=True) if value else None  # type: ignore[arg-type]
    if key == "monitor_webhook":
        return mask_webhook(value)
    return mask_url(None if value is None else str(value))


def settings_report() -> dict[str, dict[str, str | None]]:
    """Each setting's value (passwords masked), source and environment variable."""
    settings = load_settings()
    values = settings.as_dict()
    return {
        key: {
            "value": _shown(key, values[key]),
            "source": settings.sources.get(key, "default"),
            "variable": variable,
        }
        for key, variable in VARIABLES.items()
    }


@app.command(
    help="Show every setting with its value and source: env, file ($OMOPS_HOME/config.toml) "
    "or default. Passwords in URLs and secret blob store options are masked.",
    epilog=examples(
        "om config show --json", "OMOPS_CATALOG=postgresql://ana:pw@db/omops om config show"
    ),
)
def show(as_json: JsonOption = False) -> None:
    report = settings_report()
    if as_json:
        print_json(report)
        return
    home = report["home"]["value"]
    table = Table(
        title="omops settings",
        title_justify="left",
        caption=f"config file: {home}/config.toml",
        caption_justify="left",
    )
    table.add_column("setting", style="bold cyan")
    table.add_column("value", overflow="fold")
    table.add_column("source")
    table.add_column("variable", style="dim")
    for key, entry in report.items():
        value = entry["value"]
        none = {"broker": "(none: local executor)", "memory_limit": "(none: DuckDB's, 80% of RAM)"}
        none = none.get(key, "(none)")
        table.add_row(
            key,
            value if value is not None else none,
            entry["source"],
            entry["variable"],
        )
    print_table(table)
