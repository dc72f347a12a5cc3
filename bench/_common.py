"""What every bench prints about the machine it ran on."""

from __future__ import annotations

import importlib.metadata as md
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, str]:
    """Cores, CPU model and RAM, read from /proc (``unknown`` elsewhere)."""
    model, ram = "unknown", "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {"cores": str(os.cpu_count()), "cpu": model, "ram": ram}


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def version(dist: str) -> str:
    """An installed distribution's version, ``-`` if it is not installed."""
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "-"


def git_commit() -> str:
    """The short commit id of the checkout (``unknown`` outside git)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def om_command() -> list[str]:
    """The ``om`` executable of this interpreter's environment (or its module form)."""
    om = Path(sys.executable).parent / "om"
    if om.exists():
        return [str(om)]
    return [sys.executable, "-c", "from omops.cli import main; main()"]


def start_session(cmd: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen:
    """Start ``cmd`` in a session of its own (so :func:`stop_session` stops all it starts).

    Its output goes to ``log``, its stdin is closed.
    """
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop_session(proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    """Stop a process started with ``start_new_session=True`` and all it started.

    SIGTERM to its process group (a server and its workers, a Celery worker and
    its pool), SIGKILL after ``timeout`` seconds.
    """
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
