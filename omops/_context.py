"""The state one :class:`~omops.omega.Omega` owns: caches, writers, executors.

An Omega and its bucket views (``om['dev']``) share one :class:`Context`;
two Omegas never share one, so they never see each other's loaded models,
cached reads, plugins or executors. Layers above the repository (the
runtime) keep their state here as named *parts*, made on first use, so this
module imports nothing from them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from omops.repository import ReadCache

__all__ = ["Context"]

T = TypeVar("T")


class Context:
    """Caches and services of one Omega, released by :meth:`close`.

    Parameters
    ----------
    reads : ReadCache, optional
        The read cache of the repositories; by default one sized by
        ``OMOPS_READ_CACHE_MB``.
    """

    def __init__(self, reads: ReadCache | None = None) -> None:
        self.reads = reads if reads is not None else ReadCache(None)
        self._parts: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.closed = False

    def part(self, name: str, factory: Callable[[], T]) -> T:
        """The part ``name``, made by ``factory()`` on first use.

        A part with a ``close()`` method is closed with the context.
        """
        found = self._parts.get(name)
        if found is None:
            with self._lock:
                found = self._parts.get(name)
                if found is None:
                    found = self._parts[name] = factory()
        return found

    def close(self) -> None:
        """Close every part (stop executors, flush writers) and empty the caches."""
        with self._lock:
            parts, self._parts = list(self._parts.values()), {}
            self.closed = True
        for part in parts:
            close = getattr(part, "close", None)
            if callable(close):
                close()
        self.reads.clear()

    def __repr__(self) -> str:
        return f"<Context parts={sorted(self._parts)}>"
