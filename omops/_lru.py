"""A small thread-safe LRU mapping: the bound every cache in omops keeps."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Lru"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A mapping that forgets its least recently used entry beyond ``size`` entries.

    Examples
    --------
    >>> cache = Lru(2)
    >>> cache.put('a', 1); cache.put('b', 2); cache.put('c', 3)
    >>> cache.get('a') is None, cache.get('c')
    (True, 3)
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value (now the most recently used), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The value, or ``make()`` kept under ``key`` (made outside the lock)."""
        found = self.get(key)
        if found is None:
            found = make()
            self.put(key, found)
        return found

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def pop(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)

    def drop_if(self, predicate: Callable[[V], bool]) -> None:
        """Forget every entry whose value ``predicate`` accepts."""
        with self._lock:
            for key in [k for k, v in self._items.items() if predicate(v)]:
                del self._items[key]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
