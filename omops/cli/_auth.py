"""``om auth``: API keys for the REST server."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

import omops
from omops.catalog.keys import ROLES
from omops.cli._common import examples, print_done, print_json, print_note, print_table

__all__ = ["app"]

app = typer.Typer(
    name="auth", help="Create, list and revoke API keys for the REST server.", no_args_is_help=True
)


@app.command(
    "create-key",
    epilog=examples(
        "  om auth create-key --bucket prod --role read",
        "  om auth create-key --bucket dev --bucket prod --role write --note ci",
    ),
)
def create_key(
    bucket: Annotated[
        list[str],
        typer.Option(
            "--bucket", "-b", help="Bucket the key may use; repeat for several; '*' for all."
        ),
    ],
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}.")] = "read",
    note: Annotated[str, typer.Option(help="What the key is for.")] = "",
) -> None:
    """Create a key and print it once: it is stored only as a hash."""
    token, key = omops.get_omega().catalog.api_keys.create(role=role, buckets=bucket, note=note)
    print_note(
        f"key {key.id}: {key.role} on {', '.join(key.buckets)}; store it now, it is not shown again"
    )
    typer.echo(token)


@app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked keys.")] = False,
) -> None:
    """List keys (never their secrets)."""
    keys = omops.get_omega().catalog.api_keys.list(include_revoked=revoked)
    if as_json:
        print_json([k.to_dict() for k in keys])
        return
    table = Table("id", "role", "buckets", "note", "created", "revoked")
    for k in keys:
        table.add_row(
            k.id,
            k.role,
            ", ".join(k.buckets),
            k.note,
            k.created.isoformat(timespec="seconds"),
            k.revoked.isoformat(timespec="seconds") if k.revoked else "",
        )
    print_table(table)


@app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (see om auth list).")]) -> None:
    """Revoke a key; servers stop accepting it within seconds."""
    omops.get_omega().catalog.api_keys.revoke(key_id)
    print_done(f"revoked key {key_id}")
