"""What every bench prints about the machine it ran on."""

from __future__ import annotations

import importlib.metadata as md
import os
from pathlib import Path


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
