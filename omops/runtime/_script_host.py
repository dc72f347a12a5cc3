"""Runs a script package's function inside its environment (``python -m`` this module).

Started by :mod:`omops.runtime.scripts` with the environment's Python, never
imported by the worker itself. Two modes:

``run``
    Read one request (a JSON line) from stdin, run it, exit.
``serve [dialect [entry]]``
    A warm host: import omops, its data path (pandas, Arrow), the catalog's
    database driver and the script's module once, then for each request line fork a child
    that runs it, and answer ``{"status": exit status}`` on stdout as soon as
    the child wrote its result. Each run gets a fresh process (a copy of the
    warm one, as if it had just imported them), so runs do not share state;
    only the cost of starting Python and importing is saved. A child ends like
    multiprocessing's forked children: its threads are waited for and atexit
    handlers run, but modules are not torn down.
    Exits when stdin closes (the worker went away) or after
    :data:`IDLE_SECONDS` without a request.

A request: ``{"entry": "module:function", "kwargs": {...}, "omega":
{"catalog", "blobs", "bucket", "broker", "home"}, "result": path, "output":
path}``. The run's stdout and stderr go to ``output``; ``{"ok": true,
"result": ...}`` or ``{"ok": false, "error": {"type", "message",
"traceback"}}`` is written to ``result``.
"""

from __future__ import annotations

import importlib
import os
import select
import sys
import traceback
from functools import partial
from typing import Any

__all__ = ["IDLE_SECONDS", "main", "run_request"]

#: A warm host with no request for this long exits.
IDLE_SECONDS = 600.0
#: What reading and writing datasets imports: a warm host imports it before forking.
_DATA_MODULES = ("numpy", "pandas", "pyarrow", "pyarrow.parquet", "omops.plugins.pandas")
_SETTINGS = {"catalog": "OMOPS_CATALOG", "blobs": "OMOPS_BLOBS", "bucket": "OMOPS_BUCKET"}


