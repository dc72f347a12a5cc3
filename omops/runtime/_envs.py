"""Virtual environments for script packages, one per wheel, cached on the machine that runs them.

``$OMOPS_HOME/envs/<wheel sha256[:16]>-<interpreter fingerprint>/`` holds a
virtual environment with the script's wheel and its dependencies. It is made
on the first run of that wheel on this machine and reused by every later one.

* **Isolated from the worker.** The environment is a plain venv of the
  worker's Python. A ``.pth`` file in its site-packages appends the worker's
  own import path (its site-packages, ``PYTHONPATH`` entries), so the script
  can ``import omops`` and reuse what the worker has. pip installs into the
  environment only: a dependency the worker does not have, or has in another
  version, lands in the environment and shadows the worker's copy there,
  never in the worker. pip's own settings (``PIP_INDEX_URL``,
  ``PIP_FIND_LINKS``, ``pip.conf``) say where dependencies come from.
* **Concurrency-safe.** Two lock files per environment (``fcntl.flock``,
  released by the kernel when a process dies): ``<key>.install.lock``,
  held exclusively while installing, and ``<key>.use.lock``, held shared by
  every run and warm host using it. An environment is complete when its
  marker file ``.omops-env.json`` exists; the marker is written last, so a
  crashed install is never used: the next installer deletes it and starts over.
* **Bounded.** Beyond :data:`ENVS_KEPT` environments, the least recently used
  are deleted, each only when no process uses or installs it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from omops.errors import InvalidData, PluginError

__all__ = ["ENVS_KEPT", "INSTALL_TIMEOUT", "MARKER", "ScriptEnv", "fingerprint", "using_env"]

#: Environments kept per cache folder; the least recently used beyond go.
ENVS_KEPT = 16
#: Seconds pip may take to install a script and its dependencies.
INSTALL_TIMEOUT = 1800
#: Written last into a complete environment.
MARKER = ".omops-env.json"
#: Characters of pip's output kept in an error message.
OUTPUT_TAIL = 4000


@dataclass(frozen=True)
class ScriptEnv:
    """A ready environment.

    Attributes
    ----------
    path : Path
        Its folder.
    python : Path
        Its interpreter.
    created : bool
        Whether this call installed it (False: it was there already).
    install_seconds : float or None
        How long installing took, when this call installed it.
    """

    path: Path
    python: Path
    created: bool
    install_seconds: float | None = None


def _worker_paths() -> list[str]:
    """The worker's import path without the standard library: what the ``.pth`` adds."""
    stdlib = [os.path.realpath(sysconfig.get_path(name)) for name in ("stdlib", "platstdlib")]
    found: list[str] = []
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        real = os.path.realpath(entry)
        if any(real == s or real.startswith(s + os.sep) for s in stdlib) and (
            "site-packages" not in real
        ):
            continue
        if real not in found:
            found.append(real)
    return found


