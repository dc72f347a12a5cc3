"""Script runs: a stored package's ``run(om, **kwargs)``, in its own environment.

:func:`run_script` is the task ``omops.script``: whoever runs it (this
process with the local executor, a Celery worker) installs the script's
wheel into a virtual environment cached on that machine (see
:mod:`omops.runtime._envs`) and calls the package's function there, in a
process of the environment's Python (see :mod:`omops.runtime._script_host`).
The function gets an Omega configured like the task's: the same catalog,
blobs, bucket and broker.

Where ``fork`` exists, the process that runs scripts keeps a *warm host* per
environment (at most :data:`WARM_HOSTS` per Omega, in its context): a Python
process of that environment that imported omops once and forks a fresh child
per run (several at once if asked). A run then costs a fork instead of
starting Python and importing omops, pandas and the script (about a second).
Without ``fork``, or when a host cannot start, a run gets a fresh process.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import select
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from omops.errors import InvalidData, InvalidName, TaskFailed
from omops.names import parse_reference
from omops.runtime._envs import EnvUse, fingerprint, using_env

if TYPE_CHECKING:
    from omops.omega import Omega

__all__ = [
    "HOST_MODULE",
    "OUTPUT_TAIL",
    "WARM_HOSTS",
    "ScriptHosts",
    "run_script",
    "script_arguments",
    "script_revision",
]

#: The module the environment's Python runs.
HOST_MODULE = "omops.runtime._script_host"
#: Warm hosts kept per Omega (each an idle Python process of ~40 MB).
WARM_HOSTS = 2
#: Seconds a warm host may take to start before a fresh process is used instead.
HOST_START_TIMEOUT = 60.0
#: Characters of a run's output (stdout and stderr) kept in its result.
OUTPUT_TAIL = 10_000
#: Variables of the worker's environment a script's Python does not get.
_NOT_PASSED = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH")


def _child_environment() -> dict[str, str]:
    # The environment's own packages come first; the worker's path is in its .pth.
    return {k: v for k, v in os.environ.items() if k not in _NOT_PASSED}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ScriptHost:
    """A warm Python process of one environment that forks a child per run.

    Runs may overlap: each request carries an id, and a reader thread hands
    each answer to the run waiting for it.
    """

    def __init__(self, use: EnvUse, dialect: str, entry: str) -> None:
        self.use = use
        self._lock = threading.Lock()
        self._waiting: dict[int, Future] = {}
        self._ids = itertools.count(1)
        self._gone = False
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - the environment's Python, our module
                [str(use.env.python), "-P", "-m", HOST_MODULE, "serve", dialect, entry],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=_child_environment(),
            )
        except OSError:
            use.close()
            raise
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], HOST_START_TIMEOUT)
        if not ready or not self.proc.stdout.readline():
            self.close()
            raise OSError("the warm host did not start")
        self._reader = threading.Thread(
            target=self._read_answers, name="omops-script-host", daemon=True
        )
        self._reader.start()

    @property
    def alive(self) -> bool:
        return not self._gone and self.proc.poll() is None

    def _read_answers(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            answer = orjson.loads(line)
            with self._lock:
                future = self._waiting.pop(answer.get("id"), None)
            if future is not None:
                future.set_result(int(answer["status"]))
        with self._lock:  # the host exited: the runs it had are lost
            self._gone = True
            lost, self._waiting = list(self._waiting.values()), {}
        for future in lost:
            future.set_result(-1)

    def run(self, request: Mapping[str, Any]) -> int | None:
        """Run a request; its child's exit status (0: a result was written), -1 if the
        host died during it. None if the host was gone before it was sent (nothing ran)."""
        future: Future = Future()
        with self._lock:
            if not self.alive:
                return None
            request_id = next(self._ids)
            self._waiting[request_id] = future
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(orjson.dumps({**request, "id": request_id}) + b"\n")
                self.proc.stdin.flush()
            except OSError:
                self._waiting.pop(request_id, None)
                return None
        return future.result()

    def close(self) -> None:
        """Stop the host (it exits when its stdin closes) and release the environment."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            reader = getattr(self, "_reader", None)
            if reader is not None:
                reader.join(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.use.close()


class ScriptHosts:
    """The warm hosts of one Omega (a part of its context), least recently used out."""

    def __init__(self, size: int = WARM_HOSTS) -> None:
        self.size = size
        self._hosts: OrderedDict[str, ScriptHost] = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def host(self, key: str, start: Any) -> ScriptHost | None:
        """The live host of environment ``key``, started by ``start()`` if needed."""
        if not hasattr(os, "fork") or self.size <= 0:
            return None
        dropped: list[ScriptHost] = []
        with self._lock:
            if self._pid != os.getpid():  # a forked copy of the process: not our children
                self._hosts, self._pid = OrderedDict(), os.getpid()
            found = self._hosts.get(key)
            if found is not None and not found.alive:
                dropped.append(self._hosts.pop(key))
                found = None
            if found is None:
                try:
                    found = self._hosts[key] = start()
                except OSError:
                    found = None
            if found is not None:
                self._hosts.move_to_end(key)
            while len(self._hosts) > self.size:
                dropped.append(self._hosts.popitem(last=False)[1])
        for host in dropped:
            host.close()
        return found

    def close(self) -> None:
        with self._lock:
            hosts, self._hosts = list(self._hosts.values()), OrderedDict()
            mine = self._pid == os.getpid()
        for host in hosts if mine else ():
            host.close()


def _hosts(om: Omega) -> ScriptHosts:
    return om.context.part("scripts", ScriptHosts)


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(fh.tell() - OUTPUT_TAIL * 4, 0))
            return fh.read().decode("utf-8", errors="replace")[-OUTPUT_TAIL:]
    except OSError:
        return ""


