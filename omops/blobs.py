"""Content-addressed blob store on any fsspec filesystem.

A blob's key is the SHA-256 of its bytes. Writes go to a temporary key and are
then moved into place, so a crash leaves at worst an orphan under ``tmp/``,
never a half-written blob under its key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from omops import _uploads
from omops.errors import ConfigError, NotFound, StorageError

__all__ = ["Blobs", "HashingWriter"]

_CHUNK = 8 * 1024 * 1024
_BATCH = 8 * 1024 * 1024  # background writes: hand the worker this many bytes at a time
_DEPTH = 4  # background writes: at most this many batches queued (bounds memory)
_SYNC_EVERY = 32 * 1024 * 1024  # background writes to local files: fdatasync this often
_fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


class HashingWriter:
    """A write-only file object that hashes and counts what passes through.

    Parameters
    ----------
    raw : file object
        Where the bytes go.
    background : bool, default=False
        Hash and write in a worker thread, so that a producer such as a
        Parquet encoder (which runs without the GIL) keeps encoding while
        earlier bytes are hashed and written on another core. Writes are
        handed over in batches of about 8 MiB (immutable ``bytes`` without a
        copy); the thread starts with the first full batch, so small blobs
        never start one. Call :meth:`finish` (or :meth:`abort`) when done;
        :meth:`flush` and :meth:`hexdigest` wait for what was written so far.
    sync : callable, optional
        With ``background``, called by the worker after every 32 MiB, e.g. to
        ``fdatasync`` a local file, so that the final ``fsync`` finds little
        left to write.
    """

    def __init__(
        self, raw: IO[bytes], *, background: bool = False, sync: Callable[[], None] | None = None
    ) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0
        self.closed = False
        self._background = background
        self._sync = sync
        self._batch: list[bytes] = []
        self._batched = 0
        self._queue: queue.Queue[list[bytes] | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.closed:
            raise ValueError("write to a finished blob writer")
        if not self._background:
            n = memoryview(data).nbytes
            self._hash.update(data)
            self._raw.write(data)
        else:
            # The caller may reuse a mutable buffer once write returns: keep a copy.
            piece = data if isinstance(data, bytes) else bytes(data)
            n = len(piece)
            self._batch.append(piece)
            self._batched += n
            if self._batched >= _BATCH:
                self._send()
        self.size += n
        return n

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        """Hash and write everything written so far, then flush the file under."""
        self._drain()
        self._raw.flush()

    def tell(self) -> int:
        return self.size

    def hexdigest(self) -> str:
        self._drain()
        return self._hash.hexdigest()

    def finish(self) -> None:
        """Hash and write what is pending, stop the worker; raise what it raised."""
        if not self.closed:
            self._drain()
            self._stop()
            self.closed = True

    def abort(self) -> None:
        """Stop the worker, dropping what it has not written yet."""
        if self._thread is not None and self._error is None:
            self._error = StorageError("blob write aborted")
        self._stop()
        self._batch, self._batched = [], 0
        self.closed = True

    # -- internals ---------------------------------------------------------

    def _send(self) -> None:
        if self._error is not None:
            raise self._error
        if self._thread is None:
            self._queue = queue.Queue(maxsize=_DEPTH)
            self._thread = threading.Thread(
                target=self._work, name="omops-blob-writer", daemon=True
            )
            self._thread.start()
        assert self._queue is not None
        self._queue.put(self._batch)
        self._batch, self._batched = [], 0

    def _work(self) -> None:
        assert self._queue is not None
        digest, raw, unsynced = self._hash, self._raw, 0
        while True:
            batch = self._queue.get()
            try:
                if batch is None:
                    return
                if self._error is None:
                    for piece in batch:
                        digest.update(piece)  # both release the GIL for large pieces
                        raw.write(piece)
                        unsynced += len(piece)
                    if self._sync is not None and unsynced >= _SYNC_EVERY:
                        self._sync()
                        unsynced = 0
            except BaseException as exc:  # raised in the producer by _send or _drain
                self._error = exc
            finally:
                self._queue.task_done()

    def _drain(self) -> None:
        if self._batch:
            if self._thread is None:  # a small blob: no thread needed
                for piece in self._batch:
                    self._hash.update(piece)
                    self._raw.write(piece)
                self._batch, self._batched = [], 0
            else:
                self._send()
        if self._queue is not None:
            self._queue.join()
        if self._error is not None:
            raise self._error

    def _stop(self) -> None:
        if self._thread is not None:
            assert self._queue is not None
            self._queue.put(None)
            self._thread.join()
            self._thread = None


class Blobs:
    """A blob store rooted at an fsspec URL (a plain path means a local folder).

    Parameters
    ----------
    url : str
        ``/var/lib/omops/blobs``, ``file:///...``, ``s3://bucket/prefix``,
        ``memory://omops`` ...
    storage_options : dict, optional
        Passed to the fsspec filesystem (credentials, endpoint ...).
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        try:
            self.fs, root = fsspec.core.url_to_fs(str(url), **storage_options)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"cannot open blob store {url!r}: {exc}") from exc
        self.url = str(url)
        self.root = root.rstrip("/")
        self.storage_options = storage_options
        self._made: set[str] = set()

    def __repr__(self) -> str:
        return f"Blobs({self.url!r})"

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, key: str) -> str:
        """Filesystem path of a key (no protocol); refuses keys that are not hashes."""
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise StorageError(f"blob key {key!r} is not a SHA-256 hex digest")
        return f"{self.root}/objects/{key[:2]}/{key[2:]}"

    def url_of(self, key: str) -> str:
        """Full URL of a key, with protocol, for readers such as DuckDB."""
        path = self.path(key)
        if self.is_local:
            return path
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{path}"

    def _makedirs(self, folder: str) -> None:
        if folder not in self._made:
            self.fs.makedirs(folder, exist_ok=True)
            self._made.add(folder)

    @contextmanager
    def writer(self) -> Iterator[HashingWriter]:
        """Write a new blob; the key is ``writer.hexdigest()`` after the block.

        Examples
        --------
        >>> blobs = Blobs('memory://doctest-blobs')
        >>> with blobs.writer() as out:
        ...     _ = out.write(b'hello')
        >>> blobs.read(out.hexdigest())
        b'hello'
        """
        tmp_dir = f"{self.root}/tmp"
        self._makedirs(tmp_dir)
        tmp = f"{tmp_dir}/{uuid.uuid4().hex}"
        try:
            with self.fs.open(tmp, "wb") as raw:
                sync = None
                if self.is_local:

                    def sync() -> None:
                        raw.flush()
                        _fdatasync(raw.fileno())

                out = HashingWriter(raw, background=True, sync=sync)
                try:
                    yield out
                    out.finish()
                except BaseException:
                    out.abort()
                    raise
                if self.is_local:
                    raw.flush()
                    os.fsync(raw.fileno())
            final = self.path(out.hexdigest())
            self._makedirs(final.rsplit("/", 1)[0])
            self.fs.mv(tmp, final)
        except BaseException:
            self._discard(tmp)
            raise

    def _discard(self, tmp: str) -> None:
        try:
            self.fs.rm(tmp)
        except (FileNotFoundError, OSError):
            pass  # nothing was written, or it will be swept with tmp/

    def put_bytes(self, data: bytes) -> str:
        """Store bytes; return their key."""
        with self.writer() as out:
            out.write(data)
        return out.hexdigest()

    def put_with(self, write: Callable[[HashingWriter], None]) -> tuple[str, int]:
        """Store what ``write(file)`` writes; return ``(key, size)``."""
        with self.writer() as out:
            write(out)
        return out.hexdigest(), out.size

    def open(self, key: str) -> IO[bytes]:
        """Open a blob for reading."""
        try:
            return self.fs.open(self.path(key), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"blob {key} is missing from {self.url}; the store is damaged") from exc

    def read(self, key: str) -> bytes:
        """All bytes of a blob."""
        with self.open(key) as fh:
            return fh.read()

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))

    def delete(self, key: str) -> None:
        """Delete a blob; a missing one is not an error."""
        try:
            self.fs.rm(self.path(key))
        except FileNotFoundError:
            pass

    def temporaries(self, older_than: float) -> list[tuple[str, int]]:
        """``(path, size)`` of files under ``tmp/`` not modified for ``older_than`` seconds.

        A put writes there first and renames into ``objects/``; a put that
        was killed leaves its file behind. On S3, also the multipart uploads
        to ``tmp/`` started ``older_than`` seconds ago and never finished (a
        writer killed mid-upload; see :mod:`omops._uploads`).
        """
        folder = f"{self.root}/tmp"
        return self._old_files(folder, older_than) + _uploads.pending(self.fs, folder, older_than)

    def stored(self, older_than: float) -> list[tuple[str, int]]:
        """``(key, size)`` of blobs under ``objects/`` not modified for ``older_than`` seconds."""
        found = []
        for path, size in self._old_files(f"{self.root}/objects", older_than):
            folder, _, name = path.rpartition("/")
            key = folder.rpartition("/")[2] + name
            if len(key) == 64 and all(c in "0123456789abcdef" for c in key):
                found.append((key, size))
        return found

    def remove(self, path: str) -> None:
        """Remove one file found by :meth:`temporaries`; a missing one is not an error."""
        if not path.startswith(f"{self.root}/tmp/"):
            raise StorageError(f"{path!r} is not a temporary file of {self.url}")
        if _uploads.is_upload(path):
            _uploads.abort(self.fs, path)
            return
        self._discard(path)

    def _old_files(self, folder: str, older_than: float) -> list[tuple[str, int]]:
        try:
            listing = self.fs.find(folder, detail=True)
        except FileNotFoundError:
            return []
        finally:
            # Object stores (s3fs) keep listings and would later answer exists()
            # and info() from them, blind to what other processes wrote since.
            self.fs.invalidate_cache(folder)
        now = time.time()
        return [
            (path, int(info.get("size") or 0))
            for path, info in sorted(listing.items())
            if info.get("type", "file") == "file" and now - _mtime(info, now) >= older_than
        ]

    def copy_from(self, other: Blobs, key: str) -> None:
        """Copy one blob from another store (no-op if it is here already)."""
        if other.url == self.url or self.exists(key):
            return
        with other.open(key) as source, self.writer() as out:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
        if out.hexdigest() != key:
            raise StorageError(f"blob {key} in {other.url} does not match its hash; it is corrupt")


def _mtime(info: dict[str, Any], default: float) -> float:
    """Modification time (epoch seconds) from an fsspec ``info`` dict, whatever the backend."""
    for field in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(field)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        try:
            return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
    return default  # unknown: counts as just modified, so it is never swept
