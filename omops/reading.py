"""Errors from reading an object's blobs, named after the object.

A blob that is missing, or whose bytes no longer hash to its key, is a
:class:`~omops.errors.StorageError` (REST: 503 ``storage_error``) naming the
object, its revision and the blob, and saying what to do. Bytes that are
intact but that the plugin cannot load (an object written with other library
versions) are a :class:`~omops.errors.PluginError` saying so. Either way the
original exception is chained, never shown raw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from omops.blobs import Blobs
from omops.errors import OmopsError, PluginError, StorageError
from omops.plugins import TableStream

__all__ = ["guarded", "reading", "unreadable"]


@contextmanager
def reading(blobs: Blobs, what: str, name: str, keys: Sequence[str]) -> Iterator[None]:
    """Errors raised in the block, from reading ``keys`` of ``what``, as omops errors.

    ``what`` describes the object (``"datasets 'stats' (revision ..., kind ...)"``).
    """
    try:
        yield
    except StorageError as exc:  # a blob store's own error: name the object
        raise unreadable(blobs, what, name, keys, exc, intact=exc) from exc
    except (OmopsError, MemoryError):
        raise
    except Exception as exc:
        raise unreadable(blobs, what, name, keys, exc) from exc


def guarded(stream: TableStream, context: Callable[[], AbstractContextManager[Any]]) -> TableStream:
    """``stream`` with the errors of its batches and its count translated by ``context()``."""
    batches, count = stream.batches, stream.count

    def translated() -> Iterator[Any]:
        try:
            with context():
                yield from batches
        finally:
            close = getattr(batches, "close", None)
            if callable(close):
                close()

    def counted() -> int:
        with context():
            return count()

    stream.batches, stream.count = translated(), counted
    return stream


def unreadable(
    blobs: Blobs,
    what: str,
    name: str,
    keys: Sequence[str],
    exc: Exception,
    *,
    intact: OmopsError | None = None,
) -> OmopsError:
    """Why ``what`` cannot be read: a blob missing, a blob damaged, or the plugin failing.

    ``intact``: what to raise when every blob is there and intact (by default
    a PluginError: the plugin could not load good bytes).
    """
    missing = [key for key in keys if not blobs.exists(key)]
    if missing:
        return StorageError(
            f"{what} cannot be read: its blob {missing[0]} is missing from {blobs.url}, "
            "so the blob store is damaged (a file was deleted behind omops' back): restore "
            f"the blob from a backup, or drop {name!r} and put it again"
        )
    damaged = [key for key in keys if not blobs.intact(key)]
    if damaged:
        return StorageError(
            f"{what} cannot be read: its blob {damaged[0]} in {blobs.url} does not "
            "match its content hash, so its bytes are damaged: restore the blob from a "
            f"backup, or drop {name!r} and put it again"
        )
    if intact is not None:
        return intact
    return PluginError(
        f"{what} cannot be read by its plugin: {type(exc).__name__}: {exc}. Its bytes "
        "are intact (they match their hash): it was probably written with other versions "
        "of the libraries it needs; read it where those are installed, or put it again"
    )
