"""Content-addressed blob store on any fsspec filesystem.

A blob's key is the SHA-256 of its bytes. Writes go to a temporary key and are
then moved into place, so a crash leaves at worst an orphan under ``tmp/``,
never a half-written blob under its key.

On a local filesystem a writer holds an exclusive ``flock`` on its temporary
file from the moment it creates it until the file is renamed into place, and
:meth:`Blobs.remove` (the sweep) deletes a temporary file only when it can take
that lock itself: a live writer's file is never swept, whatever its age. Inside
:meth:`Blobs.holding`, the lock stays on the written blob until the block ends
(a put holds its blobs until its catalog commit). Other fsspec filesystems have
no such locks: the sweep then relies on age alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
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
from omops.errors import ConfigError, StorageError

try:  # POSIX; elsewhere the sweep relies on age alone, as on remote filesystems
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

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
        self._threads = threading.local()  # per thread: the blobs held by holding()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_threads"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._threads = threading.local()

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
        if self._locks:
            with self._local_writer(tmp_dir) as out:
                yield out
            return
        tmp = f"{tmp_dir}/{uuid.uuid4().hex}"
        try:
            with self.fs.open(tmp, "wb") as raw:
                out = HashingWriter(raw, background=True)
                try:
                    yield out
                    out.finish()
                except BaseException:
                    out.abort()
                    raise
            final = self.path(out.hexdigest())
            self._makedirs(final.rsplit("/", 1)[0])
            self.fs.mv(tmp, final)
        except BaseException:
            self._discard(tmp)
            raise

    @property
    def _locks(self) -> bool:
        """Whether writers lock their files (local filesystems with ``flock``)."""
        return fcntl is not None and self.is_local

    @contextmanager
    def _local_writer(self, tmp_dir: str) -> Iterator[HashingWriter]:
        """A local write: the temporary file stays locked until it is renamed into place."""
        raw, tmp = _create_locked(tmp_dir)
        moved = False
        try:

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
            raw.flush()
            os.fsync(raw.fileno())
            final = self.path(out.hexdigest())
            self._makedirs(final.rsplit("/", 1)[0])
            os.replace(tmp, final)  # still locked: no sweep can take the file in between
            moved = True
        except BaseException:
            self._discard(tmp)
            raise
        finally:
            held = getattr(self._threads, "held", None)
            if moved and held is not None:
                held.append(raw)  # the lock now guards the blob, until holding() ends
            else:
                raw.close()

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Keep the blobs this thread writes inside the block locked until it ends.

        A put holds its blobs from writing them to its catalog commit, so that a
        sweep running meanwhile does not take them for orphans (on filesystems
        with locks; elsewhere the commit notices a swept blob and writes it again).
        Nested blocks share the outermost one.
        """
        if getattr(self._threads, "held", None) is not None:
            yield
            return
        held: list[IO[bytes]] = []
        self._threads.held = held
        try:
            yield
        finally:
            self._threads.held = None
            for handle in held:
                handle.close()

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
        """Open a blob for reading; StorageError if it is missing."""
        try:
            return self.fs.open(self.path(key), "rb")
        except FileNotFoundError as exc:
            raise StorageError(
                f"blob {key} is missing from {self.url}: the store is damaged; restore the "
                "blob from a backup, or drop the object that needs it and put it again"
            ) from exc

    def intact(self, key: str) -> bool:
        """Whether the blob is there and its bytes still hash to its key."""
        digest = hashlib.sha256()
        try:
            with self.fs.open(self.path(key), "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
        except FileNotFoundError:
            return False
        return digest.hexdigest() == key

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

    def remove(self, path: str) -> bool:
        """Remove one file found by :meth:`temporaries`, unless a live writer holds it.

        Returns whether it was removed (a missing file was not). On a local
        filesystem the file is removed under its writer's lock, taken without
        waiting: a writer still writing (or holding its blob) keeps its file.
        """
        if not path.startswith(f"{self.root}/tmp/"):
            raise StorageError(f"{path!r} is not a temporary file of {self.url}")
        if _uploads.is_upload(path):
            _uploads.abort(self.fs, path)
            return True
        if self._locks:
            return _remove_unlocked(path)
        self._discard(path)
        return True

    def delete_unheld(self, key: str) -> bool:
        """Delete a blob unless a put holds it (see :meth:`holding`); whether it went."""
        if self._locks:
            return _remove_unlocked(self.path(key))
        self.delete(key)
        return True

    def in_use(self, path: str) -> bool:
        """Whether a live writer holds the file at ``path`` (always False without locks)."""
        if not self._locks:
            return False
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also releases a lock just taken
        return False

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


def _create_locked(tmp_dir: str) -> tuple[io.BufferedWriter, str]:
    """A new temporary file, opened for writing and locked (``flock``, exclusive)."""
    while True:
        tmp = f"{tmp_dir}/{uuid.uuid4().hex}"
        raw = open(tmp, "xb")  # noqa: SIM115 - closed by the caller
        try:
            fcntl.flock(raw.fileno(), fcntl.LOCK_EX)
            if os.fstat(raw.fileno()).st_nlink > 0:
                return raw, tmp
        except BaseException:
            raw.close()
            raise
        raw.close()  # a sweep removed it between the open and the lock: take another name


def _remove_unlocked(path: str) -> bool:
    """Remove ``path`` holding its lock, unless someone else holds it; whether it went."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer's
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                return False  # renamed away and replaced meanwhile: not the file we locked
            os.unlink(path)
        except FileNotFoundError:
            return False
        return True
    finally:
        os.close(fd)


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
