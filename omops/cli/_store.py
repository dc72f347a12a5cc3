"""Commands every store has: ``list``, ``metadata``, ``revisions``, ``tag``, ``untag``, ``drop``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from omops.cli._common import (
    INDEX_LEVEL,
    BucketOption,
    JsonOption,
    cell,
    examples,
    human_size,
    mapping_table,
    print_done,
    print_json,
    print_note,
    print_table,
    repository,
    summary,
)
from omops.errors import NotFound

__all__ = ["add_list_command", "add_object_commands"]

NameArgument = Annotated[
    str,
    typer.Argument(
        help="Object name; NAME@TAG, NAME@REVISION or NAME^ (NAME^^ ...) reads an older revision.",
        show_default=False,
    ),
]


def _without_internal_columns(data: dict[str, Any]) -> dict[str, Any]:
    """Metadata as a user sees it: no pandas ``__index_level_0__`` in ``index``,
    ``columns`` or ``dtypes`` (an unnamed index shows as ``index: []``)."""

    def visible(name: object) -> bool:
        return not (isinstance(name, str) and INDEX_LEVEL.fullmatch(name))

    for key in ("index", "columns"):
        if isinstance(data.get(key), list):
            data[key] = [c for c in data[key] if visible(c)]
    if isinstance(data.get("dtypes"), dict):
        data["dtypes"] = {k: v for k, v in data["dtypes"].items() if visible(k)}
    return data


def add_list_command(app: typer.Typer, store: str) -> None:
    """Register ``list`` on ``app`` for ``store``."""

    @app.command(
        "list",
        help=f"List the {store} in a bucket, with kind, revision and size.",
        epilog=examples(f"om {store} list 'prod/*' --json", f"om {store} list --all"),
    )
    def list_(
        pattern: Annotated[
            str | None, typer.Argument(help="Glob on names, e.g. 'prod/*'.", show_default=False)
        ] = None,
        kind: Annotated[
            str | None,
            typer.Option(
                "--kind", "-k", help="Only this kind, e.g. pandas.dataframe.", show_default=False
            ),
        ] = None,
        show_all: Annotated[
            bool,
            typer.Option(
                "--all",
                help="Also omops' own objects: names starting with '_' "
                "(_experiments/..., _temp/...).",
            ),
        ] = False,
        bucket: BucketOption = None,
        as_json: JsonOption = False,
    ) -> None:
        repo = repository(store, bucket)
        rows = []
        for name in repo.list(pattern, kind=kind, hidden=show_all):
            try:
                rows.append(summary(repo.metadata(name)))
            except NotFound:  # dropped since it was listed
                continue
        if as_json:
            print_json(rows)
            return
        if not rows:
            print_note(
                f"no {store} in bucket {repo.bucket!r}" + (f" match {pattern!r}" if pattern else "")
            )
            return
        table = Table(title=f"{store} in bucket {repo.bucket!r}", title_justify="left")
        with_rows = any(row["rows"] is not None for row in rows)
        table.add_column("name", overflow="fold", min_width=8)
        table.add_column("kind", no_wrap=True)
        table.add_column("revision", no_wrap=True)
        table.add_column("tags", overflow="fold", min_width=8)
        if with_rows:
            table.add_column("rows", justify="right")
        table.add_column("size", justify="right", no_wrap=True)
        table.add_column("modified", no_wrap=True)
        for row in rows:
            cells = [row["name"], row["kind"], row["revision"][:8], " ".join(row["tags"])]
            if with_rows:
                cells.append(cell(row["rows"]))
            cells += [human_size(row["size"]), row["modified"][:16].replace("T", " ")]
            table.add_row(*cells)
        print_table(table)


def add_object_commands(app: typer.Typer, store: str) -> None:
    """Register ``metadata``, ``revisions``, ``tag``, ``untag`` and ``drop`` for ``store``."""

    @app.command(
        help=f"Show what the catalog knows about one of the {store}.",
        epilog=examples(f"om {store} metadata NAME@latest --json"),
    )
    def metadata(
        name: NameArgument, bucket: BucketOption = None, as_json: JsonOption = False
    ) -> None:
        data = _without_internal_columns(repository(store, bucket).metadata(name).to_dict())
        if as_json:
            print_json(data)
        else:
            print_table(mapping_table(data, title=f"{store} {data['name']!r}"))

    @app.command(
        help="List the revisions of NAME, oldest first, with their tags.",
        epilog=examples(f"om {store} revisions NAME"),
    )
    def revisions(
        name: NameArgument, bucket: BucketOption = None, as_json: JsonOption = False
    ) -> None:
        found = repository(store, bucket).revisions(name)
        if as_json:
            print_json([{"revision": rev, "tags": tags} for rev, tags in found])
            return
        table = Table(title=f"revisions of {store} {name!r}", title_justify="left")
        table.add_column("#", justify="right")
        table.add_column("revision", no_wrap=True)
        table.add_column("tags")
        for number, (rev, tags) in enumerate(found, start=1):
            table.add_row(str(number), rev, ", ".join(tags))
        print_table(table)

    @app.command(
        help="Point TAG at REVISION (a revision id prefix or another tag).",
        epilog=examples(f"om {store} tag NAME 3f2a9c production"),
    )
    def tag(
        name: NameArgument,
        revision: Annotated[
            str, typer.Argument(help="Revision id prefix or tag.", show_default=False)
        ],
        tag: Annotated[str, typer.Argument(help="Tag to set.", show_default=False)],
        bucket: BucketOption = None,
    ) -> None:
        repo = repository(store, bucket)
        repo.tag(name, revision, tag)
        tagged = repo.metadata(f"{name}@{tag}").revision
        print_done(f"tagged {store} {name!r} revision {tagged[:12]} as {tag!r}")

    @app.command(
        help="Remove TAG from NAME ('latest' always stays).",
        epilog=examples(f"om {store} untag NAME production"),
    )
    def untag(
        name: NameArgument,
        tag: Annotated[str, typer.Argument(help="Tag to remove.", show_default=False)],
        bucket: BucketOption = None,
    ) -> None:
        repository(store, bucket).untag(name, tag)
        print_done(f"removed tag {tag!r} from {store} {name!r}")

    @app.command(
        help="Delete NAME with all its revisions.", epilog=examples(f"om {store} drop NAME --force")
    )
    def drop(
        name: NameArgument,
        force: Annotated[
            bool, typer.Option("--force", "-f", help="Succeed even if NAME does not exist.")
        ] = False,
        bucket: BucketOption = None,
    ) -> None:
        if repository(store, bucket).drop(name, force=force):
            print_done(f"dropped {store} {name!r}")
        else:
            print_note(f"{store} {name!r} does not exist; nothing dropped")
