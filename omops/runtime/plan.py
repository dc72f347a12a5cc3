"""What executors are asked to run: one call, or a batch of calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Batch", "TaskCall"]


@dataclass(frozen=True)
class TaskCall:
    """One task: its name, JSON payload, queue label and bucket."""

    task: str
    payload: dict[str, Any]
    queue: str = "default"
    bucket: str | None = None


@dataclass(frozen=True)
class Batch:
    """Calls run together.

    ``parallel``: all at once, result is the list of their results.
    ``sequence``: one after the other, each step's result feeds the next.
    ``mapreduce``: all but the last at once; the last gets their list.
    """

    mode: Literal["parallel", "sequence", "mapreduce"]
    calls: tuple[TaskCall, ...] = field(default_factory=tuple)
