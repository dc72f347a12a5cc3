"""The filter grammar ``col__op=value`` and column selectors, compiled for DuckDB."""

from omops.query.filters import OPERATORS, Predicate, compile_filters, quote_identifier
from omops.query.selectors import select_columns

__all__ = ["OPERATORS", "Predicate", "compile_filters", "quote_identifier", "select_columns"]
