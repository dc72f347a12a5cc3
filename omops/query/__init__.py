"""The filter grammar ``col__op=value`` and column selectors, compiled for DuckDB."""

from omops.query.filters import (
    OPERATORS,
    Condition,
    Predicate,
    compile_filters,
    parse_filters,
    quote_identifier,
)
from omops.query.selectors import select_columns

__all__ = [
    "OPERATORS",
    "Condition",
    "Predicate",
    "compile_filters",
    "parse_filters",
    "quote_identifier",
    "select_columns",
]