def fingerprint() -> str:
    """What an environment depends on besides the wheel: this interpreter and its path."""
    text = "\n".join([sys.version, sys.executable, *_worker_paths()])
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _python_of(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _site_packages(path: Path) -> Path:
    return Path(sysconfig.get_path("purelib", "venv", vars={"base": str(path)}))


def _flock(handle: IO[Any], mode: str, *, wait: bool = True) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        raise PluginError("running scripts needs a POSIX system (fcntl locks)") from None
    flag = {"shared": fcntl.LOCK_SH, "exclusive": fcntl.LOCK_EX}[mode]
    try:
        fcntl.flock(handle.fileno(), flag | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def _locked(path: Path, mode: str, *, wait: bool = True) -> Iterator[bool]:
    """Hold ``path``'s lock (``shared`` or ``exclusive``); yields False if not waiting and busy."""
    with open(path, "a+b") as handle:  # lock files stay: deleting them would race
        yield _flock(handle, mode, wait=wait)


class EnvUse:
    """A shared hold on an environment: while open, it is neither rebuilt nor pruned."""

    def __init__(self, handle: IO[Any], env: ScriptEnv) -> None:
        self._handle = handle
        self.env = env

    def close(self) -> None:
        self._handle.close()  # closing the file releases the lock

    def __enter__(self) -> EnvUse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def using_env(folder: Path, key: str, wheel: Any) -> EnvUse:
    """A shared hold on the ready environment ``key`` under ``folder``, installed if needed.

    Parameters
    ----------
    folder : Path
        The cache folder (``$OMOPS_HOME/envs``).
    key : str
        The environment's name: wheel hash and :func:`fingerprint`.
    wheel : callable
        Called without arguments only when installing: the
        :class:`~omops.plugins.package.Wheel` to install.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / key
    created, seconds = False, None
    while True:
        use = open(folder / f"{key}.use.lock", "a+b")  # noqa: SIM115 - handed to EnvUse
        try:
            _flock(use, "shared")
            if (path / MARKER).is_file():
                os.utime(path / MARKER)  # last used: pruning goes by this
                return EnvUse(use, ScriptEnv(path, _python_of(path), created, seconds))
        except BaseException:
            use.close()
            raise
        use.close()
        with _locked(folder / f"{key}.install.lock", "exclusive"):
            if not (path / MARKER).is_file():
                started = time.perf_counter()
                _install(path, wheel())
                created, seconds = True, time.perf_counter() - started
        if created:
            _prune(folder, keep=key)


def _install(path: Path, wheel: Any) -> None:
    """Make the environment at ``path`` (under the install lock): venv, .pth, pip, marker."""
    if path.exists():
        shutil.rmtree(path)  # a crashed install: start over
    try:
        venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt", clear=True).create(path)
        site = _site_packages(path)
        site.mkdir(parents=True, exist_ok=True)
        # Added after the environment's own site-packages, so its packages win; as site
        # dirs, so that the .pth files in them (editable installs) count as well.
        paths = ", ".join(repr(p) for p in _worker_paths())
        (site / "_omops_worker.pth").write_text(
            f"import site; list(map(site.addsitedir, ({paths},)))\n"
        )
        downloads = path / ".omops-wheel"
        downloads.mkdir()
        wheel_path = wheel.save(downloads)
        _pip(path, wheel_path)
        shutil.rmtree(downloads)
        marker = {
            "wheel": wheel.filename,
            "sha256": wheel.sha256,
            "python": sys.version.split()[0],
            "created": dt.datetime.now(dt.UTC).isoformat(),
        }
        (path / MARKER).write_bytes(orjson.dumps(marker))  # last: the environment is complete
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def _pip(path: Path, wheel_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(_python_of(path)),
        "install",
        "--no-input",
        "--disable-pip-version-check",
        "--no-warn-script-location",
        str(wheel_path),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_USER")}
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and pip, fixed arguments
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=INSTALL_TIMEOUT,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise InvalidData(
            f"installing {wheel_path.name} took over {INSTALL_TIMEOUT} s; check the worker's "
            "access to its package index"
        ) from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-OUTPUT_TAIL:]
        raise InvalidData(
            f"installing {wheel_path.name} and its dependencies failed (pip exit status "
            f"{done.returncode}); the worker's pip settings (PIP_INDEX_URL, PIP_FIND_LINKS, "
            f"pip.conf) say where dependencies come from. pip said:\n{output}"
        )


def _prune(folder: Path, keep: str) -> None:
    """Delete the least recently used environments beyond ENVS_KEPT that nobody holds."""
    found = []
    for path in folder.iterdir():
        if not path.is_dir() or path.name == keep:
            continue
        marker = path / MARKER
        found.append((marker.stat().st_mtime if marker.is_file() else 0.0, path))
    extra = len(found) + 1 - ENVS_KEPT
    for _, path in sorted(found)[: max(extra, 0)]:
        install = folder / f"{path.name}.install.lock"
        use = folder / f"{path.name}.use.lock"
        with (
            _locked(install, "exclusive", wait=False) as free,
            _locked(use, "exclusive", wait=False) as unused,
        ):
            if free and unused:
                (path / MARKER).unlink(missing_ok=True)  # first: never seen half-deleted
                shutil.rmtree(path, ignore_errors=True)
