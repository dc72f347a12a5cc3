"""``om datasets``: put files in as DataFrames or JSON, get them out as files or tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, BinaryIO

import orjson
import typer
from rich.table import Table

from omops.cli._common import (
    DISPLAY_ROWS,
    STDOUT,
    BucketOption,
    CliError,
    busy,
    examples,
    flags_in_errors,
    output_target,
    print_done,
    print_json,
    print_note,
    print_table,
    repository,
    write_bytes,
)
from omops.cli._parsing import parse_attributes, parse_columns, parse_filters, parse_value
from omops.cli._store import NameArgument, add_list_command, add_object_commands
from omops.names import check_name, check_tag

__all__ = ["app", "read_file", "write_object"]

STORE = "datasets"
FORMATS = ("csv", "parquet", "json")
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
    ".npy": "npy",
}
_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")

app = typer.Typer(
    name=STORE,
    help="Store DataFrames and JSON under names; read them back filtered.",
    no_args_is_help=True,
)

FormatOption = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="csv, parquet or json; default: from the file's extension.",
        show_default=False,
    ),
]
TagOption = Annotated[
    list[str] | None,
    typer.Option("--tag", "-t", help="Tag the new revision (repeatable).", show_default=False),
]
AttributeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--attribute", "-a", help="KEY=VALUE user attribute (repeatable).", show_default=False
    ),
]


def file_format(path: Path, given: str | None, allowed: tuple[str, ...] = FORMATS) -> str:
    """The format named by ``--format`` or by the file's extension (``.csv.gz`` is csv)."""
    fmt = given.lower() if given else None
    if fmt is None:
        suffixes = [s.lower() for s in path.suffixes]
        while suffixes and suffixes[-1] in _COMPRESSIONS:
            suffixes.pop()
        fmt = _SUFFIXES.get(suffixes[-1]) if suffixes else None
        if fmt is None:
            raise typer.BadParameter(
                f"cannot tell the format of {path.name!r} from its extension; "
                f"pass --format ({', '.join(allowed)})",
                param_hint="--format",
            )
    if fmt not in allowed:
        raise typer.BadParameter(
            f"{fmt!r} is not one of {', '.join(allowed)}", param_hint="--format"
        )
    return fmt


def read_file(path: Path, fmt: str) -> Any:
    """Read a CSV or Parquet file as a DataFrame, a JSON file as Python values."""
    import pandas as pd
    import pyarrow as pa

    try:
        if fmt == "csv":
            sep = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
            return pd.read_csv(path, sep=sep)
        if fmt == "parquet":
            return pd.read_parquet(path)
        return orjson.loads(path.read_bytes())
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise CliError(f"cannot read {path} as {fmt}: {exc}") from exc


def _frame_like(obj: Any) -> Any:
    """``obj`` as a DataFrame if it is a DataFrame or Series, else None."""
    import pandas as pd

    if isinstance(obj, pd.Series):
        return obj.to_frame()
    return obj if isinstance(obj, pd.DataFrame) else None


def _keeps_index(frame: Any) -> bool:
    """Write the index only when it carries data (it has a name)."""
    return any(name is not None for name in frame.index.names)


def write_object(obj: Any, path: Path, fmt: str) -> None:
    """Write what ``get`` returned to ``path`` (``-``: stdout) as ``fmt`` (csv, parquet, json, npy)."""
    import numpy as np

    frame = _frame_like(obj)
    if frame is None and fmt in ("csv", "parquet"):
        hint = "--format json" if path == STDOUT else "a .json file"
        raise CliError(f"a {type(obj).__name__} cannot be written as {fmt}; use {hint}")
    if fmt == "npy" and not isinstance(obj, np.ndarray):
        raise CliError(f"only numpy arrays can be written as npy, not a {type(obj).__name__}")
    with output_target(path) as target:
        _write(obj, frame, target, fmt)


def _write(obj: Any, frame: Any, target: Path | BinaryIO, fmt: str) -> None:
    import numpy as np

    if fmt == "csv":
        frame.to_csv(target, index=_keeps_index(frame))
    elif fmt == "parquet":
        frame.to_parquet(target, index=_keeps_index(frame))
    elif fmt == "npy":
        np.save(target, obj, allow_pickle=False)
    elif frame is not None:
        frame.to_json(target, orient="records", date_format="iso", index=False)
    else:
        option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2
        write_bytes(target, orjson.dumps(obj, option=option) + b"\n")


