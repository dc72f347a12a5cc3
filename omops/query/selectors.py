"""Column selection: ``name[a,b]``, ``name[^a]`` and ``columns=[...]``."""

from __future__ import annotations

from collections.abc import Sequence

from omops.errors import InvalidQuery

__all__ = ["select_columns"]


def select_columns(
    available: Sequence[str],
    columns: Sequence[str] | None,
    *,
    exclude: bool = False,
) -> list[str] | None:
    """The columns to read, in stored order; ``None`` means all.

    Parameters
    ----------
    available : sequence of str
        Data columns of the stored object (not its index).
    columns : sequence of str or None
        Columns asked for.
    exclude : bool, default=False
        Read every column but ``columns``.

    Examples
    --------
    >>> select_columns(['a', 'b', 'sales'], ['sales'], exclude=True)
    ['a', 'b']
    """
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = [columns]
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise InvalidQuery(
            f"unknown column(s) {unknown}; columns are {', '.join(map(str, available))}"
        )
    wanted = set(columns)
    if exclude:
        return [c for c in available if c not in wanted]
    return list(dict.fromkeys(columns))
