"""``om scripts``: store Python packages as scripts, run their ``run(om, **kwargs)``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import omops
from omops.cli._common import BucketOption, examples, print_done, print_json, repository, stderr
from omops.cli._datasets import AttributeOption, TagOption
from omops.cli._parsing import parse_attributes, parse_value
from omops.cli._store import add_list_command, add_object_commands
from omops.names import check_name, check_tag

__all__ = ["app"]

STORE = "scripts"

app = typer.Typer(
    name=STORE,
    help="Store Python packages as scripts and run their run(om, **kwargs) here or on workers.",
    no_args_is_help=True,
)


@app.command(
    help="Build the package at PATH into a wheel and store it as script NAME.",
    epilog=examples(
        "om scripts put ./path/to/myscript/setup.py myscript",
        "om scripts put ./mypkg myscript         # a folder with pyproject.toml or setup.py",
        "om scripts put dist/mypkg-1.0.tar.gz myscript   # an sdist, or a .whl",
    ),
)
def put(
    path: Annotated[
        Path,
        typer.Argument(
            help="A folder with pyproject.toml or setup.py, that setup.py, an sdist or a wheel.",
            exists=True,
            show_default=False,
        ),
    ],
    name: Annotated[str, typer.Argument(help="Name to store it under.", show_default=False)],
    tags: TagOption = None,
    attributes: AttributeOption = None,
    bucket: BucketOption = None,
) -> None:
    repo = repository(STORE, bucket)
    check_name(name)
    for tag in tags or []:
        check_tag(tag)
    attrs = parse_attributes(attributes or [])
    with stderr().status(f"building and storing {path}"):
        meta = repo.put(path, name, attrs or None, kind="python.package", tag=tags or None)
    print_done(
        f"stored {STORE} {meta.name!r} in bucket {meta.bucket!r} ({meta.details['package']} "
        f"{meta.details['version']}, {meta.details['wheel']}, revision {meta.revision[:12]})"
    )


add_list_command(app, STORE)


@app.command(
    help="Run script NAME: its package's run(om, **kwargs); prints the run's record as JSON.",
    epilog=examples(
        "om scripts run myscript -p n=3 -p region=EU",
        "om scripts run myscript@v1 --local      # here, even if a broker is set",
    ),
)
def run(
    name: Annotated[
        str,
        typer.Argument(
            help="Script name; NAME@TAG or NAME^ (the one before latest) for a revision."
        ),
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="Keyword argument KEY=VALUE (JSON value); repeat for several."
        ),
    ] = None,
    label: Annotated[str, typer.Option("--label", "-l", help="Queue to run on.")] = "default",
    local: Annotated[
        bool, typer.Option("--local", help="Run here even if a broker is set.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 3600.0,
    bucket: BucketOption = None,
) -> None:
    om = omops.get_omega()
    if bucket is not None:
        om = om[bucket]
    runtime = om.runtime.mode(local=local)
    if not local:  # --local runs here: a queue label means nothing then
        runtime = runtime.require(label)
    kwargs = {k: parse_value(v) for k, v in parse_attributes(param or []).items()}
    with stderr().status(f"running script {name} (the first run installs its environment)"):
        record = runtime.script(name).run(**kwargs).get(timeout=timeout)
    print_json(record)


add_object_commands(app, STORE)
