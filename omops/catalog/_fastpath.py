"""Small SELECTs on a pooled DB-API connection, without SQLAlchemy's per-execution machinery.

The serving hot path asks the catalog on every request which revision a name
is now (:meth:`Catalog.lookup`), and every read asks for a revision's parts.
Through ``Connection.execute`` such an indexed query costs several times what
the database spends on it (connection wrapper, transaction events, cache key,
result objects); ``bench/catalog.py`` measures the difference and
``bench/RESULTS.md`` records it.

This module is the only place that runs SQL below SQLAlchemy's Connection.
It uses documented API only, but API whose behaviour the rest of omops never
depends on, so ``tests/catalog/test_fastpath.py`` checks each piece exists and
that :func:`fetch_public` (``Connection.execute``) returns equal rows of equal
types for every statement and column type the catalog reads this way:

- ``Engine.raw_connection()`` and its PEP 249 cursor;
- ``ClauseElement.compile(dialect=...)``, ``Compiled.string``,
  ``Compiled.construct_params()``, ``SQLCompiler.positional`` and
  ``SQLCompiler.positiontup``;
- ``TypeEngine.dialect_impl(dialect)`` with its ``bind_processor`` and
  ``result_processor``;
- ``Select.selected_columns``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

__all__ = ["FastReader", "Query", "fetch_public"]

#: A SELECT and its bound parameters.
Query = tuple[sa.Select, Mapping[str, Any]]
Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Prepared:
    """A statement compiled for one dialect, with its value converters."""

    statement: sa.Select
    sql: str
    compiled: Any  # sqlalchemy.sql.compiler.SQLCompiler
    binds: tuple[tuple[str, Processor], ...]
    columns: tuple[tuple[str, Processor], ...]

    def arguments(self, params: Mapping[str, Any]) -> Any:
        bound = self.compiled.construct_params(params)
        for key, process in self.binds:
            if process is not None:
                bound[key] = process(bound[key])
        if self.compiled.positional:
            return [bound[key] for key in self.compiled.positiontup]
        return bound

    def rows(self, fetched: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
        return [
            {
                name: process(value) if process is not None else value
                for (name, process), value in zip(self.columns, row, strict=True)
            }
            for row in fetched
        ]


def _prepare(statement: sa.Select, dialect: sa.Dialect) -> _Prepared:
    compiled = statement.compile(dialect=dialect)
    binds = tuple(
        (key, bind.type.dialect_impl(dialect).bind_processor(dialect))
        for key, bind in compiled.binds.items()
    )
    columns = tuple(
        (c.name, c.type.dialect_impl(dialect).result_processor(dialect, None))
        for c in statement.selected_columns
    )
    return _Prepared(statement, compiled.string, compiled, binds, columns)


class FastReader:
    """Runs SELECTs of one engine, each compiled once.

    Owned by a :class:`~omops.catalog.Catalog` for the engine of its process;
    the statements are the catalog's module-level ones, so the cache is
    bounded by their number.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._prepared: dict[int, _Prepared] = {}

    def _get(self, statement: sa.Select) -> _Prepared:
        prepared = self._prepared.get(id(statement))
        if prepared is None or prepared.statement is not statement:
            prepared = self._prepared[id(statement)] = _prepare(statement, self.engine.dialect)
        return prepared

    def fetch(self, *queries: Query) -> list[list[dict[str, Any]]]:
        """Rows of SELECTs, as dicts, run in order on one pooled connection.

        Each statement reads one consistent snapshot, as it would in a
        transaction on either database; the connection goes back to the pool,
        which rolls back what the driver began.
        """
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                results = []
                for statement, params in queries:
                    prepared = self._get(statement)
                    cursor.execute(prepared.sql, prepared.arguments(params))
                    results.append(prepared.rows(cursor.fetchall()))
                return results
            finally:
                cursor.close()
        finally:
            connection.close()


def fetch_public(engine: Engine, *queries: Query) -> list[list[dict[str, Any]]]:
    """What :meth:`FastReader.fetch` returns, through ``Connection.execute``.

    The reference the fast path is tested and measured against.
    """
    with engine.connect() as connection:
        return [
            [dict(row) for row in connection.execute(statement, dict(params)).mappings()]
            for statement, params in queries
        ]
