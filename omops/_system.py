"""Facts about this machine and process, for tracking: platform, packages, CPU, memory."""

from __future__ import annotations

import getpass
import os
import platform
import socket
import sys
import threading
from collections.abc import Callable
from functools import lru_cache
from importlib import metadata
from typing import Any

__all__ = ["Sampler", "node", "sample", "system_info", "user"]

_PACKAGES = (
    "omops",
    "numpy",
    "pandas",
    "pyarrow",
    "duckdb",
    "scikit-learn",
    "sqlalchemy",
    "celery",
    "fastapi",
)


@lru_cache(maxsize=1)
def node() -> str:
    return socket.gethostname()


@lru_cache(maxsize=1)
def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return str(os.getuid())


def system_info() -> dict[str, Any]:
    """Platform, Python and key package versions."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    uname = platform.uname()
    return {
        "platform": {
            "system": uname.system,
            "node": uname.node,
            "release": uname.release,
            "machine": uname.machine,
        },
        "python": {
            "version": platform.python_version(),
            "implementation": sys.implementation.name,
            "executable": sys.executable,
        },
        "packages": versions,
        "cpus": os.cpu_count(),
        "pid": os.getpid(),
    }


def sample(process: Any) -> dict[str, Any]:
    """CPU % and memory of ``process`` (a ``psutil.Process``; CPU since its previous
    sample) and of the machine."""
    import psutil

    with process.oneshot():
        memory = process.memory_info()
        return {
            "cpu_percent": process.cpu_percent(interval=None),
            "rss": memory.rss,
            "vms": memory.vms,
            "threads": process.num_threads(),
            "pid": process.pid,
            "system_cpu_percent": psutil.cpu_percent(interval=None),
            "system_memory_percent": psutil.virtual_memory().percent,
        }


class Sampler:
    """Calls ``emit(sample(process))`` every ``interval`` seconds in a daemon thread, and at stop."""

    def __init__(self, emit: Callable[[dict[str, Any]], None], interval: float = 1.0) -> None:
        self.emit = emit
        self.interval = max(float(interval), 0.01)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: Any = None  # this process's psutil handle: CPU % since its last call

    def start(self) -> Sampler:
        import psutil

        self._process = psutil.Process()
        sample(self._process)  # primes psutil's CPU counters
        self._thread = threading.Thread(target=self._loop, name="omops-profiler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.emit(sample(self._process))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.emit(sample(self._process))
