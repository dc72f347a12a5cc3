"""``om runtime``: start workers, see them, run model actions from the shell."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.table import Table

import omops
from omops.cli._common import CliError, examples, print_json, print_note, print_table
from omops.cli._parsing import parse_attributes, parse_value
from omops.names import check_tag

__all__ = ["LIST_VARIABLES", "app"]

#: Options whose variable is read by the command itself (a setting, or a
#: comma-separated list added to what the command line gives); every other
#: option of ``worker`` and ``serve`` names its ``envvar``.
LIST_VARIABLES = {
    ("worker", "label"): "OMOPS_LABEL",
    ("serve", "allowed_host"): "OMOPS_SERVER_ALLOWED_HOSTS",
    ("serve", "cors_origin"): "OMOPS_SERVER_CORS_ORIGINS",
}


def _actions() -> tuple[str, ...]:
    from omops.runtime.actions import ACTIONS  # the one table of actions

    return tuple(ACTIONS)


app = typer.Typer(
    name="runtime",
    help="Run model actions locally or on Celery workers; start and inspect workers.",
    no_args_is_help=True,
)


@app.command(
    epilog=examples(
        "  OMOPS_BROKER=amqp://guest:guest@localhost// om runtime worker",
        "  om runtime worker --label gpu --concurrency 1",
    )
)
def worker(
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            "-l",
            help="Queue(s) to consume; repeat for several. Default: OMOPS_LABEL, else 'default'.",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            envvar="OMOPS_WORKER_CONCURRENCY",
            help="Worker processes (default: number of CPUs).",
        ),
    ] = None,
    loglevel: Annotated[
        str, typer.Option(envvar="OMOPS_WORKER_LOGLEVEL", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
) -> None:
    """Start a Celery worker for the configured broker (OMOPS_BROKER)."""
    om = omops.get_omega()
    if not om.broker:
        raise CliError(
            "no broker configured: set OMOPS_BROKER (e.g. amqp://guest:guest@localhost//) "
            "to start a worker; without one, tasks run locally and need no worker"
        )
    from omops.runtime.celery_executor import run_worker

    labels = [check_tag(x) for x in (label or [om.settings.label])]
    run_worker(om.broker, labels=labels, concurrency=concurrency, loglevel=loglevel.upper())


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the executor, and each worker with its host, queues and running tasks."""
    state = omops.get_omega().runtime.status()
    if as_json:
        print_json(state)
        return
    if state["executor"] == "local":
        print_note("executor: local (no OMOPS_BROKER): tasks run in the calling process")
        return
    table = Table(
        "worker", "host", "queues", "concurrency", "running", title=f"broker {state['broker']}"
    )
    for name, info in state["workers"].items():
        running = info.get("running") or []
        tasks = "\n".join(f"{t['task']} {t['id'][:8]}" for t in running) or "-"
        table.add_row(
            name,
            str(info.get("host") or "?"),
            ", ".join(info["queues"]),
            str(info["concurrency"]),
            tasks,
        )
    print_table(table)
    if not state["workers"]:
        print_note("no worker answered; start one with `om runtime worker`")


@app.command(
    epilog=examples(
        "  om runtime model forecast fit 'stats[^sales]' 'stats[sales]'",
        "  om runtime model forecast predict 'stats[^sales]' --rname preds",
        "  om runtime model forecast gridsearch X Y --param 'parameters={\"C\": [0.1, 1]}'",
    )
)
def model(
    name: Annotated[
        str,
        typer.Argument(
            help="Model name; NAME@TAG or NAME^ (the one before latest) for a revision."
        ),
    ],
    action: Annotated[str, typer.Argument(help="fit, predict, predict_proba, score, ...")],
    x: Annotated[str | None, typer.Argument(metavar="[X]", help="Input dataset reference.")] = None,
    y: Annotated[
        str | None, typer.Argument(metavar="[Y]", help="Target dataset reference.")
    ] = None,
    rname: Annotated[
        str | None, typer.Option("--rname", help="Store the result as this dataset.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="Keyword argument KEY=VALUE (JSON value); repeat for several."
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            "--label", "-l", help="Queue to run on (default: OMOPS_LABEL, else 'default')."
        ),
    ] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Run here even if a broker is set.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the result.")] = 3600.0,
) -> None:
    """Run a model action and print its result as JSON (actions: fit, partial_fit, predict,
    predict_proba, decision_function, transform, fit_transform, score, gridsearch)."""
    from omops.runtime.actions import ACTIONS

    spec = ACTIONS.get(action)
    if spec is None:
        raise typer.BadParameter(
            f"{action!r} is not one of {', '.join(_actions())}", param_hint="ACTION"
        )
    if rname and spec.result not in ("values",):
        raise typer.BadParameter(f"--rname does not apply to {action}", param_hint="--rname")
    runtime = omops.get_omega().runtime.mode(local=local)
    if label and not local:  # --local runs here: a queue label means nothing then
        runtime = runtime.require(label)
    kwargs = {k: parse_value(v) for k, v in parse_attributes(param or []).items()}
    call = runtime.model(name).call(action, x, y, result_name=rname, **kwargs)
    print_json(runtime.submit(call).get(timeout=timeout))


