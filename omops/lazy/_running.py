"""Running a lazy frame's query, and cutting its results into chunks and parts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from omops.errors import InvalidQuery
from omops.lazy._plan import Compiler

__all__ = ["Running", "joined", "sliced", "translated"]


def joined(frames: Iterator[Any], rows: int) -> Iterator[Any]:
    """``frames`` concatenated into frames of at least ``rows`` rows (the last: the rest)."""
    import pandas as pd

    held: list[Any] = []
    count = 0
    for frame in frames:
        held.append(frame)
        count += len(frame)
        if count >= rows:
            yield held[0] if len(held) == 1 else pd.concat(held)
            held, count = [], 0
    if held:
        yield held[0] if len(held) == 1 else pd.concat(held)


def sliced(frames: Iterator[Any], rows: int) -> Iterator[Any]:
    """``frames`` cut and joined into frames of exactly ``rows`` rows (the last: the rest)."""
    import pandas as pd

    held: list[Any] = []
    count = 0
    for frame in frames:
        while len(frame):
            take = frame.iloc[: rows - count]
            held.append(take)
            count += len(take)
            frame = frame.iloc[len(take) :]
            if count == rows:
                yield held[0] if len(held) == 1 else pd.concat(held)
                held, count = [], 0
    if held:
        yield held[0] if len(held) == 1 else pd.concat(held)


class Running:
    """A query on a cursor of its own, its sources registered; closed after the block.

    DuckDB's errors, where the query is made and while its result is read,
    become omops errors; an error of a Python-made source (a transform's
    function) is raised as it was.
    """

    def __init__(self, cursor: Any, sql: str, compiler: Compiler) -> None:
        self._cursor = cursor
        self._sql, self._compiler = sql, compiler

    def __enter__(self) -> Any:
        cursor = self._cursor.__enter__()
        try:
            for name, source in self._compiler.sources:
                cursor.register(name, source.relation(cursor))
            return cursor.sql(self._sql, params=self._compiler.params or None)
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def __exit__(self, kind: Any, exc: BaseException | None, traceback: Any) -> None:
        self._cursor.__exit__(kind, exc, traceback)
        if not isinstance(exc, Exception):  # done, or a generator closed early
            return
        import duckdb

        if isinstance(exc, duckdb.Error):
            for _, source in self._compiler.sources:
                if source.failure is not None:
                    raise source.failure from None
            raise translated(exc) from None


def translated(exc: Exception) -> Exception:
    """DuckDB's error as an omops one (it names no user column: the SQL uses positions)."""
    import duckdb

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, duckdb.OutOfMemoryException):
        return MemoryError(
            f"DuckDB ran out of memory: {first}; raise OMOPS_MEMORY_LIMIT, or check that "
            "OMOPS_SPILL is a writable folder with space to spill to"
        )
    if isinstance(exc, (duckdb.IOException, duckdb.InvalidInputException)):
        return OSError(first)
    return InvalidQuery(f"the lazy frame cannot be computed: {first}")
