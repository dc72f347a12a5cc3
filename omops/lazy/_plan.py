"""A lazy frame's plan: immutable nodes compiled to one DuckDB query with bound parameters.

Each node knows its output columns (user names, Arrow types, which are the
index) and compiles to a ``SELECT`` whose columns are named by position
(``c0``, ``c1`` ...) and whose inputs are referred to qualified (``t.c3``).
User column names never appear in the SQL: DuckDB matches identifiers
case-insensitively (``A`` and ``a`` would clash) and names need no quoting;
filter values are bound parameters (:func:`omops.query.compile_filters`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from omops.errors import InvalidQuery
from omops.lazy.sources import Source
from omops.query import compile_filters

__all__ = ["AGGREGATES", "Aggregate", "Column", "Compiler", "Join", "Limit", "Node", "Order"]

_PARAM = re.compile(r"\$p(\d+)\b")


@dataclass(frozen=True)
class Column:
    """One output column: its name, Arrow type, and whether it is an index level."""

    name: str
    type: pa.DataType
    index: bool = False


class Compiler:
    """Collects what a query needs besides its text: the sources to register, the parameters."""

    def __init__(self) -> None:
        self.sources: list[tuple[str, Source]] = []
        self.params: dict[str, Any] = {}

    def source(self, source: Source) -> str:
        name = f"omops_source_{len(self.sources)}"
        self.sources.append((name, source))
        return name

    def bind(self, sql: str, params: Mapping[str, Any]) -> str:
        """``sql`` with its ``$pN`` parameters renamed so that they are unique in the query."""
        base = len(self.params)
        for key, value in params.items():
            self.params[f"q{base + int(key[1:])}"] = value
        return _PARAM.sub(lambda m: f"$q{base + int(m[1])}", sql)


def _names(count: int) -> str:
    return ", ".join(f"c{i}" for i in range(count))


@dataclass(frozen=True)
class Node:
    """A step of a plan; subclasses set ``columns`` and compile themselves."""

    columns: tuple[Column, ...] = field(init=False, default=())

    def sql(self, c: Compiler) -> str:
        raise NotImplementedError

    def position(self, name: str) -> int:
        for i, column in enumerate(self.columns):
            if column.name == name:
                return i
        raise InvalidQuery(
            f"unknown column {name!r}; columns are {', '.join(map(str, self.data_names()))}"
        )

    def data_names(self) -> list[str]:
        return [c.name for c in self.columns if not c.index]

    def source(self) -> Source | None:
        """The source whose rows this node passes on unchanged in kind (only rows
        filtered, ordered, cut, columns chosen), else None."""
        return None


def _set(node: Node, columns: Sequence[Column]) -> None:
    object.__setattr__(node, "columns", tuple(columns))


@dataclass(frozen=True)
class Scan(Node):
    """All rows of a source."""

    data: Source = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        index = set(self.data.index)
        _set(self, [Column(f.name, f.type, f.name in index) for f in self.data.schema])

    def sql(self, c: Compiler) -> str:
        return f"SELECT * FROM {c.source(self.data)} AS t({_names(len(self.columns))})"

    def source(self) -> Source | None:
        return self.data


@dataclass(frozen=True)
class Where(Node):
    """Rows matching ``col__op=value`` filters."""

    child: Node = field(default=None)  # type: ignore[assignment]
    filters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _set(self, self.child.columns)
        self._compiled()  # names, operators and values checked now, in the user's terms

    def _compiled(self) -> Any:
        types = {c.name: str(c.type) for c in self.columns if not c.name.startswith("__index_")}
        compile_filters(self.filters, types)
        alias = {c.name: f"t.c{i}" for i, c in enumerate(self.columns)}
        renamed = {}
        for key, value in self.filters.items():
            column, op = (key, None) if key in types else key.rpartition("__")[::2]
            renamed[f"{alias[column]}__{op}" if op else alias[column]] = value
        return compile_filters(renamed, {alias[n]: kind for n, kind in types.items()})

    def sql(self, c: Compiler) -> str:
        predicate = self._compiled()
        # compile_filters quotes names: "t.c3" must be the column t.c3, not one named so.
        condition = re.sub(r'"(t\.c\d+)"', r"\1", predicate.sql)
        return (
            f"SELECT * FROM ({self.child.sql(c)}) AS t WHERE {c.bind(condition, predicate.params)}"
        )

    def source(self) -> Source | None:
        return self.child.source()


@dataclass(frozen=True)
class Project(Node):
    """Some columns, in a given order (index columns always kept, last)."""

    child: Node = field(default=None)  # type: ignore[assignment]
    positions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _set(self, [self.child.columns[p] for p in self.positions])

    def sql(self, c: Compiler) -> str:
        chosen = ", ".join(f"t.c{p} AS c{i}" for i, p in enumerate(self.positions))
        return f"SELECT {chosen} FROM ({self.child.sql(c)}) AS t"

    def source(self) -> Source | None:
        return self.child.source()


@dataclass(frozen=True)
class Order(Node):
    """Rows sorted by columns; missing values last, as in pandas."""

    child: Node = field(default=None)  # type: ignore[assignment]
    keys: tuple[tuple[int, bool], ...] = ()

    def __post_init__(self) -> None:
        _set(self, self.child.columns)

    def sql(self, c: Compiler) -> str:
        order = ", ".join(f"t.c{p} {'ASC' if up else 'DESC'} NULLS LAST" for p, up in self.keys)
        return f"SELECT * FROM ({self.child.sql(c)}) AS t ORDER BY {order}"

    def source(self) -> Source | None:
        return self.child.source()


@dataclass(frozen=True)
class Limit(Node):
    """The first ``count`` rows."""

    child: Node = field(default=None)  # type: ignore[assignment]
    count: int = 0

    def __post_init__(self) -> None:
        _set(self, self.child.columns)

    def sql(self, c: Compiler) -> str:
        return f"SELECT * FROM ({self.child.sql(c)}) AS t LIMIT {int(self.count)}"

    def source(self) -> Source | None:
        return self.child.source()


def _numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _sum(col: str, kind: pa.DataType) -> tuple[str, pa.DataType]:
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind):  # pandas: int64, never int128
        return f"CAST(sum(CAST({col} AS BIGINT)) AS BIGINT)", pa.int64()
    return f"CAST(sum({col}) AS DOUBLE)", pa.float64()


def _double(function: str) -> Any:
    return lambda col, _kind: (f"CAST({function}({col}) AS DOUBLE)", pa.float64())


#: Aggregations by pandas name: SQL of a column, and the result's type.
AGGREGATES: Mapping[str, Any] = {
    "sum": _sum,
    "mean": _double("avg"),
    "median": _double("median"),
    "std": _double("stddev_samp"),
    "var": _double("var_samp"),
    "min": lambda col, kind: (f"min({col})", kind),
    "max": lambda col, kind: (f"max({col})", kind),
    "count": lambda col, _kind: (f"count({col})", pa.int64()),
    "nunique": lambda col, _kind: (f"count(DISTINCT {col})", pa.int64()),
    "size": lambda _col, _kind: ("count(*)", pa.int64()),
}
_NUMERIC_ONLY = {"sum", "mean", "median", "std", "var"}


@dataclass(frozen=True)
class Aggregate(Node):
    """One row per group of ``keys``: the keys (the index), then named aggregations."""

    child: Node = field(default=None)  # type: ignore[assignment]
    keys: tuple[int, ...] = ()
    aggregations: tuple[tuple[str, int, str], ...] = ()  # (output name, input position, function)
    dropna: bool = True

    def __post_init__(self) -> None:
        keys = [self.child.columns[k] for k in self.keys]
        out = [Column(k.name, k.type, True) for k in keys]
        for name, position, function in self.aggregations:
            source = self.child.columns[position]
            if function not in AGGREGATES:
                raise InvalidQuery(
                    f"unknown aggregation {function!r} for {name!r}; use one of "
                    f"{', '.join(AGGREGATES)}"
                )
            kind = source.type
            if function in _NUMERIC_ONLY and not (_numeric(kind) or pa.types.is_boolean(kind)):
                raise InvalidQuery(f"{function} needs a numeric column; {source.name!r} is {kind}")
            out.append(Column(name, AGGREGATES[function](f"t.c{position}", kind)[1]))
        _set(self, out)

    def sql(self, c: Compiler) -> str:
        keys = [f"t.c{k}" for k in self.keys]
        select = [f"{k} AS c{i}" for i, k in enumerate(keys)]
        for i, (_, position, function) in enumerate(self.aggregations, start=len(keys)):
            expression, _ = AGGREGATES[function](
                f"t.c{position}", self.child.columns[position].type
            )
            select.append(f"{expression} AS c{i}")
        where = " AND ".join(f"{k} IS NOT NULL" for k in keys) if self.dropna else ""
        inner = f"SELECT {', '.join(select)} FROM ({self.child.sql(c)}) AS t"
        if where:
            inner += f" WHERE {where}"
        if not keys:
            return inner
        inner += f" GROUP BY {', '.join(keys)}"
        order = ", ".join(f"g.c{i} NULLS LAST" for i in range(len(keys)))
        return f"SELECT * FROM ({inner}) AS g ORDER BY {order}"


#: pandas' ``how`` to SQL joins.
JOINS: Mapping[str, str] = {
    "inner": "INNER JOIN",
    "left": "LEFT JOIN",
    "right": "RIGHT JOIN",
    "outer": "FULL OUTER JOIN",
}


@dataclass(frozen=True)
class Join(Node):
    """pandas' ``merge``: left's columns, then right's but its keys; a new index."""

    left: Node = field(default=None)  # type: ignore[assignment]
    right: Node = field(default=None)  # type: ignore[assignment]
    how: str = "inner"
    left_on: tuple[int, ...] = ()
    right_on: tuple[int, ...] = ()
    suffixes: tuple[str, str] = ("_x", "_y")
    shared_keys: bool = True  # ``on=``: one column per key; left_on/right_on keep both

    def __post_init__(self) -> None:
        _set(self, [Column(name, kind) for name, kind, _ in self._outputs()])

    def _outputs(self) -> list[tuple[str, pa.DataType, str]]:
        """(name, type, SQL) of each output column."""
        right_keys = set(self.right_on) if self.shared_keys else set()
        left_data = [i for i, col in enumerate(self.left.columns) if not col.index]
        left_data += [k for k in self.left_on if k not in left_data]
        right_data = [
            i for i, col in enumerate(self.right.columns) if not col.index and i not in right_keys
        ]
        right_data += [
            k for k in (self.right_on if not self.shared_keys else ()) if k not in right_data
        ]
        left_names = {self.left.columns[i].name for i in left_data}
        right_names = {self.right.columns[i].name for i in right_data}
        paired = dict(zip(self.left_on, self.right_on, strict=True))
        outputs = []
        for i in left_data:
            col = self.left.columns[i]
            name = col.name + self.suffixes[0] if col.name in right_names else col.name
            sql = f"l.c{i}"
            if self.shared_keys and i in paired:
                name = col.name
                other = f"r.c{paired[i]}"
                sql = {"right": other, "outer": f"COALESCE(l.c{i}, {other})"}.get(self.how, sql)
            outputs.append((name, col.type, sql))
        for i in right_data:
            col = self.right.columns[i]
            name = col.name + self.suffixes[1] if col.name in left_names else col.name
            outputs.append((name, col.type, f"r.c{i}"))
        names = [n for n, _, _ in outputs]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise InvalidQuery(
                f"the merge would have columns {duplicated} twice; give other suffixes="
            )
        return outputs

    def sql(self, c: Compiler) -> str:
        select = ", ".join(f"{sql} AS c{i}" for i, (_, _, sql) in enumerate(self._outputs()))
        on = " AND ".join(
            f"l.c{a} IS NOT DISTINCT FROM r.c{b}"
            for a, b in zip(self.left_on, self.right_on, strict=True)
        )
        left, right = self.left.sql(c), self.right.sql(c)
        return f"SELECT {select} FROM ({left}) AS l {JOINS[self.how]} ({right}) AS r ON {on}"
