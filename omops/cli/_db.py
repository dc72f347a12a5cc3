"""``om db``: the catalog's schema revision, and the one command that migrates it."""

from __future__ import annotations

from typing import Annotated

import typer

from omops.catalog import Catalog, Migration, SchemaStatus
from omops.cli._common import (
    JsonOption,
    examples,
    mapping_table,
    print_done,
    print_json,
    print_table,
)
from omops.config import load_settings

__all__ = ["app"]

app = typer.Typer(
    name="db",
    help="Show and upgrade the catalog's schema (the catalog is OMOPS_CATALOG, see om config show).",
    no_args_is_help=True,
)

#: What each schema state means for the user, after ``state:``.
_MEANING = {
    "current": "nothing to do",
    "empty": "created on first use, or now by om db upgrade",
    "behind": "run om db upgrade (after upgrading omops in every process that uses it)",
    "ahead": "a newer omops upgraded it; upgrade omops: pip install -U omops",
    "unversioned": "omops tables without a schema revision: not made by omops",
}


def _catalog() -> Catalog:
    return Catalog(load_settings().catalog)


def _migration_lines(migrations: tuple[Migration, ...] | list[Migration]) -> str:
    return "\n".join(f"{m.revision}  {m.description}" for m in migrations)


def _status_table(found: SchemaStatus) -> None:
    print_table(
        mapping_table(
            {
                "catalog": found.url,
                "dialect": found.dialect,
                "schema": found.current or "(none)",
                "newest": found.head,
                "state": f"{found.state}: {_MEANING[found.state]}",
                "pending": _migration_lines(found.pending) or "(none)",
            },
            title="catalog schema",
        )
    )


@app.command(
    epilog=examples(
        "  om db status",
        "  om db status --json",
        "  OMOPS_CATALOG=postgresql://ana:pw@db/omops om db status",
    )
)
def status(as_json: JsonOption = False) -> None:
    """Show the catalog's schema revision, the newest this omops knows, and what is pending.

    Changes nothing. The password in the catalog URL is masked.
    """
    catalog = _catalog()
    try:
        found = catalog.schema_status()
    finally:
        catalog.close()
    if as_json:
        print_json(found.to_dict())
        return
    _status_table(found)


@app.command(
    epilog=examples(
        "  om db upgrade",
        "  om db upgrade --to 0003 --json",
    )
)
def upgrade(
    to: Annotated[
        str,
        typer.Option("--to", help="Schema revision to upgrade to (see om db status)."),
    ] = "head",
    as_json: JsonOption = False,
) -> None:
    """Migrate the catalog's schema to the newest this omops knows (or --to a revision).

    omops never migrates an existing catalog by itself: upgrade omops in every
    process that uses the catalog, then run this once. Running it again does
    nothing; several at once apply each migration once.
    """
    catalog = _catalog()
    try:
        before = catalog.schema_status()
        applied = catalog.upgrade(to)
    finally:
        catalog.close()
    after = applied[-1].revision if applied else before.current
    if as_json:
        print_json(
            {
                "url": before.url,
                "from": before.current,
                "to": after,
                "applied": [
                    {"revision": m.revision, "description": m.description} for m in applied
                ],
            }
        )
        return
    if not applied:
        print_done(f"catalog {before.url} is at schema {after} already; nothing to do")
        return
    done = (
        f"created the catalog schema at {after}"
        if before.current is None
        else f"upgraded the catalog schema from {before.current} to {after}"
    )
    print_done(f"{done} in {before.url}, applying:\n{_migration_lines(applied)}")
