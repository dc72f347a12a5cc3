"""The ``om`` command line: a thin layer of typer commands over the public omops API.

Every command resolves its repository through :func:`omops.get_omega` and calls
the repository verbs; errors from omops become one red ``error:`` line on
stderr and exit status 1, usage errors exit with status 2.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

import omops
from omops.cli import (
    _auth,
    _config,
    _datasets,
    _db,
    _experiments,
    _jobs,
    _models,
    _monitor,
    _runtime,
    _scripts,
    _secrets,
    _streams,
)
from omops.cli._common import (
    CliError,
    JsonOption,
    examples,
    human_size,
    print_done,
    print_error,
    print_json,
)
from omops.errors import OmopsError

__all__ = ["app"]

HELP = """MLOps for humans: store, version and read datasets and models by name.

Objects live in a bucket ('default' unless --bucket or OMOPS_BUCKET says otherwise).
Wherever a NAME is read, NAME@TAG, NAME@REVISION or NAME^ (the revision before the
latest; NAME^^ the one before that) reads an older revision.

[bold]Examples[/bold]
  om datasets put sales.csv stats        # CSV or Parquet in, a new revision
  om datasets get stats -f sales__gte=100 -o high.parquet
  om datasets list 'prod/*' --json
  om models put model.joblib forecast --pickle  # loading joblib runs code
  om models metadata forecast --json
  om models revisions forecast
  om streams put readings '{"sensor": 1, "v": 0.3}'
  om streams tail readings --group alerts   # follow as a consumer group
  om config show                         # settings and where they come from
"""


class _Group(TyperGroup):
    """Reports omops errors as one line and exit status 1, without a traceback."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (OmopsError, CliError) as exc:
            print_error(str(exc))
            raise typer.Exit(1) from None


app = typer.Typer(
    name="om",
    cls=_Group,
    help=HELP,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(_datasets.app)
app.add_typer(_models.app)
app.add_typer(_jobs.app)
app.add_typer(_config.app)
app.add_typer(_runtime.app)
app.add_typer(_auth.app)
app.add_typer(_experiments.app)
app.add_typer(_db.app)
app.add_typer(_scripts.app)
app.add_typer(_secrets.app)
app.add_typer(_monitor.app)
app.add_typer(_streams.app)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"om (omops) {omops.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    del version


@app.command(
    epilog=examples(
        "  om sweep --dry-run              # what would go",
        "  om sweep --older-than 1 --json  # leftovers untouched for an hour",
    )
)
def sweep(
    older_than: Annotated[
        float,
        typer.Option(
            "--older-than",
            min=0,
            help="Hours a leftover must be untouched (writes in progress are younger).",
        ),
    ] = 24.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, remove nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove what killed writers left in the blob store: temporary files, unused blobs.

    The blob store must belong to this catalog alone (each OMOPS_HOME has its own).
    """
    done = omops.get_omega().sweep(older_than=older_than * 3600, dry_run=dry_run)
    if as_json:
        print_json(done)
        return
    verb = "would remove" if dry_run else "removed"
    print_done(
        f"{verb} {done['temporaries']} temporary file(s) and {done['orphans']} unused blob(s),"
        f" {human_size(done['bytes'])}"
        + (f"; kept {done['held']} a live writer holds" if done["held"] else "")
    )
