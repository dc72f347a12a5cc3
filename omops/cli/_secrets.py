"""``om secrets``: set, list and drop the values of ``{placeholders}`` (never shown)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

import omops
from omops.cli._common import (
    BucketOption,
    CliError,
    JsonOption,
    examples,
    print_done,
    print_json,
    print_note,
    print_table,
)
from omops.secrets import Secrets, check_secret_name, new_key

__all__ = ["app"]

app = typer.Typer(
    name="secrets",
    help="Values for {placeholders} in connection strings and URLs, encrypted with "
    "OMOPS_SECRET_KEY. Values are never printed.",
    no_args_is_help=True,
)

NameArgument = Annotated[
    str, typer.Argument(help="Secret name, as in the placeholder {name}.", show_default=False)
]


def _secrets(bucket: str | None) -> Secrets:
    om = omops.get_omega()
    return (om[bucket] if bucket is not None else om).secrets


def _read_value(name: str, stdin: bool) -> str:
    """The value from standard input (``--stdin``) or a hidden prompt, never an argument:
    arguments end up in shell histories and process listings."""
    if stdin:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
    else:
        value = typer.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    if not value:
        raise CliError(f"the value of secret {name!r} is empty; nothing was stored")
    return value


@app.command(
    "set",
    help="Store NAME's value (asked for without echo, or read from stdin), encrypted.",
    epilog=examples(
        "om secrets set password                    # asks twice, shows nothing",
        'printf %s "$PGPASSWORD" | om secrets set password --stdin',
        "om secrets set password --bucket prod",
    ),
)
def set_(
    name: NameArgument,
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the value from standard input.")
    ] = False,
    bucket: BucketOption = None,
) -> None:
    check_secret_name(name)
    secrets = _secrets(bucket)
    secrets.put(name, _read_value(name, stdin))
    print_done(f"stored secret {name!r} in bucket {secrets.bucket!r}")


@app.command("list", help="List the names of the secrets (never their values).")
def list_(bucket: BucketOption = None, as_json: JsonOption = False) -> None:
    records = _secrets(bucket).records()
    if as_json:
        print_json(
            [
                {
                    "name": r.name,
                    "created": r.created.isoformat(),
                    "modified": r.modified.isoformat(),
                }
                for r in records
            ]
        )
        return
    if not records:
        print_note("no secrets in this bucket; store one with om secrets set NAME")
        return
    table = Table(title="secrets", title_justify="left")
    table.add_column("name", style="bold cyan")
    table.add_column("modified")
    for record in records:
        table.add_row(record.name, record.modified.isoformat(timespec="seconds"))
    print_table(table)


@app.command(help="Delete secret NAME.", epilog=examples("om secrets drop password"))
def drop(
    name: NameArgument,
    force: Annotated[bool, typer.Option("--force", help="No error when it is missing.")] = False,
    bucket: BucketOption = None,
) -> None:
    secrets = _secrets(bucket)
    if secrets.drop(name, force=force):
        print_done(f"dropped secret {name!r} from bucket {secrets.bucket!r}")
    else:
        print_note(f"no secret {name!r} in bucket {secrets.bucket!r}")


@app.command(
    "new-key",
    help="Print a new random key for OMOPS_SECRET_KEY (give every process that uses "
    "secrets the same one; 'new,old' reads secrets stored with either).",
)
def new_key_() -> None:
    typer.echo(new_key())
