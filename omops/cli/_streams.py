"""``om streams``: append records, read them from an offset on, follow a stream.

Records are printed as NDJSON, one ``{"offset": n, "appended": t, "record": ...}``
per line, so that ``om streams get`` and ``om streams tail`` pipe into other
tools; ``om streams put`` reads a JSON record, a JSON array of records, or
NDJSON lines (from the argument or standard input).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

import omops
from omops.catalog.streams import StreamRecord
from omops.cli._common import (
    BucketOption,
    CliError,
    JsonOption,
    examples,
    print_done,
    print_json,
    print_table,
)
from omops.streams import StreamsRepository

__all__ = ["app"]

app = typer.Typer(
    name="streams",
    help="Append JSON records to streams; read them by offset or follow them as a consumer group.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="Stream name.", show_default=False)]


def _streams(bucket: str | None) -> StreamsRepository:
    om = omops.get_omega()
    return (om[bucket] if bucket is not None else om).streams


def _records(text: str) -> Any:
    """A JSON value (a record, or an array of records), else NDJSON lines as records."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise CliError(
                f"line {number} is not JSON ({exc}); give one JSON record, a JSON array of "
                "records, or one JSON record per line"
            ) from None
    if not records:
        raise CliError("no records given: pass a JSON record, or pipe JSON or NDJSON in")
    return records


@app.command(
    help="Append records to stream NAME (made if new): a JSON record, a JSON array of "
    "records, or NDJSON lines, from RECORDS or standard input.",
    epilog=examples(
        """om streams put readings '{"sensor": 1, "v": 0.3}'""",
        """om streams put readings '[{"sensor": 1}, {"sensor": 2}]'""",
        "tail -f sensor.log | om streams put readings -   # NDJSON, one put per read",
    ),
)
def put(
    name: NameArgument,
    records: Annotated[
        str | None,
        typer.Argument(
            help="JSON or NDJSON; '-' or nothing reads standard input.", show_default=False
        ),
    ] = None,
    bucket: BucketOption = None,
    as_json: JsonOption = False,
) -> None:
    text = sys.stdin.read() if records in (None, "-") else records
    done = _streams(bucket).put(_records(text), name)
    if as_json:
        print_json(dict(done))
        return
    offsets = (
        f"offset {done['first']}"
        if done["count"] == 1
        else (f"offsets {done['first']}-{done['next'] - 1}")
    )
    print_done(
        f"appended {done['count']} record(s) to stream {name!r}"
        + (f" at {offsets}" if done["count"] else "")
    )


def _print(records: Iterable[StreamRecord]) -> None:
    lines = [
        b'{"offset":%d,"appended":%s,"record":%s}\n'
        % (r.offset, orjson.dumps(r.dt), r.record.encode())
        for r in records
    ]
    out = typer.get_binary_stream("stdout")
    out.write(b"".join(lines))
    out.flush()


@app.command(
    help="Print the records of stream NAME from offset --since on, one JSON line each.",
    epilog=examples(
        "om streams get readings",
        "om streams get readings --since 100 --limit 10",
    ),
)
def get(
    name: NameArgument,
    since: Annotated[int, typer.Option("--since", min=0, help="The first offset.")] = 0,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=0, help="At most this many records.")
    ] = None,
    bucket: BucketOption = None,
) -> None:
    _print(_streams(bucket).read(name, since=since, limit=limit))


@app.command(
    help="Follow stream NAME: print records as they are appended, one JSON line each. "
    "With --group, as that consumer group: from its position on, committing each window "
    "once printed.",
    epilog=examples(
        "om streams tail readings                  # new records, until Ctrl-C",
        "om streams tail readings --group alerts --size 100 --timeout 5",
    ),
)
def tail(
    name: NameArgument,
    group: Annotated[
        str | None, typer.Option("--group", "-g", help="Consumer group to read as.")
    ] = None,
    since: Annotated[
        int | None,
        typer.Option(
            "--since", min=0, help="Without --group: the first offset (default: the end)."
        ),
    ] = None,
    size: Annotated[int, typer.Option("--size", min=1, help="Records per window.")] = 100,
    interval: Annotated[
        float, typer.Option("--interval", min=0, help="Seconds a window waits for --size records.")
    ] = 0.5,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0, help="Stop after this many seconds without records."),
    ] = None,
    bucket: BucketOption = None,
) -> None:
    streams = _streams(bucket)
    if group is None and since is None:
        since = streams.metadata(name).next_offset
    reader = streams.getl(
        name, group=group, since=since, size=size, interval=interval, timeout=timeout, raw=True
    )
    try:
        for window in reader:
            _print(window)
    except KeyboardInterrupt:
        reader.close()  # the window in hand stays uncommitted


@app.command("list", help="List the streams of a bucket with their record counts and groups.")
def list_(
    pattern: Annotated[
        str | None, typer.Argument(help="Glob on names, e.g. 'sensors/*'.", show_default=False)
    ] = None,
    bucket: BucketOption = None,
    as_json: JsonOption = False,
) -> None:
    streams = _streams(bucket)
    found = [streams.metadata(n).to_dict() for n in streams.list(pattern)]
    if as_json:
        print_json(found)
        return
    table = Table(title=f"streams in bucket {streams.bucket!r}", title_justify="left")
    for column in ("name", "records", "groups", "created"):
        table.add_column(column)
    for info in found:
        groups = ", ".join(f"{g}@{o}" for g, o in info["groups"].items())
        table.add_row(info["name"], str(info["records"]), groups, info["created"])
    print_table(table)


@app.command(help="Delete stream NAME with its records and consumer groups.")
def drop(
    name: NameArgument,
    force: Annotated[bool, typer.Option("--force", help="No error if it does not exist.")] = False,
    bucket: BucketOption = None,
) -> None:
    if _streams(bucket).drop(name, force=force):
        print_done(f"dropped stream {name!r}")
    else:
        print_done(f"stream {name!r} did not exist")