def frame_table(frame: Any, *, title: str) -> Table:
    """A rich table of a DataFrame's rows, with its index in the first column."""
    table = Table(title=title, title_justify="left")
    table.add_column(
        " / ".join(str(n) for n in frame.index.names if n is not None), style="dim", justify="right"
    )
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for index, row in zip(frame.index, frame.itertuples(index=False, name=None), strict=True):
        table.add_row(str(index), *(str(value) for value in row))
    return table


def _show(obj: Any, name: str, *, limit: int | None, total: int) -> None:
    """Print a DataFrame or Series as a table of at most ``limit`` rows, anything else as JSON."""
    frame = _frame_like(obj)
    if frame is None:
        print_json(obj)
        return
    if not total:
        columns = ", ".join(str(c) for c in frame.columns)
        print_done(f"0 rows (columns: {columns})" if columns else "0 rows")
        return
    shown = frame.head(DISPLAY_ROWS if limit is None else limit)
    print_table(frame_table(shown, title=name))
    if len(shown) < total:
        print_note(f"{len(shown)} of {total} rows; use --limit N or --output FILE for more")


add_list_command(app, STORE)


@app.command(
    help="Read NAME: print it as a table, or write it to a file.",
    epilog=examples(
        "om datasets get stats --filter sales__gte=100 --columns region,sales",
        "om datasets get stats@v1 --output stats.parquet",
        "om datasets get stats -f region__in=EU,US -f name__startswith=A -o out.csv",
        "om datasets get stats -o - | head",
        "om datasets get salesdb --table orders -f amount__gt=10   # a SQL connection",
        "om datasets get salesdb --sql 'select * from orders where a > :a' -p a=10",
    ),
)
def get(
    name: NameArgument,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write to FILE.csv, .parquet, .json (or .npy for arrays); '-' writes to "
            "stdout (CSV, or JSON for other kinds, unless --format says otherwise).",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            "-f",
            help="col=value or col__op=value (repeatable, AND-ed); ops: eq ne lt "
            "lte gt gte in nin between contains startswith endswith isnull notnull; in/nin/between "
            "take a,b,c.",
            show_default=False,
        ),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option("--columns", "-c", help="Only these columns: a,b.", show_default=False),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            "-n",
            min=0,
            help=f"At most N rows (a table shows {DISPLAY_ROWS} by default).",
            show_default=False,
        ),
    ] = None,
    fmt: FormatOption = None,
    table: Annotated[
        str | None,
        typer.Option("--table", help="SQL connections: read this table.", show_default=False),
    ] = None,
    sql: Annotated[
        str | None,
        typer.Option(
            "--sql", help="SQL connections: run this query (:name parameters).", show_default=False
        ),
    ] = None,
    params: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="NAME=VALUE of a :name in --sql (repeatable).", show_default=False
        ),
    ] = None,
    bucket: BucketOption = None,
) -> None:
    if output is None and fmt is not None:
        raise typer.BadParameter("--format applies to --output FILE", param_hint="--format")
    if output is not None and output != STDOUT:
        fmt = file_format(output, fmt, (*FORMATS, "npy"))
    selected = parse_columns(columns)
    repo = repository(STORE, bucket)
    meta = repo.metadata(name)
    if output == STDOUT:
        fmt = _stdout_format(fmt, repo.plugins.get(meta.kind).tabular)
    query = parse_filters(filters or [], meta.details.get("dtypes"))
    options = _read_options(repo.plugins.get(meta.kind), table, sql, params)
    if output is None and options is not None:  # read elsewhere: show a window, count the rest
        with busy(f"reading {name}", None), flags_in_errors("--columns", "--table", "--sql"):
            obj, total = _window(repo, name, selected, query, options, limit)
        _show(obj, name, limit=limit, total=total)
        return
    flags = ("--columns", "--table", "--sql") if options is not None else ("--columns",)
    with busy(f"reading {name}", meta.size) as status, flags_in_errors(*flags):
        obj = repo.get(name, columns=selected, **query, **(options or {}))
        frame = _frame_like(obj)
        total = len(frame) if frame is not None else 0
        if limit is not None and frame is not None:
            obj = obj.head(limit)
        if output is not None and fmt is not None:
            status.update(f"writing {output}")
            write_object(obj, output, fmt)
    if output is None:
        _show(obj, name, limit=limit, total=total)
        return
    rows = f"{len(obj)} rows of " if frame is not None else ""
    done = f"wrote {rows}{STORE} {name!r} to "
    if output == STDOUT:
        print_note(done + "stdout")  # stdout holds the data
    else:
        print_done(done + str(output))


