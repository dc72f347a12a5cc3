"""The runtime's part of an Omega's context: loaded models, lanes, trackers, writers, executors.

Everything a process keeps between actions lives in one :class:`RuntimeState`
per Omega (see :class:`omops._context.Context`), never in module globals, so
two Omegas in one process never see each other's models or executors.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from omops._lru import Lru
from omops.runtime._arrays import ArrayLane

if TYPE_CHECKING:
    from omops.catalog.tracking import EventWriter
    from omops.omega import Omega

__all__ = ["LoadedModel", "RuntimeState", "state_of"]

#: Loaded model revisions kept per Omega.
MODEL_CACHE_SIZE = 32
#: Seconds a list of experiments tracking a model is trusted.
TRACKERS_TTL = 2.0


class LoadedModel:
    """A model revision loaded once, and the object its plugin calls with arrays."""

    def __init__(self, model: Any, array_view: Callable[[Any], Any]) -> None:
        self.model = model
        self._array_view = array_view
        self._view: Any = None

    @property
    def for_arrays(self) -> Any:
        """The plugin's array view of the model, made on first use (see Plugin.array_view)."""
        if self._view is None:
            self._view = self._array_view(self.model)
        return self._view


class RuntimeState:
    """What the runtime keeps for one Omega, in the process that uses it."""

    def __init__(self) -> None:
        self.models: Lru[Hashable, LoadedModel] = Lru(MODEL_CACHE_SIZE)
        self.lane = ArrayLane()
        self.trackers: Lru[Hashable, tuple[float, list[tuple[int, int]]]] = Lru(1024)
        self._writer: tuple[int, EventWriter] | None = None
        self._executors: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()
        self.warned: set[str] = set()

    # -- tracking ----------------------------------------------------------

    def writer(self, om: Omega) -> EventWriter:
        """The write-behind event writer of this process (a forked child makes its own)."""
        from omops.catalog.tracking import EventWriter

        pid = os.getpid()
        with self._lock:
            if self._writer is None or self._writer[0] != pid:
                writer = EventWriter(om.catalog)
                atexit.register(writer.flush, 10.0)  # queued events are written at exit
                self._writer = (pid, writer)
            return self._writer[1]

    def flush(self, timeout: float = 30.0) -> None:
        """Write the events queued by this process, if any."""
        found = self._writer
        if found is not None and found[0] == os.getpid():
            found[1].flush(timeout)

    def trackers_of(self, key: Hashable, load: Callable[[], list[tuple[int, int]]]) -> Any:
        """Experiments tracking a model, asked again after :data:`TRACKERS_TTL` seconds."""
        now = time.monotonic()
        cached = self.trackers.get(key)
        if cached is not None and now - cached[0] < TRACKERS_TTL:
            return cached[1]
        found = load()
        self.trackers.put(key, (now, found))
        return found

    # -- executors ---------------------------------------------------------

    def executor(self, key: tuple[str, ...], make: Callable[[], Any]) -> Any:
        """The executor for ``key`` (scheme and URL), made once per Omega."""
        with self._lock:
            found = self._executors.get(key)
            if found is None:
                found = self._executors[key] = make()
            return found

    def warn_once(self, key: str) -> bool:
        """True the first time ``key`` is asked (for warnings given once per Omega)."""
        with self._lock:
            if key in self.warned:
                return False
            self.warned.add(key)
            return True

    def close(self) -> None:
        """Stop executors, write queued events, forget loaded models."""
        with self._lock:
            executors, self._executors = list(self._executors.values()), {}
        for executor in executors:
            executor.shutdown()
        found, self._writer = self._writer, None
        if found is not None and found[0] == os.getpid():
            atexit.unregister(found[1].flush)
            found[1].close(10.0)
        self.models.clear()
        self.trackers.clear()


def state_of(om: Omega) -> RuntimeState:
    """The runtime state of ``om``'s context (shared by its bucket views)."""
    return om.context.part("runtime", RuntimeState)