def script_arguments(kwargs: Any) -> dict[str, Any]:
    """``kwargs`` as they travel to a script: a dict of JSON values (InvalidData otherwise)."""
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise InvalidData(
            f"script arguments must be a dict of keyword arguments, got {type(kwargs).__name__}"
        )
    try:
        return orjson.loads(orjson.dumps(dict(kwargs), option=orjson.OPT_SERIALIZE_NUMPY))
    except TypeError as exc:
        raise InvalidData(
            f"script arguments travel as JSON: {exc}; pass numbers, text, lists, dicts, "
            "or the name of a dataset to read"
        ) from None


def script_revision(om: Omega, name: str) -> Any:
    """The stored revision of script ``name`` (``name@tag``): a python.package."""
    ref = parse_reference(name)
    if ref.columns is not None:
        raise InvalidName(f"a script reference takes no column selector: {name!r}")
    rev = om.catalog.lookup(om.bucket, "scripts", ref.name, ref.ref)
    if rev.kind != "python.package":
        raise InvalidData(
            f"scripts {ref.name!r} is a {rev.kind}, not a package; put a folder with "
            "pyproject.toml or setup.py, an sdist or a wheel to run it"
        )
    return rev


def run_script(om: Omega, name: str, kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run stored script ``name``: its package's ``run(om, **kwargs)`` in its environment.

    Parameters
    ----------
    om : Omega
        Where the script is stored; the script's ``om`` is configured the same.
    name : str
        The script, ``name@tag`` for a revision.
    kwargs : dict, optional
        Keyword arguments (JSON values).

    Returns
    -------
    dict
        ``script``, ``revision``, ``package``, ``version``, ``args``,
        ``result`` (what ``run`` returned, as JSON), ``started``, ``ended``
        (ISO, UTC), ``duration`` (seconds), ``output`` (the end of what it
        printed) and ``env`` (``path``, ``created``: whether this run
        installed it, ``install_seconds``, ``warm``: whether a warm host ran it).

    Raises
    ------
    TaskFailed
        The script raised: the exception's type, message and traceback.
    InvalidData
        Its environment could not be installed (pip's output says why).
    """
    kwargs = script_arguments(kwargs or {})
    rev = script_revision(om, name)
    meta = rev.kind_meta
    ref = parse_reference(name)
    key = f"{meta['sha256'][:16]}-{fingerprint()}"
    folder = Path(om.settings.home) / "envs"

    def wheel() -> Any:
        return om.scripts.get(f"{ref.name}@{rev.revision}")

    started, clock = _now(), time.perf_counter()
    with (
        using_env(folder, key, wheel) as use,
        tempfile.TemporaryDirectory(prefix="omops-run-") as tmp,
    ):
        result_path, output_path = Path(tmp) / "result.json", Path(tmp) / "output.log"
        request = {
            "entry": meta["entry"],
            "kwargs": kwargs,
            "omega": {
                "catalog": om.catalog.url,
                "blobs": om.blobs.url,
                "bucket": om.bucket,
                "broker": om.broker or "",
                "home": str(om.settings.home),
            },
            "result": str(result_path),
            "output": str(output_path),
        }
        dialect = om.catalog.url.partition(":")[0].partition("+")[0]
        host = _hosts(om).host(
            key, lambda: ScriptHost(using_env(folder, key, wheel), dialect, meta["entry"])
        )
        status = host.run(request) if host is not None else None
        warm = status is not None
        if status is None:
            status = _run_cold(use, request, output_path)
        outcome = orjson.loads(result_path.read_bytes()) if result_path.is_file() else None
        output = _tail(output_path)
    ended = _now()
    if outcome is None:
        raise TaskFailed(
            "ScriptDied",
            f"script {ref.name!r} ended (exit status {status}) without a result; "
            f"its output ends with: {output[-2000:] or '(nothing)'}",
            output,
        )
    if not outcome["ok"]:
        error = outcome["error"]
        raise TaskFailed(error["type"], error["message"], error.get("traceback", ""))
    env = use.env
    return {
        "script": ref.name,
        "revision": rev.revision,
        "package": meta.get("package"),
        "version": meta.get("version"),
        "args": kwargs,
        "result": outcome["result"],
        "started": started.isoformat(),
        "ended": ended.isoformat(),
        "duration": time.perf_counter() - clock,
        "output": output,
        "env": {
            "path": str(env.path),
            "created": env.created,
            "install_seconds": env.install_seconds,
            "warm": warm,
        },
    }


def _run_cold(use: EnvUse, request: Mapping[str, Any], output_path: Path) -> int:
    """Run a request in a fresh process of the environment's Python."""
    with open(output_path, "ab") as out:
        done = subprocess.run(  # noqa: S603 - the environment's Python, our module
            [str(use.env.python), "-P", "-m", HOST_MODULE, "run"],
            input=orjson.dumps(request) + b"\n",
            stdout=out,
            stderr=out,
            env=_child_environment(),
        )
    return done.returncode
