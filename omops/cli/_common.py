"""What every ``om`` command shares: the repository, consoles, output and errors."""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import orjson
import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table
from rich.text import Text

import omops
from omops.errors import OmopsError
from omops.metadata import human_size

if TYPE_CHECKING:
    from omops.repository import Metadata, Repository

__all__ = [
    "BUSY_BYTES",
    "DISPLAY_ROWS",
    "INDEX_LEVEL",
    "STDOUT",
    "BucketOption",
    "CliError",
    "JsonOption",
    "atomic_path",
    "busy",
    "cell",
    "cli_wording",
    "examples",
    "flags_in_errors",
    "human_size",
    "mapping_table",
    "output_target",
    "print_done",
    "print_error",
    "print_json",
    "print_note",
    "print_table",
    "repository",
    "summary",
    "write_bytes",
]

#: Files and objects larger than this get a spinner while they are read or written.
BUSY_BYTES = 4 * 1024 * 1024
#: Rows shown in a terminal table when ``--limit`` is not given.
DISPLAY_ROWS = 50
#: ``--output -``: write to standard output instead of a file.
STDOUT = Path("-")

#: How omops messages name Python arguments, and how to say it with the flag that
#: does the same on the command line; each command rewrites only its own flags.
_FLAG_WORDING: Mapping[str, tuple[tuple[re.Pattern[str], str], ...]] = MappingProxyType(
    {
        "--replace": ((re.compile(r"put with append=False(?: to replace)?"), "use --replace"),),
        "--kind": (
            (re.compile(r"\bkind='([^'\s]+)'"), r"--kind \1"),
            (re.compile(r"\bkind=(?=[\s,;)]|$)"), "--kind"),
        ),
        "--columns": ((re.compile(r"\bcolumns=(?=[\s,;)]|$)"), "--columns"),),
        "--table": ((re.compile(r"\btable=(?='name')"), "--table "),),
        "--sql": (
            (re.compile(r"\bsql=(?='select)"), "--sql "),
            (re.compile(r"\bparams=(?=\{)"), "--param NAME=VALUE, "),
            (re.compile(r"\bparams="), "--param"),
        ),
    }
)
#: pandas' name for an unnamed index level: a stored column no user named or sees.
INDEX_LEVEL = re.compile(r"__index_level_\d+__")
#: The same, as an item of a column list in a message.
_LISTED_INDEX_LEVEL = re.compile(rf"(?:, )?'{INDEX_LEVEL.pattern}'(?:, (?=.))?")

BucketOption = Annotated[
    str | None,
    typer.Option(
        "--bucket",
        "-b",
        help="Bucket to use; default OMOPS_BUCKET or 'default'.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class CliError(Exception):
    """A problem the command line found itself, e.g. a file it cannot read or write.

    Reported like an :class:`omops.OmopsError`: one line, exit status 1.
    """


def cli_wording(message: str, flags: Iterable[str]) -> str:
    """``message`` with Python arguments replaced by these command-line ``flags``.

    pandas' internal ``'__index_level_0__'`` columns are left out of column lists.

    Examples
    --------
    >>> cli_wording("columns differ; put with append=False to replace", ["--replace"])
    'columns differ; use --replace'
    >>> cli_wording("pass kind= (one of a, b), e.g. kind='python.pickle'", ["--kind"])
    'pass --kind (one of a, b), e.g. --kind python.pickle'
    >>> cli_wording("columns ['a', '__index_level_0__'] differ", [])
    "columns ['a'] differ"
    """
    for flag in flags:
        for pattern, replacement in _FLAG_WORDING[flag]:
            message = pattern.sub(replacement, message)
    return _LISTED_INDEX_LEVEL.sub("", message)


@contextlib.contextmanager
def flags_in_errors(*flags: str) -> Iterator[None]:
    """Report omops errors raised in the block in the words of the command line.

    The Python messages name arguments (``append=False``, ``kind='python.pickle'``);
    a command that has the flag doing the same (``--replace``, ``--kind``)
    reports them with the flag instead.
    """
    try:
        yield
    except OmopsError as exc:
        text = cli_wording(str(exc), flags)
        if text == str(exc):
            raise
        raise CliError(text) from exc


def examples(*lines: str) -> str:
    """An epilog listing example command lines."""
    title = "Example" if len(lines) == 1 else "Examples"
    return "\n".join([f"[bold]{title}[/bold]", *lines])


def repository(store: str, bucket: str | None = None) -> Repository:
    """The ``store`` repository of the default instance, in ``bucket`` if given."""
    om = omops.get_omega()
    if bucket is not None:
        om = om[bucket]
    repo: Repository = getattr(om, store)
    return repo


def stdout() -> Console:
    return Console(highlight=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """Print ``error: message`` as one red line on stderr."""
    line = " ".join(message.split())
    stderr().print(Text(f"error: {line}", style="bold red"), soft_wrap=True)


def print_note(message: str) -> None:
    """A remark for humans on stderr, so that stdout stays clean for pipes."""
    stderr().print(Text(message, style="dim"), soft_wrap=True)


def print_done(message: str) -> None:
    """Confirm what a command changed, on stdout."""
    stdout().print(Text(message), soft_wrap=True)


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout (datetimes ISO, NumPy as lists)."""
    option = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    typer.echo(orjson.dumps(data, option=option, default=str).decode())


def print_table(table: Table) -> None:
    stdout().print(table)


def cell(value: Any) -> str:
    """A table cell: containers as compact JSON, ``None`` as empty."""
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return orjson.dumps(value, default=str).decode()
    return str(value)


def mapping_table(data: Mapping[str, Any], *, title: str | None = None) -> Table:
    """A two-column key/value table."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in data.items():
        table.add_row(key, cell(value))
    return table


def summary(meta: Metadata) -> dict[str, Any]:
    """What ``list`` shows of one object."""
    return {
        "name": meta.name,
        "kind": meta.kind,
        "revision": meta.revision,
        "tags": meta.tags,
        "rows": meta.rows,
        "size": meta.size,
        "modified": meta.modified.isoformat(),
    }


class _Quiet:
    """Stands in for a rich Status when the work is too small for a spinner."""

    def update(self, status: str) -> None:
        del status


@contextlib.contextmanager
def busy(message: str, size: int | None) -> Iterator[Status | _Quiet]:
    """A spinner on stderr while ``size`` bytes are processed, if that is a lot."""
    if size is None or size < BUSY_BYTES:
        yield _Quiet()
        return
    with stderr().status(f"{message} ({human_size(size)})") as status:
        yield status


@contextlib.contextmanager
def output_target(target: Path) -> Iterator[Path | BinaryIO]:
    """Where to write ``--output``: a temporary path (see :func:`atomic_path`), or,
    for ``-``, a buffer copied to standard output once the block succeeds."""
    if target != STDOUT:
        with atomic_path(target) as tmp:
            yield tmp
        return
    buffer = io.BytesIO()
    yield buffer
    stream = typer.get_binary_stream("stdout")
    stream.write(buffer.getvalue())
    stream.flush()


def write_bytes(target: Path | BinaryIO, data: bytes) -> None:
    """Write ``data`` to a path or an open binary file."""
    if isinstance(target, Path):
        target.write_bytes(data)
    else:
        target.write(data)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path next to ``target`` that replaces it once the block succeeds.

    The temporary name keeps ``target``'s suffixes, so writers that infer a
    compression from the name (``.csv.gz``) still do.
    """
    target = target.expanduser()
    if target.is_dir():
        raise CliError(f"{target} is a folder; give a file name such as {target / 'out.csv'}")
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