def _read_options(
    plugin: Any, table: str | None, sql: str | None, params: list[str] | None
) -> dict[str, Any] | None:
    """``--table``, ``--sql``, ``--param`` for kinds read elsewhere (None for stored ones)."""
    given = {"table": table, "sql": sql, "params": params or None}
    if not (plugin.tabular and not plugin.caches_reads):
        if any(v is not None for v in given.values()):
            raise typer.BadParameter(
                f"--table, --sql and --param read SQL connections, not kind {plugin.kind!r}",
                param_hint="--table",
            )
        return None
    if params:
        pairs = [p.partition("=") for p in params]
        bad = [p for p, (key, sep, _) in zip(params, pairs, strict=True) if not sep or not key]
        if bad:
            raise typer.BadParameter(f"{bad[0]!r} is not NAME=VALUE", param_hint="--param")
        # Values as JSON when they are (10 is a number, 'EU' text), as for filters.
        given["params"] = {key.strip(): parse_value(value) for key, _, value in pairs}
    given = {k: v for k, v in given.items() if v is not None}
    foreign = [f"--{k.removesuffix('s')}" for k in given if k not in plugin.read_options]
    if foreign:
        raise typer.BadParameter(
            f"{foreign[0]} reads SQL connections, not kind {plugin.kind!r}", param_hint=foreign[0]
        )
    return given


def _window(
    repo: Any,
    name: str,
    columns: Any,
    filters: dict[str, Any],
    options: dict[str, Any],
    limit: int | None,
) -> tuple[Any, int]:
    """The first rows to show of data read elsewhere, and how many there are in all."""
    import pyarrow as pa

    stream = repo.stream(name, columns=columns, filters=filters, **options)
    try:
        total = stream.count()
        wanted, batches, rows = DISPLAY_ROWS if limit is None else limit, [], 0
        for batch in stream.batches:
            if rows >= wanted:
                break
            batches.append(batch.slice(0, wanted - rows))
            rows += batches[-1].num_rows
    finally:
        stream.close()
    return pa.Table.from_batches(batches, schema=stream.schema).to_pandas(), total


def _stdout_format(given: str | None, tabular: bool) -> str:
    """The format of ``--output -``: ``--format``, else CSV for tables, else JSON."""
    fmt = given.lower() if given else ("csv" if tabular else "json")
    allowed = (*FORMATS, "npy")
    if fmt not in allowed:
        raise typer.BadParameter(
            f"{fmt!r} is not one of {', '.join(allowed)}", param_hint="--format"
        )
    return fmt


@app.command(
    help="Store FILE (CSV or Parquet as a DataFrame, JSON as python.json) as NAME.",
    epilog=examples(
        "om datasets put sales.csv stats",
        "om datasets put q3.parquet stats --replace --tag q3 --attribute owner=ana",
        "om datasets put config.json settings",
    ),
)
def put(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV, Parquet or JSON file.",
            exists=True,
            dir_okay=False,
            readable=True,
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Argument(help="Name to store it under.", show_default=False)],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Replace the rows instead of appending to the latest revision."
        ),
    ] = False,
    tags: TagOption = None,
    attributes: AttributeOption = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind", "-k", help="Force a kind, e.g. pandas.dataframe.", show_default=False
        ),
    ] = None,
    fmt: FormatOption = None,
    bucket: BucketOption = None,
) -> None:
    repo = repository(STORE, bucket)
    check_name(name)
    for tag in tags or []:
        check_tag(tag)
    attrs = parse_attributes(attributes or [])
    fmt = file_format(file, fmt)
    size = file.stat().st_size
    with busy(f"reading {file}", size) as status, flags_in_errors("--replace", "--kind"):
        obj = read_file(file, fmt)
        status.update(f"storing {name}")
        meta = repo.put(
            obj, name, attrs or None, kind=kind, append=False if replace else None, tag=tags or None
        )
    rows = f", {meta.rows} rows" if meta.rows is not None else ""
    print_done(
        f"stored {STORE} {meta.name!r} in bucket {meta.bucket!r} "
        f"({meta.kind}{rows}, revision {meta.revision[:12]})"
    )


add_object_commands(app, STORE)
