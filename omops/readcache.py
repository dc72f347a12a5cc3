"""The read cache: small tables read before, kept so that no reader can change them.

One per Omega (``om.context.reads``), shared by its repositories and bucket
views. For each small read it keeps either

* a template object, when the plugin can copy it without sharing anything a
  caller could change (``safe_copy``: a DataFrame of numbers, text, dates,
  categories: a deep copy, ~10 µs), and every hit is such a copy; or
* the ``pyarrow.Table`` the plugin read (``read_table``), which nobody can
  change, and every hit builds a new object from it (``from_table``): for
  frames with dicts or lists in cells, which a deep copy would share.

So nothing a reader is handed, not even a dict inside a cell, is shared with
the cache or with another reader.
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

    def get(
        self,
        key: tuple[Any, ...],
        read: Callable[[], Any],
        *,
        small: bool,
        build: Callable[[Any], Any] | None = None,
        copy: Callable[[Any], Any] | None = None,
    ) -> Any:
        """A new object for ``key``: from what is kept, or from ``read()`` (kept when ``small``).

        Parameters
        ----------
        read : callable
            Reads the ``pyarrow.Table``.
        build : callable, optional
            Makes the object from a table (by default the table itself).
        copy : callable, optional
            A copy of a built object sharing nothing a caller could change, or
            None when there is none (then the table is kept, and built from).
        """
        build = build or (lambda table: table)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
        if found is not None:
            kept, _, is_template = found
            return copy(kept) if is_template and copy is not None else build(kept)
        table = read()
        obj = build(table)
        if small:
            template = copy(obj) if copy is not None else None
            self._keep(key, table if template is None else template, template is not None)
        return obj

    def _keep(self, key: tuple[Any, ...], kept: Any, is_template: bool) -> None:
        if is_template:
            usage = kept.memory_usage(deep=True)
            size = int(usage.sum() if hasattr(usage, "sum") else usage)
        else:
            size = int(kept.get_total_buffer_size())
        if size > min(self.max_object_bytes, self.max_bytes):
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (kept, size, is_template)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped, _) = self._items.popitem(last=False)
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
