"""Turning command-line text into API arguments: filters, attributes, columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import typer

__all__ = ["parse_attributes", "parse_columns", "parse_filters"]

#: Operators whose value is a comma-separated list on the command line.
LIST_OPERATORS = ("in", "nin", "between")
#: Operators whose value is a boolean and may be left out (``--filter x__isnull``).
NULL_OPERATORS = ("isnull", "notnull")
#: Parameters of ``Repository.get`` that a filter must not be passed as.
_RESERVED = ("name", "columns", "revision")


def _is_text(type_name: str | None) -> bool:
    if type_name is None:
        return False
    return "string" in type_name or "utf8" in type_name or type_name.startswith("dictionary")


def parse_value(text: str, *, as_text: bool = False) -> Any:
    """``'100'`` -> ``100``, ``'true'`` -> ``True``, ``'EU'`` -> ``'EU'``.

    Text that is valid JSON becomes that value, anything else stays a string;
    with ``as_text`` (a text column) the value always stays a string.
    """
    if as_text:
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _bool(text: str, spec: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("", "true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise typer.BadParameter(f"{spec!r}: isnull/notnull take true or false", param_hint="--filter")


def _column_and_op(key: str, dtypes: Mapping[str, str]) -> tuple[str, str]:
    if key in dtypes:
        return key, "eq"
    column, sep, op = key.rpartition("__")
    return (column, op) if sep else (key, "eq")


def parse_filters(specs: Sequence[str], dtypes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``['sales__gte=100', 'region__in=EU,US']`` -> keyword filters for ``get``.

    Parameters
    ----------
    specs : list of str
        ``col=value`` or ``col__op=value``; ``in``, ``nin`` and ``between``
        take comma-separated values; ``isnull``/``notnull`` may omit ``=true``.
    dtypes : mapping, optional
        Column name to Arrow type name. Values for text columns stay strings
        (``zip=01234``); other values are parsed as JSON when they are JSON.

    Raises
    ------
    typer.BadParameter
        For text that is not a filter at all (no ``=``, no column).
    """
    dtypes = dtypes or {}
    filters: dict[str, Any] = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        key = key.strip()
        column, op = _column_and_op(key, dtypes)
        if not key or not column:
            raise typer.BadParameter(
                f"{spec!r} names no column; write col=value or col__op=value, e.g. sales__gte=100",
                param_hint="--filter",
            )
        if op in NULL_OPERATORS:
            value: Any = _bool(text, spec)
        elif not sep:
            raise typer.BadParameter(
                f"{spec!r} has no '='; write col=value or col__op=value, e.g. sales__gte=100",
                param_hint="--filter",
            )
        elif op in LIST_OPERATORS:
            as_text = _is_text(dtypes.get(column))
            value = [parse_value(item.strip(), as_text=as_text) for item in text.split(",")]
        else:
            value = parse_value(text, as_text=_is_text(dtypes.get(column)))
        if key in _RESERVED:
            key = f"{key}__eq"  # would collide with get(name, columns=, revision=)
        if key in filters:
            raise typer.BadParameter(f"{key!r} is given twice", param_hint="--filter")
        filters[key] = value
    return filters


def parse_attributes(specs: Sequence[str]) -> dict[str, str]:
    """``['owner=ana', 'team=x']`` -> ``{'owner': 'ana', 'team': 'x'}`` (values stay strings)."""
    attributes: dict[str, str] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{spec!r} is not key=value", param_hint="--attribute")
        attributes[key.strip()] = value
    return attributes


def parse_columns(text: str | None) -> list[str] | None:
    """``'a, b'`` -> ``['a', 'b']``; ``None`` stays ``None``."""
    if text is None:
        return None
    columns = [c.strip() for c in text.split(",") if c.strip()]
    if not columns:
        raise typer.BadParameter(
            "give at least one column, e.g. --columns a,b", param_hint="--columns"
        )
    return columns
