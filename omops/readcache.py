"""The read cache: small tables read before, kept as immutable Arrow data.

One per Omega (``om.context.reads``), shared by its repositories and bucket
views. It keeps what a tabular plugin's ``read_table`` returned, a
``pyarrow.Table``, which nobody can change; every read builds a new pandas
object from it (``from_table``). So nothing a reader is handed, not even a
dict or list inside a cell, is shared with the cache or with another reader.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from omops.errors import ConfigError

__all__ = ["ReadCache"]


class ReadCache:
    """Small tables read before, by revision and selection; least recently used out first.

    A revision never changes, so a process that reads the same small dataset
    again and again (a worker predicting on it, a notebook loop) reads its
    blob once. The name is still looked up on every read, so a new revision
    is seen at once. Only kinds whose plugin ``caches_reads`` (DataFrames and
    Series), reads without filters, blobs up to ``max_blob_bytes`` and tables
    up to ``max_object_bytes`` in memory are kept, ``max_bytes`` in all.

    Parameters
    ----------
    max_bytes : int or None
        Bytes kept in all; ``None`` reads ``OMOPS_READ_CACHE_MB`` (default 64,
        0 turns the cache off) when first needed.
    max_object_bytes : int
        The largest table kept (its Arrow buffers).
    max_blob_bytes : int
        Revisions whose blobs are larger are never kept.
    """

    def __init__(
        self,
        max_bytes: int | None = 64 * 2**20,
        max_object_bytes: int = 4 * 2**20,
        max_blob_bytes: int = 2**20,
    ) -> None:
        # None: read OMOPS_READ_CACHE_MB when first needed (import reads nothing).
        self._max_bytes, self.max_object_bytes = max_bytes, max_object_bytes
        self.max_blob_bytes = max_blob_bytes
        self._items: OrderedDict[tuple[Any, ...], tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def max_bytes(self) -> int:
        if self._max_bytes is None:
            self._max_bytes = _read_cache_bytes()
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        self._max_bytes = value

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Bytes of the tables kept now."""
        return self._bytes

    def get(self, key: tuple[Any, ...], read: Callable[[], Any], *, small: bool) -> Any:
        """The table kept under ``key``, or ``read()`` (then kept when ``small``).

        ``read`` returns a ``pyarrow.Table``; the caller must not change what it
        is given (Arrow tables cannot be changed) and builds its object from it.
        """
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found[0]
        table = read()
        if small:
            self._keep(key, table)
        return table

    def _keep(self, key: tuple[Any, ...], table: Any) -> None:
        size = int(table.get_total_buffer_size())
        if size > min(self.max_object_bytes, self.max_bytes):
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (table, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def _read_cache_bytes() -> int:
    text = os.environ.get("OMOPS_READ_CACHE_MB", "64")
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = -1.0
    if not megabytes >= 0:
        raise ConfigError(
            f"OMOPS_READ_CACHE_MB must be a number of MiB >= 0 (0: off), not {text!r}"
        )
    return int(megabytes * 2**20)
