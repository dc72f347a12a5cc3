"""Filters ``col__op=value`` compiled to a DuckDB ``WHERE`` clause.

Values are always bound parameters; column names are checked against the
schema and quoted, so no filter can change the shape of the SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omops.errors import InvalidQuery

__all__ = ["OPERATORS", "Predicate", "compile_filters", "quote_identifier"]


@dataclass(frozen=True)
class Predicate:
    """A compiled ``WHERE`` clause and its named parameters."""

    sql: str = "TRUE"
    params: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.sql != "TRUE"


def quote_identifier(name: str) -> str:
    """Quote a column name for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


def _plain(value: Any) -> Any:
    """NumPy scalars to Python ones: DuckDB binds only the latter."""
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        kind = getattr(getattr(value, "dtype", None), "kind", None)
        if kind in ("M", "m"):
            # datetime64[ns].item() is an int; microseconds give datetime/timedelta.
            value = value.astype("datetime64[us]" if kind == "M" else "timedelta64[us]")
        return value.item()
    return value


def _is_string(type_name: str) -> bool:
    return "string" in type_name or "utf8" in type_name or type_name.startswith("dictionary")


_Builder = Callable[[str, Any, Callable[[Any], str], str], str]


def _compare(symbol: str) -> _Builder:
    return lambda col, value, bind, _t: f"{col} {symbol} {bind(value)}"


def _sequence(value: Any, op: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, set, frozenset)):
        if hasattr(value, "tolist"):
            return list(value.tolist())
        raise InvalidQuery(f"{op} needs a list of values, got {type(value).__name__}: {value!r}")
    return list(value)


def _in(negate: bool) -> _Builder:
    def build(col: str, value: Any, bind: Callable[[Any], str], _t: str) -> str:
        values = _sequence(value, "nin" if negate else "in")
        if not values:
            return "TRUE" if negate else "FALSE"
        listed = ", ".join(bind(v) for v in values)
        if negate:  # a missing value is not in the list, as in pandas' ~isin()
            return f"{col} IS NULL OR {col} NOT IN ({listed})"
        return f"{col} IN ({listed})"

    return build


def _between(col: str, value: Any, bind: Callable[[Any], str], _t: str) -> str:
    bounds = _sequence(value, "between")
    if len(bounds) != 2:
        raise InvalidQuery(f"between needs two values (low, high), got {value!r}")
    return f"{col} BETWEEN {bind(bounds[0])} AND {bind(bounds[1])}"


def _text(function: str) -> _Builder:
    def build(col: str, value: Any, bind: Callable[[Any], str], type_name: str) -> str:
        if not _is_string(type_name):
            raise InvalidQuery(f"{function} works on text columns; column {col} is {type_name}")
        if not isinstance(value, str):
            raise InvalidQuery(f"{function} needs a string, got {type(value).__name__}: {value!r}")
        return f"{function}(CAST({col} AS VARCHAR), {bind(value)})"

    return build


def _null(is_null: bool) -> _Builder:
    def build(col: str, value: Any, _bind: Callable[[Any], str], _t: str) -> str:
        if not isinstance(value, bool):
            raise InvalidQuery(f"isnull/notnull take True or False, got {value!r}")
        return f"{col} IS NULL" if value == is_null else f"{col} IS NOT NULL"

    return build


OPERATORS: dict[str, _Builder] = {
    "eq": _compare("="),
    "ne": _compare("IS DISTINCT FROM"),  # a missing value is not equal, as in pandas
    "lt": _compare("<"),
    "lte": _compare("<="),
    "gt": _compare(">"),
    "gte": _compare(">="),
    "in": _in(negate=False),
    "nin": _in(negate=True),
    "between": _between,
    "contains": _text("contains"),
    "startswith": _text("starts_with"),
    "endswith": _text("ends_with"),
    "isnull": _null(is_null=True),
    "notnull": _null(is_null=False),
}


def _split(key: str, columns: Mapping[str, str]) -> tuple[str, str]:
    if key in columns:
        return key, "eq"
    column, sep, op = key.rpartition("__")
    if sep and column in columns:
        if op not in OPERATORS:
            raise InvalidQuery(
                f"unknown operator {op!r} in filter {key!r}; valid operators are "
                f"{', '.join(OPERATORS)}"
            )
        return column, op
    raise InvalidQuery(
        f"unknown column {(column if sep else key)!r} in filter {key!r}; columns are "
        f"{', '.join(columns)}"
    )


def _check_value(key: str, column: str, value: Any) -> None:
    if value is None:
        raise InvalidQuery(f"filter {key!r} compares with None; use {column}__isnull=True")
    if isinstance(value, float) and value != value:
        raise InvalidQuery(f"filter {key!r} compares with NaN; use isnull=True")


def compile_filters(filters: Mapping[str, Any], columns: Mapping[str, str]) -> Predicate:
    """Compile filters against a schema into a :class:`Predicate`.

    Parameters
    ----------
    filters : mapping
        ``{'sales__gte': 100, 'region': 'EU'}``; several filters are AND-ed.
    columns : mapping
        Column name to Arrow type name, e.g. ``{'sales': 'double'}``.

    Examples
    --------
    >>> p = compile_filters({'sales__gte': 100}, {'sales': 'double'})
    >>> p.sql, p.params
    ('("sales" >= $p0)', {'p0': 100})
    """
    clauses: list[str] = []
    params: dict[str, Any] = {}

    def bind(value: Any) -> str:
        key = f"p{len(params)}"
        params[key] = _plain(value)
        return f"${key}"

    for key, value in filters.items():
        column, op = _split(key, columns)
        if op not in ("isnull", "notnull"):
            _check_value(key, column, value)
        clauses.append(OPERATORS[op](quote_identifier(column), value, bind, columns[column]))
    if not clauses:
        return Predicate()
    return Predicate(" AND ".join(f"({c})" for c in clauses), params)
