"""The DuckDB databases lazy frames run in: one Omega's, bounded by ``OMOPS_MEMORY_LIMIT``.

An :class:`Engine` is a part of the Omega's context (``om.context``), so two
Omegas never share a database, and ``om.close()`` ends it. It opens one
in-memory DuckDB database per set of fsspec filesystems the frames read
from (DuckDB takes one filesystem per protocol and database), each with the
memory limit and a spill folder of its own under the ``spill`` setting
(DuckDB removes what it wrote there when the database closes; a folder per
database keeps processes sharing ``OMOPS_HOME`` out of each other's files).
Queries run on cursors, one per query, so that threads never share one.

Results read whole (``value``, ``len``) run with a thread per core; results
read a chunk at a time (``iterchunks``, ``persist``, transforms) run in a
second database with one thread: DuckDB reads ahead about a row group per
thread to keep the rows in order, so one thread bounds a stream's memory
whatever the number of cores, and the consumer (pandas, a Parquet writer) is
the slower side anyway.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omops.config import Settings
from omops.errors import ConfigError, InvalidQuery

__all__ = ["Engine"]


class Engine:
    """DuckDB databases for lazy frames, made on first use.

    Parameters
    ----------
    memory_limit : str, optional
        DuckDB's ``memory_limit`` (``'4GB'``); its default (80% of RAM) when None.
    spill : str or Path, optional
        Folder under which each database spills; a temporary folder when None.
    threads : int, optional
        DuckDB threads per database; one per core by default.
    """

    def __init__(
        self,
        memory_limit: str | None = None,
        spill: str | Path | None = None,
        *,
        threads: int | None = None,
    ) -> None:
        self.memory_limit = memory_limit
        self.spill = Path(spill) if spill else None
        self.threads = threads
        self._databases: dict[tuple[Any, ...], tuple[Any, list[Any], Path | None]] = {}
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._count = itertools.count()

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        """The engine ``settings`` describe (``memory_limit``, ``spill``)."""
        return cls(settings.memory_limit, settings.spill or None)

    def __repr__(self) -> str:
        return f"Engine(memory_limit={self.memory_limit!r}, spill={str(self.spill)!r})"

    @contextmanager
    def cursor(self, filesystems: Sequence[Any] = (), *, stream: bool = False) -> Iterator[Any]:
        """A DuckDB cursor that can read from ``filesystems`` (fsspec, besides local files).

        ``stream``: for a result read a chunk at a time (one DuckDB thread).
        """
        cursor = self._database(filesystems, stream).cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def _database(self, filesystems: Sequence[Any], stream: bool) -> Any:
        import duckdb

        unique = {id(fs): fs for fs in filesystems}
        key = (stream, *sorted(unique))
        with self._lock:
            if self._pid != os.getpid():  # never use a database inherited over fork
                self._databases, self._pid = {}, os.getpid()
            found = self._databases.get(key)
            if found is None:
                protocols = [_protocol(fs) for fs in unique.values()]
                if len(set(protocols)) < len(protocols):
                    raise InvalidQuery(
                        "these frames read from two blob stores of one kind (protocols "
                        f"{sorted(protocols)}), which one DuckDB database cannot open together; "
                        "persist one of them into the other's store first"
                    )
                folder = self._spill_folder()
                config: dict[str, Any] = {
                    "threads": 1 if stream else self.threads or max(os.cpu_count() or 1, 1),
                    # The OS caches local files already; DuckDB's own copy of what it
                    # read would grow up to the memory limit.
                    "enable_external_file_cache": bool(unique),
                }
                if self.memory_limit:
                    config["memory_limit"] = self.memory_limit
                if folder is not None:
                    config["temp_directory"] = str(folder)
                database = duckdb.connect(config=config)
                for fs in unique.values():
                    database.register_filesystem(fs)
                # The filesystems are kept with their database so that their ids stay unique.
                found = self._databases[key] = (database, list(unique.values()), folder)
            return found[0]

    def _spill_folder(self) -> Path | None:
        if self.spill is None:
            return None
        folder = self.spill / f"{os.getpid()}-{next(self._count)}-{uuid.uuid4().hex[:8]}"
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot make the spill folder {folder} for lazy frames: {exc}; set OMOPS_SPILL "
                "(or spill in config.toml) to a writable folder"
            ) from exc
        return folder

    def close(self) -> None:
        """Close every database and remove its spill folder."""
        with self._lock:
            databases, self._databases = list(self._databases.values()), {}
        for database, _, folder in databases:
            database.close()
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


def _protocol(fs: Any) -> str:
    protocol = fs.protocol
    return protocol if isinstance(protocol, str) else protocol[0]
