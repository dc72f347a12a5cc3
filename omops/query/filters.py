"""Filters ``col__op=value`` compiled to a DuckDB ``WHERE`` clause.

Values are always bound parameters; column names are checked against the
schema and quoted, so no filter can change the shape of the SQL. Values are
checked against the column's type before any SQL runs (a number for a numeric
column, text for a text column, a date or time for a timestamp column ...), so
a mismatch is an :class:`~omops.errors.InvalidQuery` in the user's terms,
never a database error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omops.errors import InvalidQuery

__all__ = [
    "OPERATORS",
    "Condition",
    "Predicate",
    "check_value",
    "compile_filters",
    "parse_filters",
    "quote_identifier",
]


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


_NUMERIC = ("int", "uint", "float", "double", "halffloat", "decimal")
_TEMPORAL = ("timestamp", "date")


def _family(type_name: str) -> str | None:
    """``number``, ``text``, ``bool`` or ``time`` for the Arrow types values are checked for."""
    if _is_string(type_name):
        return "text"
    if type_name == "bool":
        return "bool"
    if type_name.startswith(_NUMERIC):
        return "number"
    if type_name.startswith(_TEMPORAL):
        return "time"
    return None  # lists, structs, binary, durations ...: left to the database


def _number(key: str, column: str, type_name: str, value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)  # True is 1, as in pandas
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            if number != number:
                raise InvalidQuery(f"filter {key!r} compares with NaN; use {column}__isnull=True")
            if type_name.startswith(("int", "uint")) and number.is_integer():
                return int(text) if text.lstrip("+-").isdigit() else int(number)
            return number
    raise InvalidQuery(
        f"filter {key!r}: {value!r} is not a number, but column {column!r} is {type_name}; "
        "give a number"
    )


def _text_value(key: str, column: str, type_name: str, value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise InvalidQuery(
        f"filter {key!r}: {value!r} is not text, but column {column!r} holds text; "
        f"give a string, e.g. {str(value)!r}"
    )


def _bool_value(key: str, column: str, value: Any) -> Any:
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise InvalidQuery(
        f"filter {key!r}: {value!r} is not true or false, but column {column!r} is bool"
    )


def _time_value(key: str, column: str, type_name: str, value: Any) -> Any:
    import datetime as dt

    if isinstance(value, (dt.date, dt.datetime)):  # pandas Timestamps are datetimes
        return value
    if isinstance(value, str):
        import pandas as pd

        try:
            pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            pass
        else:
            return value  # the database reads the text in the column's type and zone
    raise InvalidQuery(
        f"filter {key!r}: {value!r} is not a date or time, but column {column!r} is "
        f"{type_name}; give a datetime or ISO text like '2024-03-01' or '2024-03-01T12:00'"
    )


def check_value(key: str, column: str, type_name: str, value: Any) -> Any:
    """``value`` as the column's type needs it, or InvalidQuery saying what to give.

    Numbers may come as text (``'100'``, as from a query string); dates and
    times as datetimes or ISO text; booleans as ``True``, ``1`` or ``'true'``.

    Examples
    --------
    >>> check_value('sales__gte', 'sales', 'int64', '100')
    100
    >>> check_value('sales__gte', 'sales', 'int64', 'abc')
    Traceback (most recent call last):
    ...
    omops.errors.InvalidQuery: filter 'sales__gte': 'abc' is not a number, but column 'sales' is int64; give a number
    """
    value = _plain(value)
    family = _family(type_name)
    if family == "number":
        return _number(key, column, type_name, value)
    if family == "text":
        return _text_value(key, column, type_name, value)
    if family == "bool":
        return _bool_value(key, column, value)
    if family == "time":
        return _time_value(key, column, type_name, value)
    return value


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


def _not_missing(key: str, column: str, value: Any) -> None:
    if value is None:
        raise InvalidQuery(f"filter {key!r} compares with None; use {column}__isnull=True")
    if isinstance(value, float) and value != value:
        raise InvalidQuery(f"filter {key!r} compares with NaN; use isnull=True")


def _checked(key: str, column: str, type_name: str, value: Any) -> Any:
    _not_missing(key, column, value)
    return check_value(key, column, type_name, value)


@dataclass(frozen=True)
class Condition:
    """One checked filter: the column, the operator and the value(s) in the column's type."""

    column: str
    op: str
    value: Any


def parse_filters(filters: Mapping[str, Any], columns: Mapping[str, str]) -> list[Condition]:
    """Check filters against a schema: each as a :class:`Condition`, values converted.

    For databases other than DuckDB, which build their own clause from the
    conditions (see :mod:`omops.plugins.sql`); :func:`compile_filters` uses it too.

    Examples
    --------
    >>> parse_filters({'sales__gte': '100'}, {'sales': 'int64'})
    [Condition(column='sales', op='gte', value=100)]
    """
    found = []
    for key, value in filters.items():
        column, op = _split(key, columns)
        type_name = columns[column]
        if op not in ("isnull", "notnull"):
            _not_missing(key, column, value)
        if op in ("in", "nin", "between"):
            value = [_checked(key, column, type_name, v) for v in _sequence(value, op)]
            if op == "between" and len(value) != 2:
                raise InvalidQuery(f"between needs two values (low, high), got {value!r}")
        elif op in ("isnull", "notnull"):
            if not isinstance(value, bool):
                raise InvalidQuery(f"isnull/notnull take True or False, got {value!r}")
        elif op in ("contains", "startswith", "endswith"):
            if not _is_string(type_name):
                raise InvalidQuery(f"{op} works on text columns; column {column!r} is {type_name}")
            if not isinstance(value, str):
                raise InvalidQuery(f"{op} needs a string, got {type(value).__name__}: {value!r}")
        else:
            value = _checked(key, column, type_name, value)
        found.append(Condition(column, op, value))
    return found


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

    for cond in parse_filters(filters, columns):
        clauses.append(
            OPERATORS[cond.op](
                quote_identifier(cond.column), cond.value, bind, columns[cond.column]
            )
        )
    if not clauses:
        return Predicate()
    return Predicate(" AND ".join(f"({c})" for c in clauses), params)