def _is_loopback(host: str) -> bool:
    from omops.server._guard import is_loopback

    return is_loopback(host)


def _needs_keys(host: str, *, require_keys: bool | None, insecure: bool) -> bool:
    """Keys unless on loopback or --insecure; an explicit --(no-)require-keys wins."""
    if require_keys is not None:
        return require_keys
    return not (_is_loopback(host) or insecure)


def _bind_address(host: str) -> str:
    """The address for uvicorn: an IPv6 address without its URL brackets."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _url_host(host: str) -> str:
    """The host as written in a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def _environment(values: list[str], variable: str) -> str:
    """The comma-separated list of a variable plus the values given on the command line."""
    import os

    present = [v.strip() for v in os.environ.get(variable, "").split(",") if v.strip()]
    return ",".join(dict.fromkeys(present + [v.strip() for v in values if v.strip()]))


@app.command(
    epilog=examples(
        "  om runtime serve                       # dashboard http://127.0.0.1:8000/, API docs /docs",
        "  om runtime serve --host ::1            # http://[::1]:8000/docs",
        "  om runtime serve --host 0.0.0.0 --workers 4   # needs API keys: om auth create-key",
        "  om runtime serve --allowed-host models.internal --cors-origin https://app.example.com",
        "  om runtime serve --compat omegaml      # answer omega-ml's REST clients",
    )
)
def serve(
    host: Annotated[
        str,
        typer.Option(
            envvar="OMOPS_SERVER_HOST",
            help="Address to bind (IPv6 as ::1 or [::1]); other than loopback needs API keys.",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, envvar="OMOPS_SERVER_PORT")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="OMOPS_SERVER_WORKERS",
            help="Server processes (uvicorn workers) sharing the port; each answers any request.",
        ),
    ] = 1,
    require_keys: Annotated[
        bool | None,
        typer.Option(
            "--require-keys/--no-require-keys",
            envvar="OMOPS_SERVER_REQUIRE_KEYS",
            help="Demand API keys (default: only when not bound to loopback).",
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            envvar="OMOPS_SERVER_INSECURE",
            help="Serve WITHOUT keys to any client and Host name (anyone reaching it may read "
            "and write).",
        ),
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A Host name clients may use besides localhost, 127.0.0.1 and [::1]; repeat "
            "for several (also OMOPS_SERVER_ALLOWED_HOSTS, comma-separated).",
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            help="A web origin (https://app.example.com) whose pages may call the API, writes "
            "included; repeat for several (also OMOPS_SERVER_CORS_ORIGINS).",
        ),
    ] = None,
    max_body: Annotated[
        int,
        typer.Option(
            envvar="OMOPS_SERVER_MAX_BODY", help="Largest request body in bytes (413 above)."
        ),
    ] = 32 * 1024 * 1024,
    arrays: Annotated[
        bool,
        typer.Option(
            "--arrays/--no-arrays",
            envvar="OMOPS_SERVER_ARRAYS",
            help="Hand scikit-learn models small numeric inputs as NumPy arrays "
            "(checked per model revision; ~1 ms less per request).",
        ),
    ] = True,
    max_rows: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="OMOPS_SERVER_MAX_ROWS",
            help="Most rows one dataset read answers with (413 above: use limit/offset).",
        ),
    ] = 10_000_000,
    max_columns: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="OMOPS_SERVER_MAX_COLUMNS",
            help="Most columns one dataset body may have (413 above).",
        ),
    ] = 10_000,
    compat: Annotated[
        str,
        typer.Option(
            envvar="OMOPS_SERVER_COMPAT",
            help="Answer in another system's REST shapes: 'omegaml' for omega-ml's clients "
            "(their request forms are accepted either way); 'native' (omops') by default.",
        ),
    ] = "native",
    log_level: Annotated[
        str, typer.Option(envvar="OMOPS_SERVER_LOG_LEVEL", help="uvicorn log level.")
    ] = "warning",
) -> None:
    """Serve every stored model, dataset and task over REST (FastAPI + uvicorn)."""

    import uvicorn

    from omops.errors import ConfigError
    from omops.server._guard import check_cors_origins, check_host_names
    from omops.server.compat import check_profile

    try:
        profile = check_profile(compat)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    om = omops.get_omega()
    address = _bind_address(host)
    loopback = _is_loopback(address)
    keys = _needs_keys(address, require_keys=require_keys, insecure=insecure)
    if not keys and not loopback and not insecure:
        raise CliError(
            f"serving {host} without API keys exposes every object: pass --insecure to do it "
            "anyway, or drop --no-require-keys"
        )
    if keys and not om.catalog.api_keys.any_active():
        raise CliError(
            f"serving {host} with API keys needs one, and none exists: create one with "
            "`om auth create-key --bucket default --role read` (or pass --insecure to serve "
            "without authentication)"
        )
    hosts = _environment(allowed_host or [], "OMOPS_SERVER_ALLOWED_HOSTS")
    origins = _environment(cors_origin or [], "OMOPS_SERVER_CORS_ORIGINS")
    try:  # refuse bad names here, not in each worker
        check_host_names(hosts.split(","))
        check_cors_origins(origins.split(","))
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    settings = {
        "OMOPS_SERVER_REQUIRE_KEYS": "1" if keys else "0",
        "OMOPS_SERVER_INSECURE": "1" if insecure and not keys else "0",
        "OMOPS_SERVER_ALLOWED_HOSTS": hosts,
        "OMOPS_SERVER_CORS_ORIGINS": origins,
        "OMOPS_SERVER_MAX_BODY": str(max_body),
        "OMOPS_SERVER_ARRAYS": "1" if arrays else "0",
        "OMOPS_SERVER_MAX_ROWS": str(max_rows),
        "OMOPS_SERVER_MAX_COLUMNS": str(max_columns),
        "OMOPS_SERVER_COMPAT": profile,
    }
    print_note(
        f"serving {om.catalog!r} on http://{_url_host(address)}:{port} (dashboard at /, "
        f"API docs at /docs, {'API keys required' if keys else 'no API keys'}"
        f"{', omega-ml REST shapes' if profile == 'omegaml' else ''})"
    )
    if insecure and not keys:
        print_note(f"--insecure: anyone who reaches {host}:{port} may read and write every object")
    # uvicorn's workers build the app from the environment (app_from_environment),
    # so the settings travel there; they are put back when the server stops.
    with _environ_set(settings):
        uvicorn.run(
            "omops.server.app:app_from_environment",
            factory=True,
            host=address,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=False,
        )


