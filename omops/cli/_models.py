"""``om models``: put joblib/pickle/JSON files in as models, get them out as files."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, BinaryIO

import orjson
import typer

from omops.cli._common import (
    STDOUT,
    BucketOption,
    CliError,
    busy,
    examples,
    flags_in_errors,
    output_target,
    print_done,
    print_note,
    repository,
    write_bytes,
)
from omops.cli._datasets import AttributeOption, TagOption
from omops.cli._parsing import parse_attributes
from omops.cli._store import NameArgument, add_list_command, add_object_commands
from omops.errors import PluginError
from omops.names import check_name, check_tag

__all__ = ["app", "load_model", "save_model"]

STORE = "models"
FORMATS = ("joblib", "pickle", "json")
_SUFFIXES = {".joblib": "joblib", ".pkl": "pickle", ".pickle": "pickle", ".json": "json"}
#: Formats whose loading runs code from the file.
CODE_FORMATS = ("joblib", "pickle")
#: The format ``--output -`` writes for each kind when ``--format`` is not given.
_KIND_FORMATS = MappingProxyType(
    {"sklearn.joblib": "joblib", "python.pickle": "pickle", "python.json": "json"}
)

app = typer.Typer(
    name=STORE,
    help="Store models (scikit-learn, any pickle with --kind python.pickle, JSON) under names.",
    no_args_is_help=True,
)

ModelFormatOption = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="joblib, pickle or json; default: from the file's extension.",
        show_default=False,
    ),
]


def model_format(path: Path, given: str | None) -> str:
    """The format named by ``--format`` or by ``path``'s extension."""
    fmt = given.lower() if given else _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise typer.BadParameter(
            f"cannot tell the format of {path.name!r} from its extension; pass --format "
            f"({', '.join(FORMATS)})",
            param_hint="--format",
        )
    if fmt not in FORMATS:
        raise typer.BadParameter(
            f"{fmt!r} is not one of {', '.join(FORMATS)}", param_hint="--format"
        )
    return fmt


def _joblib() -> Any:
    try:
        import joblib
    except ImportError:
        raise PluginError("joblib files need joblib: pip install 'omops[sklearn]'") from None
    return joblib


def load_model(path: Path, fmt: str) -> Any:
    """Load a model file. For joblib and pickle this runs code from the file."""
    if fmt == "json":
        try:
            return orjson.loads(path.read_bytes())
        except (orjson.JSONDecodeError, OSError) as exc:
            raise CliError(f"cannot read {path} as json: {exc}") from exc
    joblib = _joblib() if fmt == "joblib" else None
    try:
        if joblib is not None:
            return joblib.load(path)
        with path.open("rb") as fh:
            return pickle.load(fh)  # noqa: S301 - the user passed --pickle
    except Exception as exc:  # unpickling runs arbitrary code: anything can come out
        raise CliError(f"cannot load {path} as {fmt}: {type(exc).__name__}: {exc}") from exc


def save_model(obj: Any, path: Path, fmt: str) -> None:
    """Write a model to ``path`` (``-``: stdout) as joblib, pickle or JSON."""
    joblib = _joblib() if fmt == "joblib" else None
    with output_target(path) as target:
        if joblib is not None:
            joblib.dump(obj, target)
        elif fmt == "pickle":
            _pickle(obj, target)
        else:
            try:
                data = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2)
            except TypeError as exc:
                hint = "--format joblib or pickle" if path == STDOUT else "a .joblib or .pkl file"
                raise CliError(
                    f"a {type(obj).__name__} cannot be written as json; use {hint}"
                ) from exc
            write_bytes(target, data + b"\n")


def _pickle(obj: Any, target: Path | BinaryIO) -> None:
    if not isinstance(target, Path):
        pickle.dump(obj, target, protocol=pickle.HIGHEST_PROTOCOL)
        return
    with target.open("wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)


add_list_command(app, STORE)


@app.command(
    help="Write model NAME to a file (.joblib, .pkl or .json).",
    epilog=examples("om models get forecast@production --output forecast.joblib"),
)
def get(
    name: NameArgument,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="FILE.joblib, FILE.pkl or FILE.json; '-' writes to stdout (in the format "
            "of its kind unless --format says otherwise).",
            dir_okay=False,
            show_default=False,
        ),
    ],
    fmt: ModelFormatOption = None,
    bucket: BucketOption = None,
) -> None:
    if output != STDOUT:
        fmt = model_format(output, fmt)
    repo = repository(STORE, bucket)
    meta = repo.metadata(name)
    if output == STDOUT:
        fmt = _stdout_format(fmt, meta.kind)
    with busy(f"reading {name}", meta.size) as status:
        model = repo.get(name)
        status.update(f"writing {output}")
        save_model(model, output, fmt)
    if output == STDOUT:
        print_note(f"wrote {STORE} {name!r} ({meta.kind}) to stdout as {fmt}")
    else:
        print_done(f"wrote {STORE} {name!r} ({meta.kind}) to {output}")


def _stdout_format(given: str | None, kind: str) -> str:
    """The format of ``--output -``: ``--format``, else the one that fits ``kind``."""
    fmt = given.lower() if given else _KIND_FORMATS.get(kind)
    if fmt is None:
        raise typer.BadParameter(
            f"pass --format ({', '.join(FORMATS)}) to write a {kind} model to stdout",
            param_hint="--format",
        )
    if fmt not in FORMATS:
        raise typer.BadParameter(
            f"{fmt!r} is not one of {', '.join(FORMATS)}", param_hint="--format"
        )
    return fmt


@app.command(
    help="Store the model in FILE as NAME. Loading joblib/pickle files runs code: pass --pickle.",
    epilog=examples(
        "om models put forecast.joblib forecast --pickle",
        "om models put thing.pkl thing --pickle --kind python.pickle",
        "om models put params.json params",
    ),
)
def put(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="A .joblib, .pkl or .json file.",
            exists=True,
            dir_okay=False,
            readable=True,
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Argument(help="Name to store it under.", show_default=False)],
    allow_pickle: Annotated[
        bool,
        typer.Option(
            "--pickle", help="I trust FILE: loading joblib/pickle runs any code it contains."
        ),
    ] = False,
    tags: TagOption = None,
    attributes: AttributeOption = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            "-k",
            help="Force a kind, e.g. sklearn.joblib or python.pickle.",
            show_default=False,
        ),
    ] = None,
    fmt: ModelFormatOption = None,
    bucket: BucketOption = None,
) -> None:
    fmt = model_format(file, fmt)
    if fmt in CODE_FORMATS and not allow_pickle:
        ctx.fail(
            f"loading {file.name!r} ({fmt}) runs any code it contains; pass --pickle if you "
            "trust the file"
        )
    repo = repository(STORE, bucket)
    check_name(name)
    for tag in tags or []:
        check_tag(tag)
    attrs = parse_attributes(attributes or [])
    with busy(f"loading {file}", file.stat().st_size) as status, flags_in_errors("--kind"):
        model = load_model(file, fmt)
        status.update(f"storing {name}")
        meta = repo.put(model, name, attrs or None, kind=kind, tag=tags or None)
    print_done(
        f"stored {STORE} {meta.name!r} in bucket {meta.bucket!r} "
        f"({meta.kind}, revision {meta.revision[:12]})"
    )


add_object_commands(app, STORE)