def _redirect(path: str) -> None:
    """Send this process's stdout and stderr (the file descriptors) to ``path``."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _configure(omega: dict[str, Any]) -> None:
    """``import omops as om; om.datasets`` in the script: the same instance as its ``om``."""
    for key, variable in _SETTINGS.items():
        os.environ[variable] = str(omega[key])
    os.environ["OMOPS_HOME"] = str(omega["home"])
    if omega.get("broker"):
        os.environ["OMOPS_BROKER"] = omega["broker"]
    else:
        os.environ.pop("OMOPS_BROKER", None)


def _function(entry: str) -> Any:
    module_name, _, attribute = entry.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in (attribute or "run").split("."):
        if not hasattr(target, part):
            raise AttributeError(
                f"module {module_name!r} has no {attribute or 'run'!r}: a script package "
                "defines run(om, **kwargs) (or names its function with an omops.scripts "
                "entry point)"
            )
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{entry} is a {type(target).__name__}, not a function")
    return target


def _error(exc: BaseException) -> dict[str, str]:
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # the script's frames, not this module's
    if isinstance(exc, SystemExit):
        message = f"the script called sys.exit({exc.code!r}) instead of returning"
    else:
        message = str(exc)
    return {
        "type": type(exc).__name__,
        "message": message,
        "traceback": "".join(traceback.format_exception(type(exc), exc, tb))[-8000:],
    }


def _outcome(request: dict[str, Any]) -> dict[str, Any]:
    omega = request["omega"]
    _configure(omega)
    om = None
    try:
        from omops.omega import Omega
        from omops.runtime.serialize import to_json

        om = Omega(
            catalog=omega["catalog"],
            blobs=omega["blobs"],
            broker=omega.get("broker") or "",
            bucket=omega["bucket"],
            home=omega["home"],
        )
        value = _function(request["entry"])(om, **request["kwargs"])
        return {"ok": True, "result": to_json(value)}
    except BaseException as exc:  # the script's failure is the outcome, whatever it is
        return {"ok": False, "error": _error(exc)}
    finally:
        if om is not None:
            try:
                om.close()  # writes the tracking events the script queued
            except Exception:  # noqa: S110 - the outcome is known; closing must not hide it
                pass


def run_request(request: dict[str, Any], done: int | None = None) -> int:
    """Run one request; its outcome goes to its result file. Returns the exit status.

    ``done``: a pipe to the warm host, told as soon as the result is written,
    so that the caller gets it while this process exits (finalizing an
    interpreter that imported pandas takes ~0.4 s).
    """
    import orjson

    _redirect(request["output"])
    outcome = _outcome(request)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        data = orjson.dumps(outcome)
    except TypeError as exc:  # to_json let something through: still say what happened
        data = orjson.dumps({"ok": False, "error": {"type": "InvalidData", "message": str(exc)}})
    tmp = f"{request['result']}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, request["result"])  # whole or not at all
    if done is not None:
        os.write(done, b"1")
        os.close(done)
    return 0


def _warm(dialect: str | None, entry: str | None) -> None:
    """Import what runs need, once, before forking: omops, its data path, the script.

    Each import here is only a head start: what fails is imported (and its
    error reported) by the run that needs it.
    """
    import orjson  # noqa: F401

    import omops.omega  # noqa: F401
    import omops.runtime.serialize  # noqa: F401

    warmers = [  # om.datasets: pandas and Arrow (imported lazily by omops itself)
        *(partial(importlib.import_module, m) for m in _DATA_MODULES),
        partial(importlib.import_module, (entry or "").partition(":")[0]),  # the script itself
    ]
    if dialect:

        def catalog_driver() -> None:
            from sqlalchemy.engine import make_url

            make_url(f"{dialect}://").get_dialect().import_dbapi()

        warmers.append(catalog_driver)
    for warm in warmers:
        try:
            warm()
        except BaseException:  # noqa: S110 - a head start only (see above)
            pass


def _answer(message: dict[str, Any]) -> None:
    import orjson

    os.write(1, orjson.dumps(message) + b"\n")


class _Children:
    """The runs a warm host has forked and not answered yet, by their ``done`` pipe."""

    def __init__(self) -> None:
        self.running: dict[int, tuple[Any, int]] = {}  # done fd -> (request id, pid)
        self.exited: dict[int, int] = {}  # pid -> exit status, of children reaped early

    def start(self, request: dict[str, Any]) -> None:
        done_read, done_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            for fd in (done_read, *self.running):
                os.close(fd)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
            _exit_quickly(run_request(request, done_write))
        os.close(done_write)
        self.running[done_read] = (request.get("id"), pid)

    def finish(self, fd: int) -> None:
        """Answer for the run whose ``done`` pipe is readable."""
        request_id, pid = self.running.pop(fd)
        told = os.read(fd, 1)  # not to EOF: a process the script started may hold the pipe
        os.close(fd)
        if told:  # the result is written; the child finishes exiting on its own
            _answer({"id": request_id, "status": 0})
            return
        status = self.exited.pop(pid, None)  # it ended before writing one
        if status is None:
            try:
                status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            except ChildProcessError:
                status = -1
        _answer({"id": request_id, "status": status})

    def reap(self) -> None:
        """Collect the children that finished exiting (no zombies)."""
        waited = {pid for _, pid in self.running.values()}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in waited:  # not answered yet: its pipe says whether it wrote a result
                self.exited[pid] = os.waitstatus_to_exitcode(status)


def serve(dialect: str | None = None, entry: str | None = None) -> int:
    """The warm host's loop (see the module docstring).

    Requests are read from fd 0 unbuffered, so that a forked child finds
    nothing read ahead; several runs may be in flight at once.
    """
    import orjson

    _warm(dialect, entry)
    _answer({"ready": True})
    children = _Children()
    pending = b""
    while True:
        timeout = None if children.running else IDLE_SECONDS
        ready, _, _ = select.select([0, *children.running], [], [], timeout)
        if not ready:
            return 0  # idle for long: the worker starts another host when it needs one
        for fd in ready:
            if fd != 0:
                children.finish(fd)
                continue
            chunk = os.read(0, 1 << 16)
            if not chunk:
                return 0  # the worker went away: running children end on their own
            pending += chunk
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                children.start(orjson.loads(line))
        children.reap()


def _exit_quickly(code: int) -> None:
    """End a run as multiprocessing ends its forked children.

    Threads the script started are waited for and atexit handlers run (the
    script's ``om`` was closed already), but the modules are not torn down:
    that takes ~0.4 s of CPU once pandas is imported, for nothing.
    """
    import atexit
    import threading

    try:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
        run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
        if run_exit_functions is not None:
            run_exit_functions()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    finally:
        os._exit(code)


def main(argv: list[str]) -> int:
    """``run`` or ``serve [dialect [entry]]``."""
    import orjson

    mode = argv[1] if len(argv) > 1 else ""
    if mode == "run":
        _exit_quickly(run_request(orjson.loads(sys.stdin.buffer.readline())))
    if mode == "serve":
        return serve(*(argv[2:4] or [None]))
    print(f"usage: {argv[0]} run|serve [dialect [entry]]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