@contextmanager
def _environ_set(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set, restored on exit."""
    import os

    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@app.command(
    epilog=examples(
        "  om runtime scheduler                 # fires scheduled jobs until Ctrl-C",
        "  om runtime scheduler --once          # fire what is due now, then exit",
    )
)
def scheduler(
    interval: Annotated[
        float, typer.Option(min=0.05, help="Seconds between looks at the catalog.")
    ] = 5.0,
    once: Annotated[bool, typer.Option("--once", help="Fire what is due now and exit.")] = False,
) -> None:
    """Fire the scheduled job runs of every bucket (om jobs schedule); times are UTC.

    Any number of schedulers may share a catalog: each run fires once. Runs go
    to the configured broker's workers (the schedule's label), else run here.
    """
    import signal

    from omops.runtime.scheduler import Fired, Scheduler

    om = omops.get_omega()

    def report(fired: Fired) -> None:
        what = (
            f"job {fired.name!r} (bucket {fired.bucket!r}, due {fired.scheduled:%Y-%m-%d %H:%M:%S})"
        )
        if fired.error:
            print_note(f"could not send {what}: {fired.error}")
        else:
            print_note(
                f"fired {what} as task {fired.task}; next {fired.next_run:%Y-%m-%d %H:%M:%S}"
            )

    runner = Scheduler(om, interval=interval, on_fire=report)
    try:
        if once:
            runner.tick()
            return
        signal.signal(signal.SIGTERM, lambda *_: runner.stop())
        print_note(f"scheduler watching {om.catalog!r} (runs go to {om.runtime!r}); Ctrl-C stops")
        try:
            runner.run()
        except KeyboardInterrupt:
            runner.stop()
    finally:
        om.close()
